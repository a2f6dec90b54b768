"""ltzoo.fileio: the one sha256, the one atomic writer and the one JSON reader every artifact goes through."""

from __future__ import annotations

import hashlib

import pytest

from ltzoo.errors import CorruptFileError
from ltzoo.fileio import atomic_path, atomic_write_json, read_json, sha256_file


def test_sha256_of_a_file_larger_than_one_chunk(tmp_path):
    data = bytes(range(256)) * 9000  # 2.3 MB: several 1 MiB reads
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "config.json"
    atomic_write_json(path, {"version": 1})
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(path) as tmp:
        tmp.write_text('{"version": 2, "trunc')
        raise RuntimeError("disk full")
    assert read_json(path, remedy="unused") == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_a_library_writer_gets_a_path_next_to_the_destination(tmp_path):
    path = tmp_path / "sub" / "model.bin"  # the folder is created
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp != path and not path.exists()
        tmp.write_bytes(b"weights")
    assert path.read_bytes() == b"weights" and oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["model.bin"]


def test_invalid_json_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"val": ')
    with pytest.raises(CorruptFileError, match=r"metrics.json is not valid JSON \(.*\); re-evaluate the run"):
        read_json(path, remedy="re-evaluate the run")
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(CorruptFileError, match="is not valid JSON"):
        read_json(path, remedy="re-evaluate the run")
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json", remedy="unused")


def test_weights_get_the_same_mode_as_every_other_file(tmp_path):
    import torch

    from ltzoo.runs import atomic_save_state_dict, atomic_torch_save

    # safetensors creates its file anew (0600 after mkstemp): a shared filesystem would hide the weights
    atomic_save_state_dict({"w": torch.zeros(2)}, tmp_path / "model.safetensors")
    atomic_torch_save({"step": 1}, tmp_path / "last.pt")
    atomic_write_json(tmp_path / "config.json", {})
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()}
    assert modes == {"model.safetensors": "0o644", "last.pt": "0o644", "config.json": "0o644"}
