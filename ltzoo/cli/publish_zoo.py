"""``ltzoo publish-zoo --namespace ORG [--pattern ...]``: push every trained zoo entry in a runs directory."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "publish-zoo",
        help="push every trained zoo entry in a runs directory to the Hub",
        description="Find the runs of zoo entries under --runs, push each to NAMESPACE/<zoo name> (one commit per "
        "entry, with its card and ONNX export when found), and print the HubWeights pins for the registry.",
    )
    p.add_argument("--namespace", required=True, help="Hub user or organisation to publish under")
    p.add_argument("--pattern", action="append", help="zoo-name pattern(s), e.g. 'dscl*' (repeatable; default all)")
    p.add_argument("--runs", default="runs", help="runs directory to search (default: runs)")
    p.add_argument("--exports", help="exports directory; <exports>/<run folder or zoo name> with export_report.json is pushed too")
    p.add_argument("--private", action="store_true")
    p.add_argument("--create-pr", action="store_true", help="open pull requests instead of committing to main")
    p.add_argument("--endpoint", help="Hub URL (default: $HF_ENDPOINT, then https://huggingface.co)")
    p.add_argument("--token", help="write token (default: $HF_TOKEN)")
    p.add_argument("--dry-run", action="store_true", help="list what would be pushed; push nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltzoo.cli.push import quiet_http_log
    from ltzoo.hub.publish import as_json, publish_zoo

    quiet_http_log(args)
    published = publish_zoo(
        args.runs,
        args.namespace,
        args.pattern,
        exports_dir=args.exports,
        private=args.private,
        create_pr=args.create_pr,
        endpoint=args.endpoint,
        token=args.token,
        dry_run=args.dry_run,
    )
    if args.json:
        print(as_json(published))
        return 0
    for item in published:
        onnx = " + onnx" if item.onnx else ""
        if args.dry_run:
            print(f"would push {item.name}{onnx} -> {item.repo_id}")
        else:
            print(f"{item.name}{onnx} -> {item.url}")
    if not args.dry_run:
        print("\npin these in the recipe modules (register_recipes(..., weights={tag: ...})):")
        for item in published:
            print(f"  {item.name}: {item.pin()}")
    return 0
