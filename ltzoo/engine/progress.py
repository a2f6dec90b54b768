"""Progress bars: tqdm on stdout, the stream every line of ltzoo's commands goes to, and only in a terminal.

Piped or redirected output (a log file, a Slurm ``.out``) gets no bars, only the lines. The size comes from
:func:`shutil.get_terminal_size`, which falls back to $COLUMNS / $LINES, then 80 x 24, where a terminal reports
a size of 0 (as ``docker exec -t`` and some CI runners do): tqdm itself would then draw an empty bar, or hide
it as below the last row.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_bar(
    iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", enabled: bool = True
) -> tqdm:
    """A bar that clears itself when done (the line printed after it is what stays); ``enabled=False``
    (a process other than rank 0) shows nothing."""
    shown = enabled and sys.stdout.isatty()
    size = shutil.get_terminal_size()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        leave=False,
        file=sys.stdout,
        disable=not shown,
        ncols=size.columns,
        nrows=size.lines,
    )
