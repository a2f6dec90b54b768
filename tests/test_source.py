"""One parser for every model source (ltzoo.load, the CLIs, the ONNX resolver), and the cases where the two
parsers it replaced disagreed: ``~`` (one expanded it, one did not) and a path that does not exist (one raised,
one asked the registry for a zoo model of that name)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hub_fixtures import isolated_process, make_run  # noqa: F401 (fixture)

import ltzoo
from ltzoo.cli import main as ltzoo_main
from ltzoo.errors import DataNotFoundError, HubError, UnknownModelError
from ltzoo.export.sessions import resolve_onnx_file
from ltzoo.runs import load_run
from ltzoo.source import Source, parse_source


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder of the test's own (what ``~`` expands to), and the working directory elsewhere."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


def test_each_kind_is_parsed_into_its_fields(home):
    (home / "runs").mkdir()
    assert parse_source("hf-hub:org/name@refs/pr/1") == Source(
        "hf-hub:org/name@refs/pr/1", "hub", repo_id="org/name", revision="refs/pr/1"
    )
    assert parse_source("hf-hub:org/name.fmnist_lt").revision is None
    assert parse_source("ce_resnet32.fmnist_lt") == Source("ce_resnet32.fmnist_lt", "zoo")
    assert parse_source("local-dir:~/runs") == Source("local-dir:~/runs", "local", path=home / "runs")
    assert parse_source(home / "runs") == Source(str(home / "runs"), "local", path=home / "runs")  # a PathLike
    for bad in ("hf-hub:noslash", "hf-hub:a/b/c", "hf-hub:/name"):
        with pytest.raises(HubError, match="hf-hub:ORG/NAME"):
            parse_source(bad)


def test_tilde_is_expanded_by_the_loader_and_the_onnx_resolver(home):
    run = make_run(home / "run")
    (home / "exports").mkdir()
    (home / "exports" / "model_int8.onnx").write_bytes(b"graph")
    x = torch.zeros(1, 1, 28, 28)
    expected = load_run(run)[0](x)
    for source in ("~/run", "local-dir:~/run"):
        assert torch.equal(ltzoo.load(source)(x), expected), source
    for source in ("~/exports", "local-dir:~/exports", "~/exports/model_int8.onnx"):
        assert resolve_onnx_file(source, "int8") == home / "exports" / "model_int8.onnx", source


def test_a_missing_path_is_an_error_naming_it_never_a_zoo_lookup(home):
    for source in ("exports/typo", "~/exports", "./typo", "local-dir:typo"):
        missing = Path(source.removeprefix("local-dir:")).expanduser()
        for use in (parse_source, ltzoo.load, resolve_onnx_file):
            with pytest.raises(DataNotFoundError, match="does not exist") as caught:
                use(source)
            assert str(missing) in str(caught.value), (source, use)
    # Only classified, not checked (a run's recorded --init folder may be gone): still a local source.
    assert parse_source("runs/gone", must_exist=False) == Source("runs/gone", "local", path=Path("runs/gone"))


def test_a_zoo_name_goes_to_the_registry(home):
    with pytest.raises(UnknownModelError, match="ce_resnet32"):  # the registry's close matches
        ltzoo.load("ce_resnet23")
    with pytest.raises(UnknownModelError):
        resolve_onnx_file("ce_resnet23")
    with pytest.raises(HubError, match="no published weights"):  # a real entry, nothing pinned
        resolve_onnx_file("ce_resnet32.fmnist_lt")


def test_push_takes_a_local_run_only_and_names_a_missing_one(home, capsys):
    assert ltzoo_main(["push", "--model", "hf-hub:org/name", "--repo-id", "org/name"]) == 2
    assert "push publishes a local training run" in capsys.readouterr().err
    assert ltzoo_main(["push", "--model", "~/runs/ce", "--repo-id", "org/name"]) == 2
    assert f"{home / 'runs' / 'ce'} does not exist" in capsys.readouterr().err
