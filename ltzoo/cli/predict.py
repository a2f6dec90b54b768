"""``ltzoo predict MODEL IMAGE...``: the top-k labels of image files, with PyTorch or an exported graph."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ltzoo.errors import LtzooError

ONNX_VARIANTS = ("fp32", "fp16", "int8")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="top-k labels of image files",
        description="Print the top-k labels of each image with their probabilities (softmax of the logits). "
        "Images of any size and mode are preprocessed as the model's data config says (ltzoo.data_config: "
        "resize, crop, channels, mean/std), exactly as the evaluator preprocesses its test images.",
        epilog="examples:\n"
        "  ltzoo predict ce_resnet32.fmnist_lt shirt.png boot.jpg\n"
        "  ltzoo predict runs/ce *.png --top-k 3 --json\n"
        "  ltzoo predict exports/ce shirt.png --onnx int8      # the graph export/to_onnx.py wrote\n"
        "  ltzoo predict hf-hub:ORG/REPO shirt.png --onnx fp16  # the repo's onnx/ folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help="zoo name, run directory, local-dir:PATH or hf-hub:ORG/REPO[@rev]; with --onnx also an "
        "export folder or an .onnx file",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ... anything Pillow reads)")
    p.add_argument(
        "--onnx",
        choices=ONNX_VARIANTS,
        default=None,
        help="run this exported graph on ONNX Runtime instead of the PyTorch model; its preprocessing "
        "and labels come from the graph's metadata",
    )
    p.add_argument("--top-k", type=int, default=5, help="how many labels per image (default 5)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.set_defaults(func=run)


def _onnx_backend(source: str, variant: str) -> tuple[Any, Any, list[str], str]:
    from ltzoo.engine.evaluator import OrtPredictor
    from ltzoo.export.metadata import decode_metadata
    from ltzoo.export.sessions import load_onnx_session
    from ltzoo.preprocessing import create_transform

    session = load_onnx_session(source, variant)
    metadata = decode_metadata(session.get_modelmeta().custom_metadata_map)
    if "label_names" not in metadata:
        raise LtzooError(
            f"the {variant} graph of {source} has no label_names in its metadata; re-export it with export/to_onnx.py"
        )
    return OrtPredictor(session), create_transform(session), list(metadata["label_names"]), f"onnxruntime {variant}"


def _torch_backend(source: str) -> tuple[Any, Any, list[str], str]:
    from ltzoo.engine.evaluator import TorchPredictor
    from ltzoo.loading import load
    from ltzoo.preprocessing import create_transform

    model = load(source)
    labels = model.pretrained_cfg.get("label_names") or [str(i) for i in range(model.num_classes)]
    return TorchPredictor(model), create_transform(model), list(labels), "pytorch"


def run(args: argparse.Namespace) -> int:
    from ltzoo.predict import predict_images, read_images

    if args.top_k < 1 or args.batch_size < 1:
        raise LtzooError(f"--top-k and --batch-size must be at least 1 (got {args.top_k} and {args.batch_size})")
    images = read_images(args.images)  # a bad file fails now, before any model is downloaded
    predictor, transform, labels, runtime = (
        _onnx_backend(args.model, args.onnx) if args.onnx else _torch_backend(args.model)
    )
    predictions = predict_images(
        predictor,
        transform,
        images,
        args.images,
        labels,
        top_k=min(args.top_k, len(labels)),
        batch_size=args.batch_size,
    )
    if args.json:
        print(
            json.dumps(
                {"model": args.model, "runtime": runtime, "predictions": [p.to_dict() for p in predictions]}, indent=2
            )
        )
        return 0
    width = max(len(label) for label in labels)
    for prediction in predictions:
        print(prediction.image)
        for rank, score in enumerate(prediction.top_k, start=1):
            print(f"  {rank:2d}. {score.label:{width}s}  {100 * score.probability:6.2f} %")
    return 0
