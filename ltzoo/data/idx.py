"""Reader for the idx format of (Fashion-)MNIST, plain or gzipped."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ltzoo.errors import CorruptFileError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise CorruptFileError(f"cannot read idx file {path}: {exc}. Re-install or re-download it.") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise CorruptFileError(f"{path} is not an idx file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - offset != expected:
        raise CorruptFileError(
            f"{path} is truncated or corrupt: expected {expected} payload bytes, found {len(data) - offset}"
        )
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims)
