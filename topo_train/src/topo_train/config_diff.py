"""Compare the config a checkpoint was trained with to the one asked for now.

Resuming under a changed config would silently mix two experiments; only keys that do not
change the numbers (where to log, how many loader workers, the device) may differ.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Keys that may change between a run and its resumption.
RESUMABLE_CHANGES: tuple[str, ...] = (
    "run_dir",
    "on_config_change",
    "tracking",
    "trainer.device",
    "trainer.log_every",
    "trainer.progress",
    "data.num_workers",
    "data.root",
)


# Constructors that moved: a run started before the move resumes (plain strings compared, never
# imported — a file's config chooses nothing that runs).
MOVED_TARGETS: dict[str, str] = {
    "topo_train.predictive_objective.PoissonObjective": "topo_train.objectives.PoissonObjective",
    "topo_train.multitask_objective.MultiTaskObjective": "topo_train.objectives.MultiTaskObjective",
    "topo_train.retina_objective.RetinaPoissonObjective": (
        "topo_train.objectives.RetinaPoissonObjective"
    ),
    "topo_train.swapped_positions.SwappedLayout": "topo_train.sheet.swapped.SwappedLayout",
    "topo_data.retina_responses.RetinaResponseData": "topo_data.retina.RetinaResponseData",
}


def flatten(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(dotted.key, leaf value)`` pairs of a nested mapping."""
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{dotted}.")
        else:
            yield dotted, value


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in RESUMABLE_CHANGES)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ (or exist on one side only), ignoring safe keys."""
    old, new = dict(flatten(saved)), dict(flatten(current))
    old = {k: MOVED_TARGETS.get(v, v) if k.endswith("_target_") else v for k, v in old.items()}
    keys = sorted(k for k in old.keys() | new.keys() if not _ignored(k))
    return [k for k in keys if old.get(k, "<absent>") != new.get(k, "<absent>")]
