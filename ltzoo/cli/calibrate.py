"""``ltzoo calibrate SOURCE --out DIR``: post-hoc tail calibration chosen on val, and a deployment prior, folded
into a new run's head."""

from __future__ import annotations

import argparse

from ltzoo.calibration import METHOD_CHOICES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="post-hoc tail calibration chosen on val (+ a deployment prior), written as a new run",
        description="Calibrate a trained model for its tail classes without retraining. Each method is scored on "
        "the val split over its parameter grid, and the best val top-1 is kept (test takes no part in any choice); "
        "the result is folded into the head's weight and bias and written to OUT as a new run, which ltzoo.load, "
        "eval, predict, export and push use unchanged. Methods: la (logit adjustment, bias - tau * log training "
        "prior), tau-norm (weight rows / norm^tau), ncm (nearest class mean of the frozen features), auto (each "
        "method that applies at its best tau, and no change, whichever scores best on val; a tie keeps the "
        "simpler). The deployment prior (--target-prior or --estimate-prior) is folded in last.",
    )
    p.add_argument("source", help="the model: a run directory, local-dir:PATH, hf-hub:ORG/REPO[@rev] or a zoo name")
    p.add_argument("--out", required=True, help="a new, empty run directory for the calibrated model")
    p.add_argument(
        "--method",
        choices=METHOD_CHOICES,
        default="auto",
        help="auto (default): the best on val of none and every method that applies to the head; or one "
        "method at its best val tau",
    )
    prior = p.add_mutually_exclusive_group()
    prior.add_argument(
        "--target-prior",
        default="uniform",
        metavar="uniform|train|FILE",
        help="the class frequencies where the model is deployed: uniform (default: a balanced test "
        "set), train (the training frequencies), or a JSON object / CSV file of frequency by label name",
    )
    prior.add_argument(
        "--estimate-prior",
        metavar="FOLDER",
        help="estimate the deployment's class frequencies from a folder of its unlabeled images (EM "
        "on probabilities calibrated by bias-corrected temperature scaling fitted on val)",
    )
    p.add_argument(
        "--data-root",
        help="dataset location (default: $LTZOO_DATA, then the system copy; for a run on "
        "your own data, where its files are now if they moved)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="images per batch through the frozen backbone (default 256; scores do not depend on it)",
    )
    p.add_argument("--json", action="store_true", help="print the result (what metrics.json holds) as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltzoo.preflight import check_data_root, check_model_source, check_out_dir

    check_model_source(args.source, "SOURCE")
    check_out_dir(args.out)
    check_data_root(args.data_root)
    import json
    from pathlib import Path

    from ltzoo.errors import DataNotFoundError

    if args.target_prior not in ("uniform", "train") and not Path(args.target_prior).expanduser().is_file():
        raise DataNotFoundError(
            f"--target-prior {args.target_prior}: no such file; give uniform, train, or a JSON/CSV "
            "file of class frequencies by label name"
        )
    if args.estimate_prior is not None and not Path(args.estimate_prior).expanduser().is_dir():
        raise DataNotFoundError(
            f"--estimate-prior {args.estimate_prior}: no such folder; give a folder of unlabeled "
            "images from the deployment"
        )

    from ltzoo.calibration.job import CalibrationOptions, calibrate
    from ltzoo.engine.evaluator import format_table
    from ltzoo.names import CALIBRATION_PLOT

    options = CalibrationOptions(
        method=args.method,
        target_prior=args.target_prior,
        estimate_prior=args.estimate_prior,
        data_root=args.data_root,
        batch_size=args.batch_size,
    )
    metrics = calibrate(args.source, args.out, options)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    record = metrics["calibration"]
    rows = {
        f"{c['method']}" + ("" if c["parameter"] is None else f" (tau {c['parameter']:g})"): c
        for c in record["candidates"].values()
    }
    print("val top-1 (%) of each method at its best tau (test takes no part):")
    print(format_table(rows))
    for method, reason in record["not_applicable"].items():
        print(f"  {method}: does not apply: {reason}")
    chosen = record["method"] + ("" if record["parameter"] is None else f" with tau {record['parameter']:g}")
    print(f"\nchosen on val: {chosen}; deployment prior: {record['target_prior']['kind']}")
    print(format_table({"val": metrics["val"], "test": metrics["test"]}))
    print(
        f"\nsaved to {args.out} (val curves: {Path(args.out) / CALIBRATION_PLOT}); load it with "
        f"ltzoo.load('local-dir:{args.out}')"
    )
    return 0
