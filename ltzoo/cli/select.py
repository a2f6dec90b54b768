"""``ltzoo select --data SOURCE --out DIR``: which model to deploy on this long-tailed data, answered with a model."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "select",
        help="race the zoo's recipes on your data and train, calibrate, export the winner",
        description="Race the zoo's recipes on your long-tailed data and end with the model to deploy. Each recipe "
        "(the small recipes with the settings derived from your data, or a zoo dataset's own recipes) trains in an "
        "Optuna study whose successive-halving pruner scores it on val at 1/8, 1/4 and 1/2 of its budget (each "
        "rung scored as `ltzoo calibrate` would deploy it) and stops the trials that fall behind; survivors "
        "continue from their checkpoint. The winner (the best on val) then trains at its full budget for each "
        "winner seed; the best seed on val is calibrated, exported with the per-split gate and carded. Test takes "
        "no part in any choice. Everything goes under --out; a killed run continues when started again.",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="SOURCE",
        help="imagefolder:PATH or splits:ROOT (your data, as ltzoo train --data), or a zoo dataset tag "
        "such as fmnist_lt",
    )
    p.add_argument("--out", required=True, help="the folder for the study, the trials, the leaderboard and the winner")
    p.add_argument(
        "--recipes",
        nargs="+",
        metavar="NAME",
        help="zoo names to race (default: the small *_resnet32 recipes, or the zoo dataset's own)",
    )
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=60.0,
        help="wall time for everything (default 60): half for the race, which starts no new trial after "
        "it; the winner's seeds, calibration and export follow",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs=2,
        default=(1, 3),
        metavar=("RACE", "WINNER"),
        help="seeds for the race and for the winner (default 1 3: the race on seed 0, the winner on 0-2)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes on this machine, one thread each (default 1): the race's, each training one recipe at a "
        "time, and then the winner's seeds side by side",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="the Optuna study's storage (default: a journal file in --out). Several machines share one "
        "race by running the same command with the same --storage: a journal file on a shared "
        "filesystem, or a database URL (sqlite:///..., postgresql://...); add --race-only on all but one",
    )
    p.add_argument(
        "--race-only",
        action="store_true",
        help="race, write the leaderboard, and leave the winner to another machine's ltzoo select",
    )
    p.add_argument("--epochs", type=int, help="every recipe's full budget (default: its own, or derived from the data)")
    p.add_argument("--steps-per-epoch", type=int, help="cap the steps of every epoch (smoke runs)")
    p.add_argument(
        "--data-root", help="zoo dataset location, as for ltzoo train (default: $LTZOO_DATA, then the system copy)"
    )
    p.add_argument(
        "--push", metavar="ORG/NAME", help="publish the winner (calibrated, with its ONNX graphs) to this Hub repo"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ltzoo.errors import BadHyperParameterError
    from ltzoo.preflight import check_data_root, check_out_dir

    check_out_dir(args.out)
    check_data_root(args.data_root)
    race_seeds, winner_seeds = args.seeds
    if race_seeds != 1 or winner_seeds < 1:
        raise BadHyperParameterError("--seeds RACE WINNER: the race runs on one seed (1) and the winner on >= 1")
    if args.workers < 1 or args.budget_minutes <= 0:
        raise BadHyperParameterError("--workers must be >= 1 and --budget-minutes > 0")
    from ltzoo.selection.candidates import SelectOptions
    from ltzoo.selection.job import select

    options = SelectOptions(
        data=args.data,
        out=Path(args.out),
        recipes=tuple(args.recipes or ()),
        budget_minutes=args.budget_minutes,
        winner_seeds=tuple(range(winner_seeds)),
        workers=args.workers,
        storage=args.storage,
        data_root=args.data_root,
        push=args.push,
        race_only=args.race_only,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
    )
    selection = select(options)
    print((Path(args.out) / "leaderboard.md").read_text())
    print(f"winner: {selection.winner} (the best on val)")
    if selection.calibrated is not None:
        print(f"deployable: {selection.calibrated} (calibrated; card README.md), graphs in {selection.onnx}")
    print(f"took {selection.seconds['total'] / 60:.1f} min (race {selection.seconds['race'] / 60:.1f} min)")
    return 0
