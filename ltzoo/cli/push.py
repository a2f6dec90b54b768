"""``ltzoo push --model RUN --repo-id ORG/NAME``: one Hub commit with weights, config, card, plot, ONNX.

``export/push_to_hub.py`` is the same command as a script; both use :func:`add_push_arguments`.
"""

from __future__ import annotations

import argparse
import logging

from ltzoo.errors import HubError
from ltzoo.source import parse_source

DESCRIPTION = (
    "Push a run (weights, config.json, model card, per-class plot and optionally ONNX graphs) to the Hub in "
    "one commit. The card is regenerated on every push. The token comes from --token or HF_TOKEN, the "
    "endpoint from --endpoint or HF_ENDPOINT (a local Hub-compatible server works as huggingface.co does)."
)


def add_push_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="training run directory (or local-dir:PATH) to publish")
    p.add_argument("--repo-id", required=True, help="target repo, ORG/NAME (created if missing)")
    p.add_argument("--onnx", metavar="DIR", help="export folder with *.onnx and export_report.json to publish too")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--revision", metavar="BRANCH", help="branch to commit to (default main; created if missing)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing to the branch")
    p.add_argument("--endpoint", help="Hub URL (default: $HF_ENDPOINT, then https://huggingface.co)")
    p.add_argument("--token", help="write token (default: $HF_TOKEN; prefer the variable: arguments show up in `ps`)")


def quiet_http_log(args: argparse.Namespace) -> None:
    """The HTTP client logs every request at INFO; keep that for --verbose (URLs only, never headers)."""
    if not getattr(args, "verbose", False):
        for name in ("httpx", "httpx2", "httpcore", "httpcore2"):
            logging.getLogger(name).setLevel(logging.WARNING)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("push", help="publish a training run to the Hugging Face Hub", description=DESCRIPTION)
    add_push_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltzoo.publish.push import push_run

    quiet_http_log(args)
    source = parse_source(args.model)  # a missing folder fails here, naming it
    if source.kind != "local":
        raise HubError(f"--model {args.model}: push publishes a local training run; give its directory")
    model = source.path
    info = push_run(
        model,
        args.repo_id,
        onnx_dir=args.onnx,
        private=args.private,
        revision=args.revision,
        create_pr=args.create_pr,
        endpoint=args.endpoint,
        token=args.token,
    )
    print(f"pushed {model} -> {args.repo_id}")
    print(f"  commit: {info.commit_url}")
    if info.pr_url:
        print(f"  pull request: {info.pr_url} (revision {info.pr_revision})")
    print(f'  load it pinned: ltzoo.load("hf-hub:{args.repo_id}@{info.oid}")')
    return 0


def main_push(argv: list[str] | None = None) -> int:
    """``python export/push_to_hub.py ...``"""
    from ltzoo.cli import script_main

    return script_main(DESCRIPTION, add_push_arguments, run, "push_to_hub.py", argv)
