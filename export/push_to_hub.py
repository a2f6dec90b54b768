#!/usr/bin/env python
"""Publish a training run to the Hugging Face Hub: the script form of ``ltzoo push`` (:mod:`ltzoo.cli.push`).

    python export/push_to_hub.py --model runs/dscl_pbsd --repo-id ORG/dscl_pbsd_resnet32.fmnist_lt \
        [--onnx exports/dscl_pbsd] [--private] [--revision BRANCH] [--create-pr] [--endpoint URL] [--token T]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ltzoo.cli.push import main_push as main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
