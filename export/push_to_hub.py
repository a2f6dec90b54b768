#!/usr/bin/env python
"""Publish a training run to the Hugging Face Hub: the script form of ``ltzoo push``.

    python export/push_to_hub.py --model runs/dscl_pbsd --repo-id ORG/dscl_pbsd_resnet32.fmnist_lt \
        [--onnx exports/dscl_pbsd] [--private] [--revision BRANCH] [--create-pr] [--endpoint URL] [--token T]

The token comes from --token or HF_TOKEN; the endpoint from --endpoint or HF_ENDPOINT (a local
Hub-compatible server works the same way as huggingface.co).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ltzoo.cli.push import add_push_arguments, run  # noqa: E402
from ltzoo.errors import LtzooError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_push_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except LtzooError as exc:
        print(f"push_to_hub: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
