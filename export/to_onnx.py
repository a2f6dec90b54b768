#!/usr/bin/env python
"""Export a model to verified ONNX: ``python export/to_onnx.py --model MODEL --out DIR [--int8] [--verify dataset]``.

A thin command line over :mod:`ltzoo.export` (the same as ``ltzoo export``); ``--help`` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ltzoo.cli.export import main_export  # noqa: E402

if __name__ == "__main__":
    sys.exit(main_export())
