"""Checks of command-line arguments that run before any compute, and before torch is imported.

A bad ``--out``, ``--data-root``, ``--init`` or ``--resume`` must fail in the first second with one line
that names the problem and the fix, not after an epoch of training with a traceback. Each check here
needs only the file system and the (torch-free) registry; what can only be checked with the data or the
weights loaded (a checkpoint's recipe, the data's classes) is checked where they are loaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ltzoo.errors import DataNotFoundError, LtzooError
from ltzoo.names import CHECKPOINT_DIR, CONFIG_FILE, LAST_CHECKPOINT, MODEL_FILE, TIMM_PREFIX
from ltzoo.source import parse_source


def check_out_dir(out: str | os.PathLike[str], option: str = "--out") -> Path:
    """``out`` is, or can be made, a writable folder. Proven by creating it and a probe file in it; what the
    check created is removed again, so a command that fails later leaves nothing behind (except under
    torchrun, where another process may be probing the same folder at the same moment)."""
    path = Path(out).expanduser()
    probe = path / f".ltzoo_write_probe.{os.getpid()}"
    if path.exists() and not path.is_dir():
        raise LtzooError(f"{option} {out} is a file, not a folder; choose a folder (it is created if missing)")
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise LtzooError(
            f"{option} {out} cannot be written ({error.strerror or error}); choose a folder you can write to"
        ) from None
    finally:
        for created in missing if int(os.environ.get("WORLD_SIZE", "1")) == 1 else ():  # innermost first
            try:
                created.rmdir()
            except OSError:
                break
    return path


def check_data_root(data_root: str | os.PathLike[str] | None) -> None:
    """A ``--data-root`` that is given must be an existing folder (it is never silently replaced by another copy)."""
    if data_root is None:
        return
    path = Path(data_root).expanduser()
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise DataNotFoundError(
            f"--data-root {data_root} {what}; point it at the folder that holds the dataset's files, or leave it "
            "out to use $LTZOO_DATA or the system copy"
        )


_DEVICE = re.compile(r"^(cpu|cuda)(:(\d+))?$")


def check_device(device: str, option: str = "--device") -> None:
    """``cpu``, ``cuda`` or ``cuda:N``, and for CUDA a GPU that this torch build can see.

    The one check here that imports torch, and only for a CUDA device: without it, a machine with no GPU
    would fail with torch's own error after the data and the model were loaded."""
    match = _DEVICE.match(device)
    if match is None:
        raise LtzooError(f"{option} {device!r}: expected cpu, cuda or cuda:N (N: the GPU's index)")
    if match.group(1) != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise LtzooError(
            f"{option} {device}: this machine or torch build has no CUDA GPU (torch.cuda.is_available() is False); "
            f"use {option} cpu"
        )
    index, count = match.group(3), torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise LtzooError(
            f"{option} {device}: only {count} GPU(s) are visible (cuda:0 to cuda:{count - 1}); choose one of those"
        )


def check_model_source(source: str, option: str = "--init") -> None:
    """A model source (run folder, ``local-dir:``, ``hf-hub:``, zoo name; for ``--init`` also ``timm:NAME``) that can
    be loaded: a local run has its weights and config, a Hub id is well formed, a zoo name is known (its weights
    are checked when loaded)."""
    if option == "--init" and source.startswith(TIMM_PREFIX):
        if not source[len(TIMM_PREFIX) :]:
            raise LtzooError(f"{option} {source}: name the timm model, e.g. timm:resnet18.a1_in1k")
        return  # timm resolves the name (with torch loaded): the planner checks it, before any training
    try:
        parsed = parse_source(source)  # a missing path or a malformed Hub id raises here, naming it
    except LtzooError as error:
        raise type(error)(f"{option}: {error}") from None
    if parsed.kind == "local" and parsed.path is not None and parsed.path.is_dir():
        # a run (model.safetensors), or for --init also a timm checkpoint folder (model.safetensors or
        # pytorch_model.bin beside its config.json)
        weights = [MODEL_FILE, "pytorch_model.bin"] if option == "--init" else [MODEL_FILE]
        absent = [name for name in (CONFIG_FILE,) if not (parsed.path / name).is_file()]
        if not any((parsed.path / name).is_file() for name in weights):
            absent.append(" or ".join(weights))
        if absent:
            raise DataNotFoundError(
                f"{option} {source}: {parsed.path} has no {' or '.join(absent)}, so it is no finished run; give the "
                "folder of a finished `ltzoo train` run (or hf-hub:ORG/NAME, or a zoo name)"
            )
    elif parsed.kind == "zoo":
        from ltzoo.registry import get_entry

        try:
            get_entry(source)  # an unknown name raises with close matches
        except LtzooError as error:
            raise type(error)(f"{option}: {error}") from None


def check_train_arguments(out: str, *, resume: bool, data_root: str | None, init: str | None) -> None:
    """Every argument of ``ltzoo train`` that can be checked without the data: run before planning."""
    out_path = check_out_dir(out)
    unfinished, finished = (out_path / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file(), (out_path / MODEL_FILE).is_file()
    if not resume and (unfinished or finished):
        raise LtzooError(
            f"{out} already holds a run. Pass --resume to continue it, or choose another --out "
            "(nothing was overwritten)"
        )
    if resume and finished and not unfinished:
        raise LtzooError(
            f"{out} holds a finished run ({MODEL_FILE}): there is nothing to resume. Choose another "
            "--out to train again"
        )
    check_data_root(data_root)
    if init is not None:
        check_model_source(init)
