"""The model card: ``ModelCardData`` (YAML + model-index) and a body rendered from ``model_cards/``.

Everything on the card is read from the run (``config.json``, ``metrics.json``) and, when given, the
export report, so the card is regenerated identically from the same files on every push. The card text
(``model_cards/`` at the top of the repo) is package data of ``ltzoo`` (``ltzoo/model_cards`` links to
it), read with :mod:`importlib.resources`, so an installed wheel renders the same cards as a checkout.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ltzoo import names
from ltzoo.errors import CorruptFileError, DataNotFoundError
from ltzoo.export.report import REFERENCE, ExportReport
from ltzoo.fileio import read_json
from ltzoo.hub import layout
from ltzoo.hub.settings import DEFAULT_ENDPOINT
from ltzoo.models.timm_layout import timm_loading
from ltzoo.version import __version__

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable
    from pathlib import Path

MODEL_CARDS_DIR: Traversable = files("ltzoo") / "model_cards"
TEMPLATE = "template.md"
SPLITS = ("val", "test")
GROUPS = ("all", "many", "medium", "few")
TAGS = ["ltzoo", "long-tailed", "imbalanced-classification", "image-classification"]
# The Hub datasets that ltzoo's long-tailed training sets are drawn from (the subsets themselves are built
# locally; their facts go in the model-index's dataset.args). Places-LT and iNaturalist 2018 have no
# official Hub dataset, and a user's own data is none: those cards name no Hub dataset at all.
HUB_DATASETS = {
    "fmnist_lt": "zalando-datasets/fashion_mnist",
    "cifar10_lt": "uoft-cs/cifar10",
    "cifar100_lt": "uoft-cs/cifar100",
    "imagenet_lt": "ILSVRC/imagenet-1k",
}
# Values are top-1 in percent (as everywhere in ltzoo), so the names say so.
METRIC_NAMES = {
    "all": "Top-1 accuracy (%)",
    "many": "Top-1 accuracy (%), many-shot classes",
    "medium": "Top-1 accuracy (%), medium-shot classes",
    "few": "Top-1 accuracy (%), few-shot classes",
}
RESULTS_SOURCE = "ltzoo evaluation of this checkpoint (config.json, ltzoo.metrics)"
_EPRINT = re.compile(r"^\s*eprint\s*=\s*\{([^}]+)\}", re.M)


@dataclass(frozen=True)
class MethodText:
    paragraph: str
    citation: str  # BibTeX

    @property
    def arxiv_id(self) -> str | None:
        """The paper's arXiv id (the BibTeX ``eprint``), which the card links so the Hub attaches the paper."""
        match = _EPRINT.search(self.citation)
        return match.group(1).strip() if match else None


def method_text(method: str, cards_dir: Traversable = MODEL_CARDS_DIR) -> MethodText:
    """The method's paragraph and BibTeX from ``model_cards/methods/<method>.md``."""
    path = cards_dir / "methods" / f"{method}.md"
    if not path.is_file():
        known = sorted(p.name.removesuffix(".md") for p in (cards_dir / "methods").iterdir() if p.name.endswith(".md"))
        raise DataNotFoundError(
            f"no card text for method {method!r}: add model_cards/methods/{method}.md next to {known}"
        )
    paragraph, _, citation = path.read_text(encoding="utf-8").partition("\n## Citation\n")
    bibtex = citation.strip().removeprefix("```bibtex").removesuffix("```").strip()
    return MethodText(paragraph.strip(), bibtex)


def read_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / names.METRICS_FILE
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found: the card needs the run's val/test metrics (did training finish?)")
    metrics = read_json(path, remedy="re-evaluate the run")
    missing = [s for s in SPLITS if not isinstance(metrics.get(s), dict)]
    if missing:
        raise CorruptFileError(f"{path} has no {missing} results; the card reports top-1 on val and test")
    return metrics


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def _dataset_label(lt: dict[str, Any]) -> tuple[str, bool]:
    """(name shown on the card, whether it is the user's own data): a user source shows its folder name."""
    from ltzoo.data.sources import display_name, is_source_name

    dataset = lt.get("dataset", "unknown")
    return (display_name(dataset), True) if is_source_name(dataset) else (dataset, False)


def _long_tail_facts(lt: dict[str, Any], dataset: str) -> dict[str, Any]:
    """What makes the training set long-tailed, for the model-index's ``dataset.args``."""
    shot = lt.get("shot_split") or {}
    facts = {
        "long_tailed_subset": dataset,
        "num_classes": lt.get("num_classes") or len(lt.get("class_counts") or []) or None,
        "train_images": sum(lt.get("class_counts") or []) or None,
        "imbalance_factor": None if lt.get("imbalance_factor") is None else round(float(lt["imbalance_factor"]), 2),
        "index_sha256": lt.get("index_sha256"),
        "shot_rule": shot.get("rule"),
        "many_threshold": shot.get("many_threshold"),
        "few_threshold": shot.get("few_threshold"),
    }
    return {key: value for key, value in facts.items() if value is not None}


def base_model(parent: dict[str, Any]) -> str | None:
    """The Hub repo a fine-tuned run started from, when it came from the Hub (``--init hf-hub:...`` or a
    pinned zoo name); a local parent has no Hub id to name."""
    return parent.get("hub_repo_id") or None


def build_card_data(
    config: dict[str, Any], metrics: dict[str, Any], repo_id: str, *, hub_url: str = DEFAULT_ENDPOINT
) -> ModelCardData:
    """YAML front matter: library, pipeline, license, datasets, tags, base model, and a model-index of top-1
    (%) per split/group whose source is this repo on ``hub_url``."""
    lt = config[names.CONFIG_BLOCK]
    dataset, own_data = _dataset_label(lt)
    hub_dataset = None if own_data else HUB_DATASETS.get(dataset)
    name = lt.get("name") or repo_id.split("/")[-1]
    facts = _long_tail_facts(lt, dataset)
    eval_results = [
        EvalResult(
            task_type="image-classification",
            task_name="Long-tailed image classification",
            dataset_type=hub_dataset or dataset,
            dataset_name=dataset,
            dataset_split=split,
            dataset_args=facts,
            metric_type="accuracy",
            metric_name=METRIC_NAMES[group],
            metric_config=group,
            metric_value=round(float(metrics[split][group]), 2),
            source_name=RESULTS_SOURCE,
            source_url=f"{hub_url.rstrip('/')}/{repo_id}",
        )
        for split in SPLITS
        for group in GROUPS
        if metrics[split].get(group) is not None  # e.g. no medium class in a tiny dataset
    ]
    method = lt.get("method", "")
    parent = base_model(lt.get("parent") or {})
    return ModelCardData(
        model_name=name,
        library_name="ltzoo",
        pipeline_tag="image-classification",
        license=config.get("pretrained_cfg", {}).get("license") or lt.get("license") or "apache-2.0",
        datasets=[hub_dataset] if hub_dataset else None,
        base_model=parent,
        base_model_relation="finetune" if parent else None,
        tags=TAGS
        + [t for t in (method, lt.get("arch") or config.get("architecture"), dataset) if t]
        + (["timm"] if timm_loading(config) else []),  # timm.create_model("hf-hub:...") loads it
        metrics=["accuracy"],
        eval_results=eval_results,
    )


def _shot_rule(shot: dict[str, Any]) -> str:
    if shot.get("rule", "absolute") == "absolute":
        return (
            f"many: more than {shot.get('many_threshold')} training images, few: fewer than "
            f"{shot.get('few_threshold')}, medium: the rest"
        )
    return f"rule {shot.get('rule')!r}, thresholds {shot.get('many_threshold')} / {shot.get('few_threshold')}"


def class_groups(shot: dict[str, Any], num_classes: int) -> list[str]:
    groups = ["-"] * num_classes
    for group in ("many", "medium", "few"):
        for cls in shot.get(group, []):
            groups[cls] = group
    return groups


def _export_rows(report: ExportReport) -> tuple[list[dict[str, Any]], list[str]]:
    """Table rows from the export report: the PyTorch reference, then one row per variant with its parity
    numbers and, when the export ran ``--verify dataset``, top-1 all / few per split."""
    results = report.verification.results
    splits = [s for s in SPLITS if s in results]

    def cells(name: str) -> list[str]:
        return [
            f"{_fmt(results[s][name].all)} / {_fmt(results[s][name].few)}" if name in results[s] else "-"
            for s in splits
        ]

    rows = []
    if splits and REFERENCE in results[splits[0]]:
        rows.append(
            {
                "variant": f"{REFERENCE} (reference)",
                "file": names.MODEL_FILE,
                "max_abs_diff": "-",
                "agreement": "-",
                "splits": cells(REFERENCE),
                "passed": "-",
            }
        )
    for variant, entry in report.variants.items():
        parity = entry.checks.get("parity")
        failed = not entry.passed or any(failure.variant == variant for failure in report.failures)
        max_diff = parity.details.get("max_abs_diff") if parity else None
        agreement = parity.details.get("top1_agreement") if parity else None
        rows.append(
            {
                "variant": variant,
                "file": entry.file or "-",
                "max_abs_diff": "-" if max_diff is None else f"{float(max_diff):.2e}",
                "agreement": "-" if agreement is None else f"{100 * float(agreement):.2f} %",
                "splits": cells(variant),
                "passed": "**no**" if failed else ("yes" if entry.checks else "-"),
            }
        )
    return rows, splits


def _reproduce_line(name: str, recipe: dict[str, Any]) -> str:
    """Only claim that ``ltzoo train NAME`` reproduces the run when the run used the zoo's recipe unchanged."""
    from ltzoo.errors import LtzooError
    from ltzoo.registry import get_entry

    try:
        zoo_recipe = get_entry(name).recipe().to_dict()
    except LtzooError:
        return "The recipe above is the run's own; it is not a zoo entry."
    if json.loads(json.dumps(zoo_recipe)) == json.loads(json.dumps(recipe)):
        return f"Reproduce with `ltzoo train {name} --out runs/{name.replace('.', '_')}`."
    return (
        f"This run used a changed recipe (the table above, e.g. a shortened schedule); `ltzoo train {name}` "
        "trains the zoo's full recipe."
    )


def _parent_line(parent: dict[str, Any]) -> str:
    """Where a fine-tuned run's backbone came from (``ltzoo train --init``), or ""."""
    if not parent:
        return ""
    origin = f"`{parent.get('source')}`"
    if parent.get("name") and parent.get("name") != parent.get("source"):
        origin += f" ({parent['name']}, trained on `{_dataset_label(parent)[0]}`, {parent.get('num_classes')} classes)"
    sha = parent.get("weights_sha256")
    return origin + (f", weights sha256 `{sha}`" if sha else "")


def _export_notes(report: ExportReport) -> list[str]:
    """One line each: how the graphs were made, what the accuracy gate allowed, how int8 was calibrated."""
    notes = []
    if report.export:
        notes.append(
            f"Exported with the {report.export.get('exporter')} exporter at opset {report.export.get('opset')} "
            "(batch axis dynamic)."
        )
    verification = report.verification
    if verification.mode == "dataset":
        drops = ", ".join(f"{v} {p:g}" for v, p in verification.max_drop.items())
        groups = "/".join(verification.gated_groups or ["all", "few"])
        notes.append(f"Accuracy gate: top-1 {groups} may drop at most ({drops}) points below PyTorch on every split.")
    else:
        notes.append("The graphs were checked for parity with PyTorch; no dataset evaluation was run for them.")
    int8_variant = report.variants.get("int8")
    int8 = (int8_variant.recipe if int8_variant is not None else None) or {}
    calibration = int8.get("calibration") or {}
    if calibration:
        choice = int8.get("calibration_choice")
        chosen = f", chosen on {choice['split']} by `--calib-method auto` ({choice['rule']})." if choice else "."
        notes.append(
            f"int8: static QDQ quantization calibrated on {calibration.get('size')} {calibration.get('split')} images "
            f"(seed {calibration.get('seed')}), {calibration.get('sampling')}; "
            f"{int8.get('calibration_method')} calibration{chosen}"
        )
    return notes


def render_card(
    config: dict[str, Any],
    metrics: dict[str, Any],
    repo_id: str,
    *,
    export_report: ExportReport | None = None,
    onnx_files: list[str] | None = None,
    weights_sha256: str | None = None,
    cards_dir: Traversable = MODEL_CARDS_DIR,
    hub_url: str = DEFAULT_ENDPOINT,
) -> ModelCard:
    """Render README.md for a run. ``onnx_files`` are repo paths of the published ONNX files, if any;
    ``hub_url`` is the Hub the card is pushed to (the model-index names the repo there as its source)."""
    lt = config[names.CONFIG_BLOCK]
    name = lt.get("name") or repo_id.split("/")[-1]
    return ModelCard.from_template(
        build_card_data(config, metrics, repo_id, hub_url=hub_url),
        template_str=(cards_dir / TEMPLATE).read_text(encoding="utf-8"),
        title=name,
        zoo_name=name,
        repo_id=repo_id,
        ltzoo_version=__version__,
        weights_sha256=weights_sha256 or lt.get(names.WEIGHTS_SHA256_KEY, "-"),
        calibration=_calibration_section(lt.get("calibration")),
        **_results_fields(config, metrics),
        **_method_fields(config, name, cards_dir),
        **_usage_fields(config),
        **_export_fields(export_report, list(onnx_files or [])),
    )


def _results_fields(config: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """The summary line, the results table and its picture, the classes."""
    lt = config[names.CONFIG_BLOCK]
    counts = list(lt.get("class_counts") or [])
    labels = list(config.get("label_names") or [str(i) for i in range(len(counts))])
    shot = lt.get("shot_split") or {}
    groups = class_groups(shot, len(counts))
    dataset, own_data = _dataset_label(lt)
    parent = lt.get("parent") or {}
    imbalance = "-" if lt.get("imbalance_factor") is None else f"{float(lt['imbalance_factor']):g}"
    facts = f"{len(counts)} classes, imbalance factor {imbalance}"
    if own_data:
        layout_kind = (lt.get("source") or {}).get("kind", "own")
        trained_on = f"the author's own long-tailed dataset `{dataset}` ({layout_kind} layout, {facts})"
    else:
        trained_on = f"the long-tailed `{dataset}` training set ({facts})"
    return {
        "summary": (
            f"A `{lt.get('arch') or config.get('architecture')}` trained with **{lt.get('method', '')}** on "
            f"{trained_on}"
            + (f", fine-tuned from `{parent.get('name') or parent.get('source')}`" if parent else "")
            + ", published by ltzoo with its recipe, class counts and many/medium/few results."
        ),
        "results": [{"split": s, **{g: _fmt(metrics[s].get(g)) for g in GROUPS}} for s in SPLITS],
        "shot_rule": _shot_rule(shot),
        "plot_file": layout.PLOT,
        "plot_splits": " and ".join(SPLITS),
        "dataset": dataset,
        "own_data": own_data,
        "num_classes": config.get("num_classes", len(counts)),
        "imbalance_factor": imbalance,
        "index_sha256": lt.get("index_sha256", "-"),
        "classes": [
            {"index": i, "name": labels[i] if i < len(labels) else i, "count": n, "group": groups[i]}
            for i, n in enumerate(counts)
        ],
    }


def _method_fields(config: dict[str, Any], name: str, cards_dir: Traversable) -> dict[str, Any]:
    """The method's text and paper, and the training recipe (stages, arguments, notes, how to reproduce)."""
    lt = config[names.CONFIG_BLOCK]
    method = lt.get("method", "")
    text = method_text(method, cards_dir)
    recipe = lt.get("recipe") or {}
    parent = lt.get("parent") or {}
    return {
        "method_text": text.paragraph,
        "arxiv_id": text.arxiv_id,
        "citation": text.citation,
        # A fine-tuned run is never the zoo recipe's run from scratch, even where the recipe is unchanged.
        "reproduce": "" if parent else _reproduce_line(name, recipe),
        "method": method,
        "arch": lt.get("arch") or config.get("architecture"),
        "num_params": f"{int(lt['num_params']):,}" if lt.get("num_params") is not None else "-",
        "parent": _parent_line(parent),
        "seed": lt.get("seed", recipe.get("seed", "-")),
        # Runs from before mixed precision trained in fp32 and say nothing.
        "precision": lt.get("precision", "fp32"),
        "stages": recipe.get("stages") or [],
        "method_args": json.dumps(recipe.get("method_args")) if recipe.get("method_args") else "",
        "recipe_notes": recipe.get("notes", ""),
    }


def _usage_fields(config: dict[str, Any]) -> dict[str, Any]:
    """How to load it (ltzoo, timm) and what its input is."""
    cfg = config.get("pretrained_cfg", {})
    return {
        "timm_loading": timm_loading(config),
        "timm_architecture": config.get("architecture"),
        "input_size": json.dumps([-1, *cfg.get("input_size", [])]).replace("-1", "N"),
        "mean": cfg.get("mean"),
        "std": cfg.get("std"),
        "interpolation": cfg.get("interpolation", "bilinear"),
        "crop_pct": cfg.get("crop_pct", 1.0),
    }


def _export_fields(export_report: ExportReport | None, onnx_files: list[str]) -> dict[str, Any]:
    """The published ONNX graphs and what their export checked."""
    export_rows, export_splits = _export_rows(export_report) if export_report else ([], [])
    onnx_variants = [row["variant"] for row in export_rows if f"{layout.ONNX_DIR}/{row['file']}" in onnx_files]
    onnx_variants.sort(key=lambda v: v != "fp32")  # the usage example shows fp32 first
    return {
        "onnx_variants": onnx_variants,
        "export_rows": export_rows,
        "export_splits": export_splits,
        "export_notes": _export_notes(export_report) if export_report else [],
        "export_report_file": f"{layout.ONNX_DIR}/{names.REPORT_FILE}",
        "onnx_files": onnx_files,
    }


def _calibration_section(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the card says about a calibrated run (``config.json``'s ``calibration`` block), or None."""
    if not record:
        return None

    def label(row: dict[str, Any]) -> str:
        return row["method"] if row.get("parameter") is None else f"{row['method']} (tau {row['parameter']:g})"

    prior = record.get("target_prior") or {}
    prior_text = {
        "uniform": "uniform (a balanced test set; the chosen head as it is)",
        "train": "the training frequencies",
    }.get(prior.get("kind"), f"{prior.get('kind')} ({prior.get('source')})")
    if prior.get("kind") != "uniform" and record.get("bcts"):
        prior_text += (
            f", folded in as log-posteriors with bias-corrected temperature scaling fitted on val "
            f"(T = {record['bcts']['temperature']:.3g})"
        )
    return {
        "parent": f"`{record['parent']}`" if record.get("parent") else "(unnamed)",
        "chosen": label(record),
        "rule": record.get("rule", ""),
        "prior": prior_text,
        "candidates": [
            {"label": label(row), **{g: _fmt(row.get(g)) for g in GROUPS}}
            for row in (record.get("candidates") or {}).values()
        ],
        "not_applicable": [
            f"{method} does not apply: {reason}" for method, reason in (record.get("not_applicable") or {}).items()
        ],
        "plot_file": names.CALIBRATION_PLOT,
    }
