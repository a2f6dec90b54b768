"""Export fidelity: per-split accuracy deltas after export, for every trained fmnist_lt model and variant.

For each ``*.fmnist_lt`` recipe the seed-0 run of the accuracy benchmark (trained here if missing)
is exported to fp32, fp16 and int8 (QDQ, class-balanced calibration from train) and every variant
is scored by the same evaluator on val and test; the table shows the test deltas (points) against
PyTorch and whether the export gate passed.

    .venv/bin/python -m benchmarks.export_fidelity [--quick]
    .venv/bin/python -m benchmarks.export_fidelity --only dscl_resnet32.fmnist_lt   # re-run some, keep the rest

``--only`` re-exports the named models (after their recipe changed, say) and keeps every other model's
row of the existing full results while that model's recipe is unchanged (a recipe fingerprint per row).

``--calibrated`` adds the row of CE seed 0 after ``ltzoo calibrate --method auto`` (the run of
``benchmarks/calibration.py``, calibrated here if missing), keeping the other rows likewise:

    .venv/bin/python -m benchmarks.export_fidelity --calibrated
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.common import GROUPS, RESULTS_DIR, WORK_DIR, markdown_table, recipe_sha256, train_seeded, write_results

VARIANTS = ("fp32", "fp16", "int8")
CALIBRATED_CE = "ce_resnet32.fmnist_lt+calibrated"  # a row name: CE seed 0 after `ltzoo calibrate --method auto`


def _zoo_name(row_name: str) -> str:
    return row_name.split("+")[0]


def _variant_gate(result: dict[str, Any], variant: str) -> str:
    """This variant's own verdict: the failures that name it (a failed int8 does not fail fp32's row)."""
    own = [f for f in result.get("failures", []) if f.startswith(f"{variant}:") or f.startswith(f"{variant} on ")]
    if not own and result["gate_passed"] is False and not result.get("failures"):
        return f"FAILED: {result['error']}"
    return "passed" if not own else "FAILED: " + "; ".join(own)


def markdown(results: list[dict[str, Any]]) -> str:
    rows = []
    for result in results:
        deltas = result["verification"].get("deltas", {}).get("test", {})
        for variant in VARIANTS:
            delta = deltas.get(variant, {})
            label = variant if variant != "int8" else f"int8 ({result.get('int8_calibration') or '?'})"
            rows.append(
                [
                    result["name"].split(".")[0] + (" (calibrated)" if result["name"] == CALIBRATED_CE else ""),
                    label,
                    *[("-" if delta.get(g) is None else f"{delta[g]:+.2f}") for g in GROUPS],
                    _variant_gate(result, variant),
                ]
            )
    return (
        "## Export fidelity (fmnist_lt, seed 0): test top-1 change after export, points vs PyTorch\n\n"
        + markdown_table(
            ["method", "variant", *GROUPS, "gate (all/few on val and test: fp32 0.1, fp16 0.5, int8 1.0 pt)"], rows
        )
        + "\n\nThe same evaluator scores PyTorch and each ONNX Runtime session; val deltas are in the JSON. "
        "int8 is the default export (`--int8-target tensorrt`, `--calib-method auto`): minmax, then percentile, "
        "then entropy calibration, keeping the first whose **val** drop is within the gate (test never chooses); "
        "the method chosen is in brackets."
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CE only, 3-step training")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="zoo names to re-export; the other models' rows are kept from the existing full results",
    )
    parser.add_argument(
        "--calibrated",
        action="store_true",
        help="export the calibrated CE run (seed 0) as one more row; keep the others",
    )
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR / "accuracy")
    args = parser.parse_args(argv)

    import ltzoo
    from ltzoo.errors import ExportCheckError
    from ltzoo.export.pipeline import ExportOptions, export

    every = ltzoo.list_models("*.fmnist_lt")
    unknown = sorted(set(args.only or []) - set(every))
    if unknown:
        parser.error(f"--only: not fmnist_lt zoo names: {unknown}; choose from {every}")
    names = ["ce_resnet32.fmnist_lt"] if args.quick else (args.only or ([] if args.calibrated else every))
    if args.calibrated:
        names.append(CALIBRATED_CE)
    keeps_others = (args.only or args.calibrated) and not args.quick
    kept: dict[str, dict[str, Any]] = {}
    previous = RESULTS_DIR / "export_fidelity.json"
    if keeps_others and previous.is_file():
        # A kept row must come from the recipe the registry has now; rows of an edited recipe are dropped.
        kept = {
            r["name"]: r
            for r in json.loads(previous.read_text())["results"]
            if r["name"] not in names
            and r.get("recipe_sha256") == recipe_sha256(ltzoo.get_entry(_zoo_name(r["name"])).recipe())
        }
    work_dir = args.work_dir / ("quick" if args.quick else "full")
    results: list[dict[str, Any]] = []
    for name in names:
        zoo_name = _zoo_name(name)
        limits: dict[str, Any] = (
            {"steps_per_epoch": 3, "epochs": len(ltzoo.get_entry(zoo_name).recipe().stages)} if args.quick else {}
        )
        run = Path(train_seeded(zoo_name, 0, work_dir, **limits)["run_dir"])
        if name == CALIBRATED_CE:
            from benchmarks.calibration import calibrated_run

            calibrated = WORK_DIR / "calibration" / f"{zoo_name.replace('.', '_')}_seed0"
            calibrated_run(run, calibrated)
            run = calibrated
        out = WORK_DIR / "export_fidelity" / ("quick" if args.quick else "full") / name.replace(".", "_")
        try:
            report = export(f"local-dir:{run}", out, ExportOptions(fp16=True, int8=True, verify="dataset"))
            passed, error = True, ""
        except ExportCheckError as exc:  # a failed gate is a result to report, not a crash
            from ltzoo.export.report import read_report

            report, passed, error = read_report(out), False, str(exc).splitlines()[0]
        int8_recipe = (report.variants["int8"].recipe if "int8" in report.variants else None) or {}
        results.append(
            {
                "name": name,
                "recipe_sha256": recipe_sha256(ltzoo.get_entry(zoo_name).recipe()),
                "run": str(run),
                "gate_passed": passed,
                "error": error,
                "int8_calibration": int8_recipe.get("calibration_method"),
                "int8_calibration_choice": int8_recipe.get("calibration_choice"),
                "failures": [str(f) for f in report.failures],
                "verification": report.verification.to_dict(),
            }
        )
    fresh = {r["name"]: r for r in results}
    if keeps_others:  # every model's row, in zoo order (the calibrated CE last): the fresh ones and the kept ones
        results = [fresh.get(name) or kept[name] for name in [*every, CALIBRATED_CE] if name in fresh or name in kept]
    md = markdown(results)
    missing = [name for name in every if name not in {r["name"] for r in results}]
    if missing and not args.quick:
        md += (
            "\n\nNot yet exported at the current recipes: "
            + ", ".join(n.split(".")[0] for n in missing)
            + " (`--only NAME` adds a row)."
        )
    report_json = {"quick": args.quick, "results": results}
    write_results("export_fidelity", report_json, md)
    print(md)
    return report_json


if __name__ == "__main__":
    main()
