#!/usr/bin/env python
"""Convert an official checkpoint into an ltzoo run directory:
``python export/convert_official.py --source dscl --checkpoint FILE --out DIR``.

The script form of ``ltzoo convert-official`` (:mod:`ltzoo.cli.convert_official`); ``--help`` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ltzoo.cli.convert_official import main_convert_official  # noqa: E402

if __name__ == "__main__":
    sys.exit(main_convert_official())
