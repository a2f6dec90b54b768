"""``ltzoo train NAME --out DIR [--data SOURCE] [--init MODEL]``: train a zoo entry's recipe, on its own
dataset or on yours."""

from __future__ import annotations

import argparse

from ltzoo.engine.epoch_log import EPOCH_LOG_FORMATS
from ltzoo.names import CHANNELS_LAST_CHOICES, PRECISIONS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a zoo entry's recipe (on its dataset or on your own data)",
        description="Train the recipe of a zoo entry. Writes OUT/model.safetensors, config.json, metrics.json, "
        "train_log.jsonl and checkpoints/ (one atomic checkpoint per epoch; --resume continues a killed run). "
        "With --data, the recipe trains on your own long-tailed data: its epochs, batch, learning rate and "
        "data-dependent method settings are derived from the data's size (printed at start, stored in config.json; "
        "each has an option below).",
    )
    p.add_argument("name", help="zoo name, e.g. ce_resnet32.fmnist_lt or dscl_pbsd_resnet32")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--epochs", type=int, help="total epoch budget, spread over the recipe's stages in proportion")
    p.add_argument(
        "--max-steps",
        type=int,
        help="stop each stage after this many optimizer steps (smoke runs; 0 trains nothing and saves the initial "
        "model, e.g. an --init backbone with its new head)",
    )
    p.add_argument("--steps-per-epoch", type=int, help="cap the optimizer steps of every epoch (smoke runs)")
    p.add_argument("--seed", type=int, help="seed (default: the recipe's)")
    p.add_argument("--data-root", help="zoo dataset location (default: $LTZOO_DATA, then the system copy)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt (same command)")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device (default: cpu); under torchrun, cuda gives each process its own GPU (NCCL)",
    )

    _add_speed_arguments(
        p.add_argument_group("speed (results are reported from an fp32 evaluation of the saved weights)")
    )
    _add_own_data_arguments(p.add_argument_group("your own data"))
    p.set_defaults(func=run)


def _add_speed_arguments(speed: argparse._ArgumentGroup) -> None:
    speed.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="training precision (default: the recipe's, auto): auto = bf16 autocast where the device "
        "computes bf16 natively (CUDA with bf16, CPUs with AMX or AVX512_BF16), else fp32; fp16 is "
        "CUDA only (with a gradient scaler). Losses always run in fp32. --resume keeps the precision the "
        "run started with",
    )
    speed.add_argument(
        "--channels-last",
        choices=CHANNELS_LAST_CHOICES,
        default="auto",
        help="NHWC memory layout for the convolutions (default auto: on for CUDA and AVX-512 CPUs, "
        "where it measured faster; off on AVX2-only CPUs)",
    )
    speed.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the backbone (off by default: compiling takes minutes on a CPU and pays "
        "only on long runs; see benchmarks/results/training_cost.md)",
    )
    speed.add_argument(
        "--log-format",
        choices=EPOCH_LOG_FORMATS,
        default="text",
        help="one line per epoch: text (readable, default) or json (the train_log.jsonl lines)",
    )


def _add_own_data_arguments(own: argparse._ArgumentGroup) -> None:
    own.add_argument(
        "--data",
        metavar="SOURCE",
        help="imagefolder:PATH (PATH/train, PATH/val, optionally PATH/test, one folder per class) or "
        "splits:ROOT (ROOT/*_train.txt, *_val.txt, *_test.txt with 'relative/path label' lines); an "
        "optional classes.txt names the classes; without val, a balanced val is held out from train",
    )
    own.add_argument(
        "--init",
        metavar="MODEL",
        help="fine-tune: start from this model's backbone with a new head for your classes: an ltzoo model (zoo "
        "name, run dir, local-dir:PATH, hf-hub:ORG/REPO) or a timm checkpoint (hf-hub:ORG/REPO as timm pushes it, "
        "a folder in that layout, or timm:NAME such as timm:resnet18.a1_in1k). The run takes its architecture and "
        "its preprocessing (input size, mean, std, interpolation, crop); recorded in config.json and the card",
    )
    own.add_argument(
        "--arch",
        metavar="ARCH",
        help="train the method on this backbone from scratch instead of the zoo entry's: any timm architecture "
        "(convnext_tiny, efficientnet_b0, vit_small_patch16_224, resnet18, ...) or resnet32",
    )
    own.add_argument(
        "--trainable",
        metavar="all|head|last:N",
        help="how much of the backbone trains: all (default), head (the backbone frozen), or last:N (its last N "
        "stages, or blocks of a ViT, and the head; the rest frozen, BatchNorm statistics kept). With --init, "
        "stages that train the backbone use a tenth of the derived lr; a head-only stage keeps the full lr",
    )
    own.add_argument(
        "--shot-thresholds",
        metavar="MANY,FEW",
        help="many > MANY and few < FEW training images (default 100,20), or 'terciles': classes "
        "ranked by count, in thirds (for small data where the default leaves a group empty)",
    )
    own.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="skip unreadable or corrupt images (counted, reported, stored) instead of failing",
    )
    own.add_argument("--batch-size", type=int, help="batch size of every stage (default: derived from the data)")
    own.add_argument("--lr", type=float, help="learning rate of the first stage; later stages keep their ratio")
    from ltzoo.recipe import method_knobs

    for knob in method_knobs().values():  # each method's own data-size settings (--queue-size, ...)
        own.add_argument(knob.option, dest=knob.arg, type=knob.type, help=knob.help)


def run(args: argparse.Namespace) -> int:
    from ltzoo.preflight import check_device, check_train_arguments

    # Before torch is imported: a bad argument fails in the first second, not after planning or an epoch.
    check_train_arguments(args.out, resume=args.resume, data_root=args.data_root, init=args.init)
    check_device(args.device)

    from ltzoo.engine import distributed
    from ltzoo.engine.evaluator import format_table
    from ltzoo.planner.derived import Overrides
    from ltzoo.planner.plan import plan_training, run_plan
    from ltzoo.recipe import method_knobs

    method_args = {key: getattr(args, key) for key in method_knobs() if getattr(args, key) is not None}
    plan = plan_training(
        args.name,
        data=args.data,
        data_root=args.data_root,
        init=args.init,
        arch=args.arch,
        shot_thresholds=args.shot_thresholds,
        skip_bad_images=args.skip_bad_images,
        overrides=Overrides(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            trainable=args.trainable,
            method_args=method_args,
        ),
    )
    # Under torchrun: one process per device, data-parallel; in a single process this does nothing.
    with distributed.process_group_from_env(args.device) as device:
        if distributed.is_main_process():
            print(plan.describe(), flush=True)
        metrics = run_plan(
            plan,
            args.out,
            resume=args.resume,
            max_steps=args.max_steps,
            steps_per_epoch=args.steps_per_epoch,
            seed=args.seed,
            device=str(device),
            precision=args.precision,
            channels_last=args.channels_last,
            compile=args.compile,
            log_format=args.log_format,
        )
        if not distributed.is_main_process():
            return 0
    selected = metrics["selected"]
    print(
        f"\n{plan.name}: top-1 (%) of the model selected on val ({selected.get('stage')} epoch "
        f"{selected.get('epoch')}; trained in {metrics['precision']}, evaluated in fp32)"
    )
    print(format_table({"val": metrics["val"], "test": metrics["test"]}))
    print(f"\nsaved to {args.out}; load it with ltzoo.load('local-dir:{args.out}')")
    return 0
