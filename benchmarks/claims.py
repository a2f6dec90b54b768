"""The seed papers' claims that can be tested at this scale, verdict by verdict, from the benchmark results.

Nothing is trained here: each claim is read from the committed results of the benchmark that tests it
(``accuracy`` for the claims that compare zoo recipes, ``dscl_ablation``, ``wb_benchmark``, ``synergy_ablation``,
``iccl_ablation``, and ``dscl_probe_bn`` / ``recipe_sweep`` where they exist), seed by seed (same seed, test top-1
all unless the claim names another quantity). A claim **held** when it holds on every seed, **not held** on none,
**mixed** otherwise; a claim whose arm was not run says so. The budget and machine of each source are shown,
because the results were not all produced at the same budget.

    .venv/bin/python -m benchmarks.claims

Writes ``benchmarks/results/claims.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, markdown_table, write_results


def _load(name: str, results_dir: Path) -> dict[str, Any] | None:
    path = results_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def verdict(wins: int, count: int) -> str:
    if count == 0:
        return "not measured"
    return "held" if wins == count else "not held" if wins == 0 else "mixed"


def _by_seed(runs: list[dict[str, Any]], group: str = "all") -> dict[int, float]:
    return {run["seed"]: run["test"][group] for run in runs}


def compare(
    better: list[dict[str, Any]], worse: list[dict[str, Any]], group: str = "all", at_least: bool = False
) -> tuple[int, int]:
    """(seeds where ``better`` > ``worse`` (or >= with ``at_least``), seeds compared)."""
    a, b = _by_seed(better, group), _by_seed(worse, group)
    common = sorted(set(a) & set(b))
    return sum((a[s] >= b[s]) if at_least else (a[s] > b[s]) for s in common), len(common)


def _source(report: dict[str, Any], budget: Any) -> str:
    machine = report.get("machine", {})
    return f"{report['benchmark']} ({budget} epochs; {machine.get('cpu', '?')}, {str(machine.get('date', ''))[:10]})"


def dscl_claims(results_dir: Path) -> list[dict[str, Any]]:
    report = _load("dscl_ablation", results_dir)
    if report is None:
        return [
            {
                "paper": "DSCL",
                "claim": "SCL < DSCL < DSCL + PBSD",
                "verdict": "not measured",
                "seeds": "-",
                "source": "-",
            }
        ]
    arms = {arm: data["runs"] for arm, data in report["arms"].items()}
    scl, dscl, both = (_by_seed(arms[a]) for a in ("scl", "dscl", "dscl_pbsd"))
    seeds = sorted(set(scl) & set(dscl) & set(both))
    ordered = sum(scl[s] < dscl[s] < both[s] for s in seeds)
    rows = [
        {
            "paper": "DSCL",
            "claim": "SCL < DSCL < DSCL + PBSD (the paper's ordering, per seed)",
            "verdict": verdict(ordered, len(seeds)),
            "seeds": f"{ordered}/{len(seeds)}",
            "source": _source(report, report.get("epochs")),
        }
    ]
    for paper_claim, better, worse in (
        ("DSCL > SCL (the decoupled loss helps)", "dscl", "scl"),
        ("DSCL + PBSD > DSCL (patch distillation helps)", "dscl_pbsd", "dscl"),
        ("PBSD only > SCL", "pbsd", "scl"),
    ):
        wins, count = compare(arms[better], arms[worse])
        rows.append(
            {
                "paper": "DSCL",
                "claim": paper_claim,
                "verdict": verdict(wins, count),
                "seeds": f"{wins}/{count}",
                "source": _source(report, report.get("epochs")),
            }
        )
    return rows


def wb_claims(results_dir: Path) -> list[dict[str, Any]]:
    report = _load("wb_benchmark", results_dir)
    if report is None:
        return []
    claim = report["claim"]
    held = claim["seeds_where_one_stage_ge"]
    wins, count = (int(x) for x in held.split("/"))
    per_seed = report.get("per_seed", [])
    fisher = [
        (r["ce_wd"]["test"]["fisher_ratio"], r["ce"]["test"]["fisher_ratio"])
        for r in per_seed
        if "fisher_ratio" in r.get("ce_wd", {}).get("test", {}) and "fisher_ratio" in r.get("ce", {}).get("test", {})
    ]
    fisher_wins = sum(a > b for a, b in fisher)
    # The budget is the two-stage WB recipe's, stages included (the results keep each arm's recipe by zoo name).
    wb_recipe = report.get("recipes", {}).get("wb_resnet32.fmnist_lt")
    budget = sum(stage["epochs"] for stage in wb_recipe["stages"]) if wb_recipe else "?"
    return [
        {
            "paper": "Weight balancing",
            "claim": "one stage (WD + FR + ETF + LA) >= two stages (WB)",
            "verdict": verdict(wins, count),
            "seeds": held,
            "source": _source(report, budget),
        },
        {
            "paper": "Weight balancing",
            "claim": "weight decay raises the Fisher ratio of the features (CE + WD > CE)",
            "verdict": verdict(fisher_wins, len(fisher))
            if fisher
            else ("held (means only)" if claim.get("fisher_ratio_wd_raises") else "not held (means only)"),
            "seeds": f"{fisher_wins}/{len(fisher)}" if fisher else "-",
            "source": _source(report, budget),
        },
    ]


def synergy_claims(results_dir: Path) -> list[dict[str, Any]]:
    report = _load("synergy_ablation", results_dir)
    if report is None:
        return []
    budget = report.get("config", {}).get("epochs", "30")
    return [
        {
            "paper": "SCL + RSG + LDAM",
            "claim": c["claim"] + (f" ({c['proxy']})" if c.get("proxy") else ""),
            "verdict": "not measured" if str(c["verdict"]).startswith("not measured") else c["verdict"],
            "seeds": c.get("seeds_held") or "-",
            "source": _source(report, budget),
        }
        for c in report["claims"]
    ]


def iccl_claims(results_dir: Path) -> list[dict[str, Any]]:
    report = _load("iccl_ablation", results_dir)
    if report is None:
        return []
    arms = {arm: data["runs"] for arm, data in report["arms"].items()}
    budget = next(iter(report["arms"].values())).get("epochs", "30")
    rows = []
    for claim, better, worse in (
        ("the interpolation helps (ICCL > ICCL without interpolation)", "iccl", "iccl_no_interpolation"),
        ("the classifier stage helps (ICCL > ICCL without stage 2)", "iccl", "iccl_no_stage2"),
        ("ICCL > CE", "iccl", "ce"),
    ):
        wins, count = compare(arms[better], arms[worse])
        rows.append(
            {
                "paper": "ICCL",
                "claim": claim,
                "verdict": verdict(wins, count),
                "seeds": f"{wins}/{count}",
                "source": _source(report, budget),
            }
        )
    return rows


def converged_budget_claims(results_dir: Path) -> list[dict[str, Any]]:
    """The claims that compare rows of the accuracy table: the zoo's current recipes at the shared (converged)
    budget, the rows' common seeds. SCL there is the SupContrast recipe, not the DSCL ablation's alpha-SCL."""
    report = _load("accuracy", results_dir)
    if report is None or report.get("quick"):
        return []
    rows = {
        name.split("_resnet32")[0]: [{"seed": s, "test": t} for s, t in zip(row.get("seeds", []), row["test"])]
        for name, row in report["rows"].items()
        if name.endswith(".fmnist_lt")
    }
    source = _source(report, report.get("budget_epochs", "?")) + ", the zoo's recipes"
    claims = []

    def add(paper: str, claim: str, wins_count: tuple[int, int] | None) -> None:
        if wins_count is None:
            claims.append({"paper": paper, "claim": claim, "verdict": "not measured", "seeds": "-", "source": source})
        else:
            wins, count = wins_count
            claims.append(
                {
                    "paper": paper,
                    "claim": claim,
                    "verdict": verdict(wins, count),
                    "seeds": f"{wins}/{count}",
                    "source": source,
                }
            )

    def pair(better: str, worse: str, at_least: bool = False) -> tuple[int, int] | None:
        return compare(rows[better], rows[worse], at_least=at_least) if better in rows and worse in rows else None

    if all(m in rows for m in ("scl", "dscl", "dscl_pbsd")):
        scl, dscl, both = (_by_seed(rows[m]) for m in ("scl", "dscl", "dscl_pbsd"))
        seeds = sorted(set(scl) & set(dscl) & set(both))
        add(
            "DSCL",
            "SCL < DSCL < DSCL + PBSD (zoo recipes)",
            (sum(scl[s] < dscl[s] < both[s] for s in seeds), len(seeds)),
        )
    else:
        add("DSCL", "SCL < DSCL < DSCL + PBSD (zoo recipes)", None)
    add("DSCL", "DSCL > SCL (zoo recipes)", pair("dscl", "scl"))
    add("DSCL", "DSCL + PBSD > DSCL (zoo recipes)", pair("dscl_pbsd", "dscl"))
    add(
        "DSCL", "DSCL + PBSD >= CE overall (the direction of the paper's claim)", pair("dscl_pbsd", "ce", at_least=True)
    )
    add("Weight balancing", "one stage >= two stages (zoo recipes)", pair("wb_onestage", "wb", at_least=True))
    parts = [m for m in ("scl", "rsg", "ldam_drw") if m in rows]
    if "scl_rsg_ldam" in rows and len(parts) == 3:
        joint = _by_seed(rows["scl_rsg_ldam"])
        by_part = [_by_seed(rows[m]) for m in parts]
        seeds = sorted(set(joint).intersection(*by_part))
        add(
            "SCL + RSG + LDAM",
            "the combination beats each of SCL, RSG and LDAM-DRW (zoo recipes)",
            (sum(joint[s] > max(p[s] for p in by_part) for s in seeds), len(seeds)),
        )
    else:
        add("SCL + RSG + LDAM", "the combination beats each of SCL, RSG and LDAM-DRW (zoo recipes)", None)
    add("ICCL", "ICCL > CE (zoo recipes)", pair("iccl", "ce"))
    return claims


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="accepted for benchmarks.run (nothing is trained)")
    args = parser.parse_args(argv)
    claims = [
        *converged_budget_claims(RESULTS_DIR),
        *dscl_claims(RESULTS_DIR),
        *wb_claims(RESULTS_DIR),
        *synergy_claims(RESULTS_DIR),
        *iccl_claims(RESULTS_DIR),
    ]
    md = "\n".join(
        [
            "## The seed papers' claims at this scale (fmnist_lt)",
            "",
            "Seed by seed, test top-1 all unless the claim names another quantity: held on every seed, not held on "
            "any, or mixed. Each row names the benchmark result it comes from, with its budget and machine. The rows "
            "from `accuracy` compare the zoo's current recipes at the shared budget; an ablation row whose source says "
            "30 epochs was trained at the earlier design budget, with the recipes of that time (for DSCL and the "
            "synergy, the contrastive views before `recipe_sweep` changed them; see each ablation's own results).",
            "",
            markdown_table(
                ["paper", "claim", "verdict", "seeds", "source"],
                [[c["paper"], c["claim"], c["verdict"], c["seeds"], c["source"]] for c in claims],
            ),
        ]
    )
    report = {"quick": args.quick, "claims": claims}
    if not args.quick:
        write_results("claims", report, md)
    print(md)
    return report


if __name__ == "__main__":
    main()
