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
