"""``ltzoo publish-zoo --namespace ORG [--pattern ...]``: push every trained zoo entry in a runs directory."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "publish-zoo",
        help="push every trained zoo entry in a runs directory to the Hub",
        description="Find the runs of zoo entries under --runs, push each to NAMESPACE/<zoo name> (one commit per "
        "entry, with its card and ONNX export when found), and record each entry's pin (repo, commit, weights "
        "sha256, headline test top-1) in the pins file the registry reads, so ltzoo.load(NAME) serves it.",
    )
    p.add_argument("--namespace", required=True, help="Hub user or organisation to publish under")
    p.add_argument("--pattern", action="append", help="zoo-name pattern(s), e.g. 'dscl*' (repeatable; default all)")
    p.add_argument("--runs", default="runs", help="runs directory to search (default: runs)")
    p.add_argument(
        "--exports", help="exports directory; <exports>/<run folder or zoo name> with export_report.json is pushed too"
    )
    p.add_argument("--private", action="store_true", help="create the repos as private")
    p.add_argument("--create-pr", action="store_true", help="open pull requests instead of committing to main")
    p.add_argument("--endpoint", help="Hub URL (default: $HF_ENDPOINT, then https://huggingface.co)")
    p.add_argument("--token", help="write token (default: $HF_TOKEN)")
    p.add_argument(
        "--pins",
        metavar="FILE",
        help="pins file to record the published entries in (default: $LTZOO_PINS, else the one that "
        "ships with ltzoo, ltzoo/zoo_pins.json in a checkout); pull requests are never pinned",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be pushed; push nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ltzoo.cli.push import quiet_http_log
    from ltzoo.pins import pins_path
    from ltzoo.publish.zoo import as_json, publish_zoo

    quiet_http_log(args)
    pins = Path(args.pins) if args.pins else pins_path()
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
        pins=pins,
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
    if args.create_pr:
        print("\npull requests are not pinned: merge them, then publish to main to pin the weights")
    elif not args.dry_run:
        print(f"\npinned in {pins} (commit it to ship the pins with ltzoo):")
        for item in published:
            print(f"  {item.name}: {item.repo_id}@{item.revision[:12]} sha256 {item.sha256[:12]}")
    return 0
