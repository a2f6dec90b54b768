"""Error types with messages that name the problem and the fix.

Every user-facing failure in ltzoo raises a subclass of :class:`LtzooError`. The CLI turns these
into a one-line message and a non-zero exit code instead of a traceback.
"""

from __future__ import annotations


class LtzooError(Exception):
    """Base class: the message says what went wrong and how to fix it."""


class UnknownModelError(LtzooError, KeyError):
    """A zoo name that is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class WeightsNotPublishedError(LtzooError):
    """A zoo entry exists but has no published weights."""


class DataNotFoundError(LtzooError, FileNotFoundError):
    """A dataset's files are missing."""


class BadDataError(LtzooError, ValueError):
    """Dataset files exist but are malformed (bad label, empty class, corrupt image...)."""


class CorruptFileError(LtzooError, ValueError):
    """A weights/config/checkpoint/ONNX file that cannot be parsed."""


class ConfigMismatchError(LtzooError, ValueError):
    """Weights and config disagree (wrong num_classes, missing or unexpected keys)."""


class NonFiniteLossError(LtzooError, FloatingPointError):
    """The training loss became NaN or Inf."""


class BadHyperParameterError(LtzooError, ValueError):
    """A recipe or method hyper-parameter is out of range."""


class ExportCheckError(LtzooError):
    """An exported graph failed a check (parity, shape, accuracy gate, TensorRT readiness)."""


class HubError(LtzooError):
    """The Hub could not be reached, refused the token, or returned something unusable."""
