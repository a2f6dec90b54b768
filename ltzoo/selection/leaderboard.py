"""The race's leaderboard: every trial, the rungs it reached with their val top-1, where it stopped and why.

The order is the val order and nothing else: trials that reached a higher rung first, then by val top-1 at the
highest rung they reached (ties by name). The winner is the first row.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from ltzoo.selection.race import RUNG_STEPS


@dataclass
class Row:
    recipe: str
    state: str  # "completed the race", "pruned", "not raced" (budget), "running", "failed"
    # step -> {epochs, val_all, scored_as[, trained_by: the recipe whose identical run it continued]}
    rungs: dict[int, dict[str, Any]] = field(default_factory=dict)
    why: str = ""

    @property
    def reached(self) -> int:
        return max(self.rungs, default=0)

    @property
    def last_val(self) -> float:
        return float(self.rungs[self.reached]["val_all"]) if self.rungs else -math.inf

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reached_rung": self.reached, "last_val_all": self.rungs and self.last_val or None}


def rows_of(study: optuna.Study) -> list[Row]:
    rows: dict[str, Row] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("leftover"):
            continue
        recipe = trial.params.get("recipe") or (trial.system_attrs.get("fixed_params") or {}).get("recipe")
        if recipe is None:
            continue
        rungs = {step: trial.user_attrs[f"rung_{step}"] for step in RUNG_STEPS if f"rung_{step}" in trial.user_attrs}
        state = {
            optuna.trial.TrialState.COMPLETE: "completed the race",
            optuna.trial.TrialState.PRUNED: "pruned",
            optuna.trial.TrialState.WAITING: "not raced",
            optuna.trial.TrialState.RUNNING: "running",
            optuna.trial.TrialState.FAIL: "failed",
        }[trial.state]
        row = Row(recipe, state, rungs)
        if state == "pruned":
            row.why = (
                f"stopped at rung {row.reached} ({rungs[row.reached]['epochs']} epochs): val "
                f"{row.last_val:.2f} below the top 1/2 of the trials that reached it"
            )
        elif state == "completed the race":
            row.why = f"reached the last rung ({rungs[row.reached]['epochs']} epochs)"
        elif state == "not raced":
            row.why = "not started before the race's share of --budget-minutes ran out"
        # a recipe re-queued after a dead worker has two trials: the one that went further counts
        if recipe not in rows or (row.reached, row.state != "failed") > (
            rows[recipe].reached,
            rows[recipe].state != "failed",
        ):
            rows[recipe] = row
    return sorted(rows.values(), key=lambda r: (-r.reached, -r.last_val, r.recipe))


def markdown(rows: list[Row]) -> str:
    lines = [
        "| rank | recipe | " + " | ".join(f"rung {s} val" for s in RUNG_STEPS) + " | stopped | why |",
        "|---" * (len(RUNG_STEPS) + 4) + "|",
    ]
    for rank, row in enumerate(rows, 1):
        cells = [_cell(row.rungs[s]) if s in row.rungs else "-" for s in RUNG_STEPS]
        lines.append(f"| {rank} | {row.recipe} | " + " | ".join(cells) + f" | {row.state} | {row.why} |")
    return "\n".join(lines)


def _cell(rung: dict[str, Any]) -> str:
    shared = f"; continues {rung['trained_by'].split('.')[0]}'s run" if rung.get("trained_by") else ""
    return f"{rung['val_all']:.2f} ({rung['scored_as']}{shared})"


def plot_png(rows: list[Row], title: str = "") -> bytes:
    """Val top-1 per rung for every recipe (a line per recipe; where it stops is where the pruner stopped it)."""
    from ltzoo.plotting import plt, png_bytes

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    for row in rows:
        steps = sorted(row.rungs)
        if steps:
            ax.plot(
                [row.rungs[s]["epochs"] for s in steps],
                [row.rungs[s]["val_all"] for s in steps],
                marker="o",
                label=row.recipe.split(".")[0],
                linewidth=2.2 if row is rows[0] else 1.0,
            )
    ax.set_xlabel("epochs trained (rungs: 1/8, 1/4, 1/2 of the budget)")
    ax.set_ylabel("val top-1, calibrated on val (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return png_bytes(fig)


def write(rows: list[Row], out: Path, extra: dict[str, Any]) -> Path:
    """leaderboard.json, leaderboard.md and leaderboard.png in ``out``."""
    from ltzoo.fileio import atomic_write_bytes, atomic_write_json

    atomic_write_json(out / "leaderboard.json", {**extra, "rows": [row.to_dict() for row in rows]})
    atomic_write_bytes(out / "leaderboard.md", (markdown(rows) + "\n").encode())
    atomic_write_bytes(out / "leaderboard.png", plot_png(rows, "ltzoo select: val top-1 per rung"))
    return out / "leaderboard.md"
