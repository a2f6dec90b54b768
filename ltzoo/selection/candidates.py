"""What ``ltzoo select`` races: its options, the recipes planned on the data, and the :class:`Race` that trains them.

The command (:mod:`ltzoo.selection.job`) and the winner's seeds (:mod:`ltzoo.selection.finalize`), which may train
in processes of their own, both start here: each process plans the candidates itself from the options, so nothing
heavy crosses a process boundary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ltzoo.errors import BadHyperParameterError
from ltzoo.selection.race import Candidate, rung_epochs
from ltzoo.selection.trials import Race

SMALL_RECIPES = "*_resnet32.fmnist_lt"  # the zoo's small recipes, which own data races (with derived settings)


@dataclass(frozen=True)
class SelectOptions:
    data: str
    out: Path
    recipes: tuple[str, ...] = ()
    budget_minutes: float = 60.0
    race_seed: int = 0
    winner_seeds: tuple[int, ...] = (0, 1, 2)
    workers: int = 1
    storage: str | None = None
    data_root: str | None = None
    push: str | None = None
    race_only: bool = False
    epochs: int | None = None  # every recipe's full budget (default: its own, or derived from the data)
    steps_per_epoch: int | None = None  # a cap for smoke runs and tests

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["out"] = self.out.name
        return values


def plan_candidates(options: SelectOptions) -> dict[str, Candidate]:
    """Every recipe planned on the data, once each; unknown names and unusable data fail here, before any training.

    Budgets keep the recipes' own proportions: with --epochs (or the epochs derived from own data) as the budget
    of the longest recipe, a shorter one gets its share. So ce_wd, which is weight balancing's stage 1 alone,
    stays exactly that stage, and the race trains the two once up to there (:mod:`ltzoo.selection.shared`).
    The longest recipe is planned first: its plan gives the budget (the derived epochs depend on the data alone),
    so a shorter recipe is planned straight at its share."""
    from ltzoo.data.registry import DATASETS
    from ltzoo.registry import get_entry, list_models

    zoo_data = options.data in DATASETS
    names = list(options.recipes) or list_models(f"*.{options.data}" if zoo_data else SMALL_RECIPES)
    if not names:
        raise BadHyperParameterError(f"no zoo recipe trains on {options.data!r}; name them with --recipes")
    if not zoo_data and options.data_root is not None:
        raise BadHyperParameterError(
            "--data-root is for zoo datasets; with imagefolder:/splits: the source names the path"
        )
    entries = [get_entry(name) for name in names]  # an unknown name raises with close matches
    native = {entry.name: entry.recipe().total_epochs for entry in entries}
    longest_name = max(native, key=native.__getitem__)
    longest = native[longest_name]
    first = _plan(longest_name, options, zoo_data, options.epochs)
    budget = _full_epochs(first)
    scaled = options.epochs is not None or not zoo_data  # else every recipe keeps its own epochs

    def epochs_of(name: str) -> int | None:
        if scaled and native[name] < longest:
            return max(1, round(budget * native[name] / longest))
        return options.epochs

    candidates = {}
    for entry in entries:  # in the order asked for
        plan = first if entry.name == longest_name else _plan(entry.name, options, zoo_data, epochs_of(entry.name))
        full = _full_epochs(plan)
        candidates[entry.name] = Candidate(entry.name, plan, full, rung_epochs(full))
    return candidates


def _full_epochs(plan: Any) -> int:
    """The epochs a plan trains: its override, else its recipe's own total."""
    return plan.epochs or plan.recipe.total_epochs


def _plan(name: str, options: SelectOptions, zoo_data: bool, epochs: int | None) -> Any:
    from ltzoo.planner.derived import Overrides
    from ltzoo.planner.plan import plan_training

    if zoo_data:
        return plan_training(name, data_root=options.data_root, overrides=Overrides(epochs=epochs))
    return plan_training(name, data=options.data, overrides=Overrides(epochs=epochs))


def make_race(options: SelectOptions, candidates: dict[str, Candidate], deadline: float | None) -> Race:
    train_options = {"steps_per_epoch": options.steps_per_epoch} if options.steps_per_epoch else None
    return Race(
        candidates,
        options.out / "trials",
        options.storage,
        options.out,
        options.race_seed,
        deadline,
        train_options=train_options,
    )
