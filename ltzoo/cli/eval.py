"""``ltzoo eval MODEL --split test``: top-1 overall, many/medium/few and per class."""

from __future__ import annotations

import argparse
import json

from ltzoo.engine.evaluator import TorchPredictor, evaluate_split, format_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on val or test",
        description="Evaluate a model (run directory, local-dir:PATH, hf-hub:ORG/REPO or a zoo name) on the "
        "dataset it was trained on: top-1 overall, many/medium/few and per class.",
    )
    p.add_argument("model", help="run directory, local-dir:PATH, hf-hub:ORG/REPO[@rev] or zoo name")
    p.add_argument("--split", choices=("val", "test"), default="test")
    p.add_argument("--data-root", help="dataset location (default: $LTZOO_DATA, then the system copy)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltzoo.data import build_dataset
    from ltzoo.loading import load

    model, config = load(args.model, with_config=True)
    data = build_dataset(config["ltzoo"]["dataset"], args.data_root)
    result = evaluate_split(TorchPredictor(model), data, args.split, args.batch_size)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(format_table({f"{config['ltzoo'].get('name', args.model)} ({args.split})": result}))
    print("\nper class (training count -> top-1 %):")
    for cls, (count, acc) in enumerate(zip(data.class_counts, result["per_class"])):
        print(f"  {cls:3d} {data.label_names[cls][:20]:20s} n={count:6d}  {acc:6.2f}")
    return 0
