"""``ltzoo convert-official`` (= ``export/convert_official.py``): an official method checkpoint as an ltzoo run."""

from __future__ import annotations

import argparse
import json
import sys

from ltzoo.cli import script_main

DESCRIPTION = (
    "Convert an official method checkpoint (e.g. SY-Xuan/DSCL checkpoint.pth.tar or linear.pth.tar) into an "
    "ltzoo run directory that ltzoo.load('local-dir:OUT') reads; prints the conversion report as JSON."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        required=True,
        help="which official code wrote the checkpoint: dscl (SY-Xuan/DSCL, the only one so far)",
    )
    parser.add_argument("--checkpoint", required=True, help="the .pth.tar file (read with weights_only=True)")
    parser.add_argument("--out", required=True, help="run directory to create")
    parser.add_argument("--dataset", default="imagenet_lt", help="training set of the checkpoint (default imagenet_lt)")
    parser.add_argument("--arch", default="resnet50", help="backbone architecture (default resnet50)")
    parser.add_argument("--data-root", default=None, help="dataset files, to record label names and class counts")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert-official", help="convert an official method checkpoint into an ltzoo run", description=DESCRIPTION
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltzoo.convert_official import convert_official

    report = convert_official(
        args.source, args.checkpoint, args.out, dataset=args.dataset, arch=args.arch, data_root=args.data_root
    )
    summary = report.to_dict()
    summary["dropped_training_only"] = len(report.dropped_training_only)
    print(json.dumps(summary, indent=2))
    if not report.head_trained:
        print(
            f"note: {args.checkpoint} is a stage-1 (representation) checkpoint; the classifier in {args.out} is "
            "untrained (N(0, 0.01) init). Train it with the recipe's classifier stage before use, e.g. "
            "ltzoo.engine.trainer.train(recipe.replace(stages=recipe.stages[1:]), OUT2, "
            f"model=ltzoo.load('local-dir:{args.out}')) with recipe = ltzoo.registry.get_entry(NAME).recipe().",
            file=sys.stderr,
        )
    return 0


def main_convert_official(argv: list[str] | None = None) -> int:
    """``python export/convert_official.py ...``"""
    return script_main(DESCRIPTION, add_arguments, run, "convert_official.py", argv)
