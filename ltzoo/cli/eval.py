"""``ltzoo eval MODEL --split test``: top-1 overall, many/medium/few and per class."""

from __future__ import annotations

import argparse
import json

from ltzoo.names import CONFIG_BLOCK


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on val or test",
        description="Evaluate a model (run directory, local-dir:PATH, hf-hub:ORG/REPO or a zoo name) on the "
        "dataset it was trained on: top-1 overall, many/medium/few and per class.",
    )
    p.add_argument("model", help="run directory, local-dir:PATH, hf-hub:ORG/REPO[@rev] or zoo name")
    p.add_argument(
        "--split",
        choices=("val", "test"),
        default="test",
        help="which split to score (default: test; choose models and settings on val, never on test)",
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
        help="images per evaluation batch (default 256; lower it if memory runs out; scores do not change)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="where the model runs: cpu (default), cuda or cuda:N; scores are an fp32 evaluation on every device "
        "(TF32 is turned off on CUDA), so they match the CPU's",
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument(
        "--analysis",
        action="store_true",
        help="also measure why the model is (im)balanced: Fisher discriminant ratio of the features, "
        "per-class feature norms and classifier weight norms (printed and plotted)",
    )
    p.add_argument(
        "--plot",
        default=None,
        help="where --analysis saves its plot (default: analysis_<split>.png in the current directory)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltzoo.preflight import check_data_root, check_device, check_model_source

    check_model_source(args.model, "MODEL")
    check_data_root(args.data_root)
    check_device(args.device)
    from ltzoo.data import build_dataset
    from ltzoo.engine.evaluator import TorchPredictor, evaluate_split, format_table
    from ltzoo.loading import load
    from ltzoo.runs import TrainedOn

    model, config = load(args.model, with_config=True)
    data = build_dataset(config[CONFIG_BLOCK]["dataset"], args.data_root)
    TrainedOn.from_config(config).check(data)
    result = evaluate_split(TorchPredictor(model, args.device), data, args.split, args.batch_size)
    analysis = None
    if args.analysis:
        from ltzoo.engine.feature_analysis import analyze, plot_report

        analysis = analyze(model.cpu(), data, args.split, args.batch_size)  # the analysis runs on the CPU
        plot = plot_report(analysis, args.plot or f"analysis_{args.split}.png")
        result["analysis"] = {**analysis.to_dict(), "plot": str(plot)}
    if args.json:
        from ltzoo.runs import rounded_floats

        print(json.dumps(rounded_floats(result), indent=2))  # the digits metrics.json records: equal, not just close
        return 0
    print(format_table({f"{config[CONFIG_BLOCK].get('name', args.model)} ({args.split})": result}))
    print("\nper class (training count -> top-1 %):")
    for cls, (count, acc) in enumerate(zip(data.class_counts, result["per_class"])):
        shown = "     -" if acc is None else f"{acc:6.2f}"  # a class without images in this split
        print(f"  {cls:3d} {data.label_names[cls][:20]:20s} n={count:6d}  {shown}")
    if analysis is not None:
        from ltzoo.engine.feature_analysis import format_report

        print("\n" + format_report(analysis))
        print(f"plot: {result['analysis']['plot']}")
    return 0
