"""``ltzoo train NAME --out DIR``: train a zoo entry's recipe."""

from __future__ import annotations

import argparse

from ltzoo.engine.evaluator import format_table
from ltzoo.registry import get_entry


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a zoo entry's recipe",
        description="Train the recipe of a zoo entry. Writes OUT/model.safetensors, config.json, metrics.json, "
        "train_log.jsonl and checkpoints/ (one atomic checkpoint per epoch; --resume continues a killed run).",
    )
    p.add_argument("name", help="zoo name, e.g. ce_resnet32.fmnist_lt")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--epochs", type=int, help="total epoch budget, spread over the recipe's stages in proportion")
    p.add_argument("--max-steps", type=int, help="stop each stage after this many optimizer steps (smoke runs)")
    p.add_argument("--steps-per-epoch", type=int, help="cap the optimizer steps of every epoch (smoke runs)")
    p.add_argument("--seed", type=int, help="seed (default: the recipe's)")
    p.add_argument("--data-root", help="dataset location (default: $LTZOO_DATA, then the system copy)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltzoo.engine.trainer import train

    entry = get_entry(args.name)
    metrics = train(
        entry.recipe(), args.out, name=entry.name, data_root=args.data_root, resume=args.resume,
        epochs=args.epochs, max_steps=args.max_steps, steps_per_epoch=args.steps_per_epoch, seed=args.seed,
        device=args.device,
    )
    print(f"\n{entry.name}: top-1 (%) of the model selected on val (epoch {metrics['selected'].get('epoch')})")
    print(format_table({"val": metrics["val"], "test": metrics["test"]}))
    print(f"\nsaved to {args.out}; load it with ltzoo.load('local-dir:{args.out}')")
    return 0
