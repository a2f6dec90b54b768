"""Push a run to a live local Hub with the real client, then load it back through a fresh cache."""

from __future__ import annotations

import hashlib
import io
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hub_fixtures import (  # noqa: F401 (fixtures)
    CLASS_COUNTS,
    ORG,
    WRITE_TOKEN,
    hub_env,
    isolated_process,
    local_hub,
    make_run,
    read_json,
    set_cache,
)
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError
from PIL import Image

import ltzoo
from ltzoo.cli import main as ltzoo_main
from ltzoo.errors import CorruptFileError, HubError
from ltzoo.export.pipeline import ExportOptions, export
from ltzoo.export.report import ExportReport
from ltzoo.export.sessions import load_onnx_session, resolve_onnx_file
from ltzoo.publish.card import MODEL_CARDS_DIR, method_text
from ltzoo.publish.push import push_run
from ltzoo.publish.zoo import publish_zoo
from ltzoo.runs import load_run

REPO = f"{ORG}/ce_resnet32.fmnist_lt"
ROOT = Path(__file__).resolve().parents[1]
PUSHED = {".gitattributes", "model.safetensors", "config.json", "README.md", "per_class_accuracy.png"}


def _logits(model: torch.nn.Module, seed: int = 123) -> torch.Tensor:
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def _front_matter(text: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with YAML front matter"
    return yaml.safe_load(match.group(1))


def _download(hub, name: str, tmp: Path, revision: str | None = None) -> Path:
    return Path(hf_hub_download(REPO, name, revision=revision, endpoint=hub.url, cache_dir=tmp / "inspect"))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "runs" / "ce", seed=0)


def test_push_is_one_commit_and_load_in_fresh_cache_gives_identical_logits(hub_env, run_dir, tmp_path, monkeypatch):
    info = push_run(run_dir, REPO)
    api = HfApi(endpoint=hub_env.url, token=WRITE_TOKEN)
    assert [c.commit_id for c in api.list_repo_commits(REPO)][0] == info.oid
    assert len(api.list_repo_commits(REPO)) == 2  # the repo's initial commit + exactly one push commit
    assert set(api.list_repo_files(REPO)) == PUSHED

    cache = set_cache(monkeypatch, tmp_path / "fresh-home")
    model = ltzoo.load(f"hf-hub:{REPO}")
    assert not model.training
    local, _ = load_run(run_dir)
    assert torch.equal(_logits(model), _logits(local))
    # It really came through the HF cache (the snapshot of the pushed commit), not from the run folder.
    assert (cache / f"models--{ORG}--ce_resnet32.fmnist_lt" / "snapshots" / info.oid / "model.safetensors").exists()

    pushed_config = read_json(_download(hub_env, "config.json", tmp_path))
    weights_sha = hashlib.sha256((run_dir / "model.safetensors").read_bytes()).hexdigest()
    assert pushed_config["ltzoo"]["weights_sha256"] == weights_sha
    assert pushed_config["architecture"] == "resnet32" and pushed_config["num_classes"] == 10
    assert pushed_config["pretrained_cfg"]["input_size"] == [1, 28, 28]


def test_card_yaml_parses_and_carries_the_metrics(hub_env, run_dir, tmp_path):
    push_run(run_dir, REPO)
    readme = _download(hub_env, "README.md", tmp_path).read_text()
    meta = _front_matter(readme)
    assert meta["library_name"] == "ltzoo" and meta["pipeline_tag"] == "image-classification"
    assert meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["zalando-datasets/fashion_mnist"]
    assert {"long-tailed", "imbalanced-classification", "ce"} <= set(meta["tags"])

    metrics = read_json(run_dir / "metrics.json")
    found = {}
    for result in meta["model-index"][0]["results"]:
        split = result["dataset"]["split"]
        for metric in result["metrics"]:
            found[(split, metric["config"])] = metric["value"]
    expected = {(s, g): round(metrics[s][g], 2) for s in ("val", "test") for g in ("all", "many", "medium", "few")}
    assert found == expected
    # The numbers are the hand-chosen ones of hub_fixtures.metrics_for(0): test "all" is 61.25 + 1.
    assert found[("test", "all")] == 62.25
    # huggingface_hub parses its own model-index back into the same numbers.
    card = ModelCard(readme)
    assert sorted((r.dataset_split, r.metric_config, r.metric_value) for r in card.data.eval_results) == sorted(
        (s, g, v) for (s, g), v in expected.items()
    )

    body = readme.split("\n---\n", 1)[1]
    assert method_text("ce").paragraph in body
    assert "1906.07413" in body  # the citation
    assert "- Seed: 0" in body
    # fmnist_lt's last class has floor(1000 * 100^-1) = 10 training images and is few-shot (< 20).
    assert "| 9 | Ankle boot | 10 | few |" in body
    assert "| 4 | Coat | 129 | many |" in body
    assert f'ltzoo.load("hf-hub:{REPO}")' in body
    assert "![Per-class top-1 accuracy" in body and "(per_class_accuracy.png)" in body
    assert "| test | 62.25 | " in body


def test_plot_is_a_png_with_the_shot_groups(hub_env, run_dir, tmp_path):
    push_run(run_dir, REPO)
    image = Image.open(io.BytesIO(_download(hub_env, "per_class_accuracy.png", tmp_path).read_bytes()))
    assert image.format == "PNG" and image.size == (880, 462)  # 8 x 4.2 inches at 110 dpi
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    for colour in ("#1f77b4", "#ff7f0e", "#d62728"):  # many, medium, few markers are all drawn
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(axis=1) < 30).sum() > 20, colour


def test_pushing_twice_updates_the_card_and_old_revision_stays_loadable(hub_env, run_dir, tmp_path, monkeypatch):
    first = push_run(run_dir, REPO)
    second_run = make_run(tmp_path / "runs" / "ce_seed1", seed=1)
    second = push_run(second_run, REPO)
    assert first.oid != second.oid
    api = HfApi(endpoint=hub_env.url, token=WRITE_TOKEN)
    assert len(api.list_repo_commits(REPO)) == 3

    meta = _front_matter(_download(hub_env, "README.md", tmp_path).read_text())
    values = {
        (r["dataset"]["split"], m["config"]): m["value"]
        for r in meta["model-index"][0]["results"]
        for m in r["metrics"]
    }
    assert values[("test", "all")] == 63.25  # seed 1's numbers: 61.25 + 1 (test) + 1 (seed)
    readme = _download(hub_env, "README.md", tmp_path).read_text()
    assert "- Seed: 1" in readme and "- Seed: 0" not in readme

    set_cache(monkeypatch, tmp_path / "fresh-home")
    latest = ltzoo.load(f"hf-hub:{REPO}")
    pinned = ltzoo.load(f"hf-hub:{REPO}@{first.oid}")
    assert torch.equal(_logits(latest), _logits(load_run(second_run)[0]))
    assert torch.equal(_logits(pinned), _logits(load_run(run_dir)[0]))
    assert not torch.equal(_logits(latest), _logits(pinned))


def _export(run_dir: Path, out_dir: Path) -> ExportReport:
    """The real export pipeline (fp32 + fp16, parity-checked; torchscript exporter because it is quicker)."""
    return export(str(run_dir), out_dir, ExportOptions(verify="parity", exporter="torchscript", fp16=True))


def test_onnx_graphs_are_published_and_load_as_an_ort_session(hub_env, run_dir, tmp_path, monkeypatch):
    report = _export(run_dir, tmp_path / "exports")
    push_run(run_dir, REPO, onnx_dir=tmp_path / "exports")
    api = HfApi(endpoint=hub_env.url, token=WRITE_TOKEN)
    onnx_files = {"onnx/model.onnx", "onnx/model_fp16.onnx", "onnx/export_report.json"}
    assert set(api.list_repo_files(REPO)) == PUSHED | onnx_files
    readme = _download(hub_env, "README.md", tmp_path).read_text()
    parity = report.variants["fp16"].checks["parity"]
    assert f"| fp16 | `model_fp16.onnx` | {parity.details['max_abs_diff']:.2e} | 100.00 % | yes |" in readme
    assert 'load_onnx_session("hf-hub:' in readme and "Exported with the torchscript exporter at opset 18" in readme

    set_cache(monkeypatch, tmp_path / "fresh-home")
    local, _ = load_run(run_dir)
    for variant, tolerance in (("fp32", 1e-4), ("fp16", 0.5)):
        session = load_onnx_session(f"hf-hub:{REPO}", variant)
        for batch in (1, 3):  # the batch axis is dynamic
            x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
            ort_logits = session.run(["logits"], {"input": x.numpy()})[0]
            np.testing.assert_allclose(ort_logits, local(x).detach().numpy(), rtol=tolerance, atol=tolerance)
    with pytest.raises(HubError, match="no int8 ONNX graph"):
        load_onnx_session(f"hf-hub:{REPO}", "int8")
    # A corrupted cached graph is caught by the sha256 in the export report, deleted, and fetched again.
    graph = resolve_onnx_file(f"hf-hub:{REPO}", "fp32").resolve()
    graph.write_bytes(graph.read_bytes()[:-1] + b"\0")
    with pytest.raises(HubError, match="does not match the sha256 in its export report"):
        load_onnx_session(f"hf-hub:{REPO}", "fp32")
    assert not graph.exists()
    assert load_onnx_session(f"hf-hub:{REPO}", "fp32").get_outputs()[0].name == "logits"

    # A later push without graphs removes them, so graphs of older weights never stay next to new weights.
    push_run(make_run(tmp_path / "runs" / "seed1", seed=1), REPO)
    assert set(api.list_repo_files(REPO)) == PUSHED
    assert "No ONNX export was published" in _download(hub_env, "README.md", tmp_path).read_text()


def test_onnx_exported_from_other_weights_is_refused_before_anything_is_sent(hub_env, run_dir, tmp_path):
    _export(make_run(tmp_path / "runs" / "other", seed=9), tmp_path / "exports")  # graphs of another run
    with pytest.raises(CorruptFileError, match="re-export"):
        push_run(run_dir, REPO, onnx_dir=tmp_path / "exports")
    with pytest.raises(RepositoryNotFoundError):  # refused before the repo was even created
        HfApi(endpoint=hub_env.url, token=WRITE_TOKEN).model_info(REPO)


def test_branch_and_pull_request_pushes(hub_env, run_dir, tmp_path, monkeypatch):
    dev = push_run(run_dir, REPO, revision="dev")
    api = HfApi(endpoint=hub_env.url, token=WRITE_TOKEN)
    assert "model.safetensors" not in api.list_repo_files(REPO)  # main untouched
    pr = push_run(make_run(tmp_path / "runs" / "seed1", seed=1), REPO, create_pr=True)
    assert pr.pr_revision == "refs/pr/1"
    assert "model.safetensors" not in api.list_repo_files(REPO)
    set_cache(monkeypatch, tmp_path / "fresh-home")
    assert torch.equal(_logits(ltzoo.load(f"hf-hub:{REPO}@dev")), _logits(load_run(run_dir)[0]))
    assert torch.equal(
        _logits(ltzoo.load(f"hf-hub:{REPO}@refs/pr/1")), _logits(load_run(tmp_path / "runs" / "seed1")[0])
    )
    assert dev.oid == api.model_info(REPO, revision="dev").sha


def test_private_repo_needs_the_token_to_load(hub_env, run_dir, tmp_path, monkeypatch):
    push_run(run_dir, REPO, private=True)
    set_cache(monkeypatch, tmp_path / "fresh-home")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="does not exist .* or it is private"):
        ltzoo.load(f"hf-hub:{REPO}")
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)  # read at call time: no re-import needed
    assert torch.equal(_logits(ltzoo.load(f"hf-hub:{REPO}")), _logits(load_run(run_dir)[0]))


def test_ltzoo_push_cli_and_push_to_hub_script(hub_env, run_dir, tmp_path, capsys, monkeypatch):
    assert ltzoo_main(["push", "--model", f"local-dir:{run_dir}", "--repo-id", REPO]) == 0
    out = capsys.readouterr().out
    sha = HfApi(endpoint=hub_env.url, token=WRITE_TOKEN).model_info(REPO).sha
    assert f'ltzoo.load("hf-hub:{REPO}@{sha}")' in out

    # The script form, run in-process (its main() is what `python export/push_to_hub.py` calls); endpoint
    # and token come from the environment set by hub_env.
    script = runpy.run_path(str(ROOT / "export" / "push_to_hub.py"), run_name="push_to_hub")
    assert script["main"](["--model", str(run_dir), "--repo-id", f"{ORG}/copy"]) == 0
    assert "commit:" in capsys.readouterr().out
    assert script["main"](["--model", str(tmp_path / "nope"), "--repo-id", f"{ORG}/x"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_publish_zoo_pushes_matching_entries_and_pins_them(hub_env, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    make_run(runs / "ce", seed=0, method="ce")
    make_run(runs / "ldam", seed=2, method="ldam_drw")
    make_run(runs / "custom", seed=3, method="not_in_zoo")  # not a zoo entry: never published under a zoo name
    published = publish_zoo(runs, ORG, ["ldam*"])
    assert [p.name for p in published] == ["ldam_drw_resnet32.fmnist_lt"]
    pin = published[0]
    assert pin.sha256 == hashlib.sha256((runs / "ldam" / "model.safetensors").read_bytes()).hexdigest()
    assert HfApi(endpoint=hub_env.url).model_info(pin.repo_id).sha == pin.revision
    assert pin.metrics.all == 64.25  # hub_fixtures.metrics_for(2): test all = 61.25 + 1 + 2

    pins = tmp_path / "pins.json"
    assert ltzoo_main(["publish-zoo", "--namespace", ORG, "--runs", str(runs), "--pins", str(pins)]) == 0
    out = capsys.readouterr().out
    assert f"pinned in {pins}" in out and "not_in_zoo" not in out
    recorded = read_json(pins)["pins"]
    assert sorted(recorded) == ["ce_resnet32.fmnist_lt", "ldam_drw_resnet32.fmnist_lt"]
    ce = recorded["ce_resnet32.fmnist_lt"]
    assert ce["repo_id"] == f"{ORG}/ce_resnet32.fmnist_lt"
    assert ce["revision"] == HfApi(endpoint=hub_env.url).model_info(ce["repo_id"]).sha
    recorded_test = read_json(runs / "ce" / "metrics.json")["test"]
    assert ce["metrics"] == {
        "split": "test",
        "all": 62.25,
        **{g: round(recorded_test[g], 2) for g in ("many", "medium", "few")},
    }
    # A pinned download (what a registry entry does) loads the published weights.
    set_cache(monkeypatch, tmp_path / "fresh-home")
    from ltzoo.hub.download import download_run

    folder = download_run(pin.repo_id, pin.revision, expected_sha256=pin.sha256)
    assert torch.equal(_logits(load_run(folder)[0]), _logits(load_run(runs / "ldam")[0]))


def test_every_zoo_method_has_card_text_with_a_citation():
    methods = {ltzoo.get_entry(name).method for name in ltzoo.list_models()}
    for method in sorted(methods):
        text = method_text(method)
        assert len(text.paragraph) > 200, method
        assert text.citation.startswith("@") and "title" in text.citation, method
    assert (MODEL_CARDS_DIR / "template.md").is_file()


def test_class_counts_fixture_is_fmnist_lt_profile():
    # Guards the hand-computed expectations above: 1000 ... 10 with IR 100 over 10 classes.
    assert CLASS_COUNTS == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
