"""``ltzoo list`` and ``ltzoo info``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from ltzoo.pins import pins_path
from ltzoo.registry import ZooEntry, get_entry, list_models


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "list", help="list zoo names", description="List zoo names (fnmatch patterns, e.g. 'dscl*')."
    )
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern; without '.TAG' it matches every tag")
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="only names with pinned weights, with their repo, commit and headline test top-1 (%%)",
    )
    p.set_defaults(func=run_list)

    p = subparsers.add_parser(
        "info", help="show a zoo entry and its recipe", description="Show a zoo entry: recipe, paper, weights."
    )
    p.add_argument("name", help="zoo name, e.g. ce_resnet32.fmnist_lt (a bare name means its default tag)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_info)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def pinned_line(entry: ZooEntry) -> str:
    """``name  repo@commit  test top-1 all / many / medium / few`` for an entry with pinned weights."""
    pin = entry.weights
    assert pin is not None
    metrics = pin.metrics
    scores = (
        "no metrics pinned"
        if metrics is None
        else (
            f"{metrics.split} top-1 % all {_fmt(metrics.all)}  many {_fmt(metrics.many)}  "
            f"medium {_fmt(metrics.medium)}  few {_fmt(metrics.few)}"
        )
    )
    return f"{entry.name:36s} {pin.repo_id}@{pin.revision[:12]}  {scores}"


def run_list(args: argparse.Namespace) -> int:
    if not list_models(args.pattern):  # a typo, most likely: say so, and fail a script that relies on it
        print(
            f"no zoo name matches {args.pattern!r}; `ltzoo list` shows all {len(list_models())} names "
            "(patterns are fnmatch, e.g. 'dscl*' or '*.fmnist_lt')",
            file=sys.stderr,
        )
        return 1
    names = list_models(args.pattern, pretrained=args.pretrained)
    if args.pretrained:
        for name in names:
            print(pinned_line(get_entry(name)))
        if not names:  # names exist, none published yet: a state, not an error
            print(
                f"no zoo entry matching {args.pattern!r} has pinned weights in {pins_path()}; "
                "`ltzoo publish-zoo` pins what it publishes",
                file=sys.stderr,
            )
        return 0
    for name in names:
        entry = get_entry(name)
        print(f"{name:45s} {'published' if entry.published else 'recipe only'}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    entry = get_entry(args.name)
    info = {
        "name": entry.name,
        "method": entry.method,
        "arch": entry.arch,
        "dataset": entry.tag,
        "paper": entry.paper,
        "license": entry.license,
        "weights": None if entry.weights is None else asdict(entry.weights),
        "recipe": entry.recipe().to_dict(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in ("name", "method", "arch", "dataset", "paper", "license"):
        print(f"{key:9s} {info[key]}")
    print(f"weights   {info['weights'] or 'not published: ' + entry.how_to_train()}")
    print("recipe:")
    print(json.dumps(info["recipe"], indent=2))
    return 0
