"""Deployment class priors: what the classes' frequencies will be where the model is used.

A :class:`TargetPrior` is one of
- ``uniform`` (the default): every class equally likely, as on a balanced test set; the calibrated head is
  then exactly the one val chose;
- ``train``: the training set's class frequencies;
- ``FILE``: class frequencies by label name, from JSON (``{"cat": 0.7, "dog": 0.3}``, or a list in label order) or
  CSV (``label,frequency`` lines, a header line allowed); any positive scale, normalised here;
- an estimate from unlabeled deployment images (:func:`ltzoo.calibration.shift.estimate_prior`).

Bad input is refused before anything is written, with the file and the fix named: unknown or missing class
names, negative or non-finite frequencies, all zeros, the wrong class count.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ltzoo.errors import BadHyperParameterError, DataNotFoundError

UNIFORM = "uniform"
TRAIN = "train"
ESTIMATED = "estimated"


@dataclass(frozen=True)
class TargetPrior:
    """Class frequencies of a deployment (``values`` sums to 1, in label order), and where they came from."""

    kind: str  # "uniform" | "train" | "file" | "estimated" | "oracle"
    values: tuple[float, ...]
    source: str = ""  # the file's name, or what the estimate was made from

    @property
    def is_uniform(self) -> bool:
        return self.kind == UNIFORM

    def log(self) -> np.ndarray:
        """log of the frequencies; a class with frequency 0 gets a large negative number (never predicted)."""
        values = np.asarray(self.values, dtype=np.float64)
        return np.log(np.maximum(values, 1e-12))

    def to_dict(self, label_names: Sequence[str]) -> dict[str, object]:
        return {
            "kind": self.kind,
            "source": self.source,
            "frequencies": {name: round(value, 6) for name, value in zip(label_names, self.values, strict=True)},
        }


def uniform_prior(num_classes: int) -> TargetPrior:
    return TargetPrior(UNIFORM, tuple([1.0 / num_classes] * num_classes))


def prior_from_counts(counts: Sequence[float], kind: str, source: str = "") -> TargetPrior:
    """Normalised frequencies from counts (or unnormalised frequencies), checked."""
    values = np.asarray([float(c) for c in counts], dtype=np.float64)
    where = f" in {source}" if source else ""
    if not np.all(np.isfinite(values)):
        raise BadHyperParameterError(f"class frequencies{where} must be finite numbers, got {list(counts)}")
    if np.any(values < 0):
        raise BadHyperParameterError(f"class frequencies{where} must be >= 0, got {list(counts)}")
    if values.sum() <= 0:
        raise BadHyperParameterError(f"class frequencies{where} are all zero: give at least one class a positive value")
    return TargetPrior(kind, tuple((values / values.sum()).tolist()), source)


def read_prior_file(path: str | Path, label_names: Sequence[str]) -> TargetPrior:
    """Class frequencies by label name from a JSON object or a two-column CSV; every class named exactly once."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataNotFoundError(
            f"--target-prior {path}: no such file; give uniform, train, or a JSON/CSV file of "
            "class frequencies by label name"
        )
    text = path.read_text()
    by_name = (
        _parse_json(text, path, label_names)
        if path.suffix.lower() == ".json" or text.lstrip()[:1] in "{["
        else _parse_csv(text, path)
    )
    unknown = sorted(set(by_name) - set(label_names))
    missing = [name for name in label_names if name not in by_name]
    if unknown or missing:
        parts = ([f"unknown class name(s) {unknown}"] if unknown else []) + (
            [f"missing class(es) {missing}"] if missing else []
        )
        raise BadHyperParameterError(
            f"{path}: {'; '.join(parts)}. The model has {len(label_names)} classes: {list(label_names)}; name each "
            "once with its frequency (0 for a class that never occurs)"
        )
    return prior_from_counts([by_name[name] for name in label_names], "file", path.name)


def _parse_json(text: str, path: Path, label_names: Sequence[str]) -> dict[str, float]:
    """A JSON object by label name, or a JSON list of frequencies in label order (one per class)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadHyperParameterError(
            f'{path} is not valid JSON ({error.msg}, line {error.lineno}); write {{"label": frequency, ...}}'
        ) from None
    if isinstance(data, list):
        if len(data) != len(label_names):
            raise BadHyperParameterError(
                f"{path} lists {len(data)} frequencies but the model has {len(label_names)} classes "
                f"({list(label_names)}); give one per class in label order, or an object by label name"
            )
        data = dict(zip(label_names, data))
    if not isinstance(data, dict):
        raise BadHyperParameterError(
            f'{path} must hold a JSON object {{"label": frequency, ...}}, got a {type(data).__name__}'
        )
    return {str(name): _number(value, path, str(name)) for name, value in data.items()}


def _parse_csv(text: str, path: Path) -> dict[str, float]:
    rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    by_name: dict[str, float] = {}
    for number, row in enumerate(rows, 1):
        if len(row) != 2:
            raise BadHyperParameterError(f"{path} line {number}: expected 'label,frequency', got {row}")
        name, value = row[0].strip(), row[1].strip()
        if number == 1 and not _is_number(value):
            continue  # a header line
        if name in by_name:
            raise BadHyperParameterError(f"{path} line {number}: class {name!r} is named twice")
        by_name[name] = _number(value, path, name)
    return by_name


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(value: object, path: Path, name: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadHyperParameterError(f"{path}: the frequency of {name!r} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise BadHyperParameterError(f"{path}: the frequency of {name!r} is {number}, which is not finite")
    if number < 0:
        raise BadHyperParameterError(f"{path}: the frequency of {name!r} is {number}; frequencies must be >= 0")
    return number


def resolve_target_prior(text: str, label_names: Sequence[str], train_counts: Sequence[int]) -> TargetPrior:
    """``--target-prior``: ``uniform``, ``train`` or a file of frequencies by label name."""
    if text == UNIFORM:
        return uniform_prior(len(label_names))
    if text == TRAIN:
        if len(train_counts) != len(label_names):
            raise BadHyperParameterError(
                f"the model has {len(label_names)} classes but its config records {len(train_counts)} training counts"
            )
        return prior_from_counts(train_counts, TRAIN, "training split")
    return read_prior_file(text, label_names)
