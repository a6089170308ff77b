"""``record``: per-task, per-neuron activity statistics of a spatial multi-task network.

For every spatial layer and every task, the mean absolute activation (``mean``) or the variance
(``variance``) of each neuron over the samples of that task, as SpatialNetworks' record step —
but batched (one forward per batch, per-task sums by one matrix product) instead of one sample
at a time, on whatever device is given (the original always tried CUDA), and of the layers'
outputs: the neurons that have positions. A conv layer's neuron is a channel; its statistics
pool every spatial location. Only an input mode with a task per sample (sequential) can be
recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from topo_models import TopoError
from topo_models.atomic import atomic_write_bytes

REDUCTIONS = ("mean", "variance")
ACTIVITY_FILE = "activity.npz"


@dataclass(frozen=True)
class ActivityRecord:
    """Statistics ``(tasks, neurons)`` per layer, and the number of observations per task."""

    reduction: str
    task_names: tuple[str, ...]
    layers: dict[str, np.ndarray]
    counts: np.ndarray  # (tasks,) samples of each task

    def save(self, directory: str | Path) -> Path:
        """Write ``activity.npz`` (one array per layer, plus reduction, task names, counts)."""
        import io

        path = Path(directory) / ACTIVITY_FILE
        buffer = io.BytesIO()
        np.savez(
            buffer,
            **{f"layer:{name}": values for name, values in self.layers.items()},
            reduction=np.array(self.reduction),
            task_names=np.array(self.task_names),
            counts=self.counts,
        )
        atomic_write_bytes(buffer.getvalue(), path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ActivityRecord:
        path = Path(directory) / ACTIVITY_FILE
        if not path.is_file():
            raise TopoError(
                "no recorded activity here; run the record stage first",
                file=path,
                expected=f"{ACTIVITY_FILE} written by `python -m topo_eval task=record`",
            )
        with np.load(path, allow_pickle=False) as saved:
            layers = {
                key.removeprefix("layer:"): saved[key]
                for key in saved.files
                if key.startswith("layer:")
            }
            return cls(
                reduction=str(saved["reduction"]),
                task_names=tuple(str(n) for n in saved["task_names"]),
                layers=layers,
                counts=saved["counts"],
            )


def _check_identity(data: Any) -> None:
    if not getattr(data, "has_task_identity", False):
        raise TopoError(
            "recording per-task activity needs one task per sample; this input mode mixes "
            "every task into each sample",
            field="data.input_mode",
            expected="sequential",
            found=getattr(data, "input_mode", None),
        )


@torch.no_grad()
def record_activity(
    model: nn.Module,
    data: Any,
    split: str = "val",
    reduction: str = "mean",
    device: str | torch.device = "cpu",
) -> ActivityRecord:
    """Per-task statistics of every spatial layer's neurons over ``data.loader(split)``.

    Args:
        model: a spatial network returning ``(logits, features)``.
        data: a ``MultiTaskData`` in sequential mode.
        split: ``val`` or ``train``.
        reduction: ``mean`` (mean |activation|) or ``variance`` (E[x²] − E[x]²).
        device: where the forward passes run.
    """
    if reduction not in REDUCTIONS:
        raise TopoError(
            "unknown reduction", field="reduction", expected=REDUCTIONS, found=reduction
        )
    _check_identity(data)
    device = torch.device(device)
    model = model.to(device).eval()
    layer_names = list(model.spatial_layers())
    tasks = data.sample_tasks(split).long()
    n_tasks = int(data.n_tasks)
    sums: dict[str, list[torch.Tensor]] = {}
    locations: dict[str, int] = {}
    observations = torch.zeros(n_tasks, dtype=torch.float64)
    start = 0
    for inputs, _ in data.loader(split):
        batch_tasks = tasks[start : start + inputs.shape[0]]
        start += inputs.shape[0]
        onehot = nn.functional.one_hot(batch_tasks, n_tasks).to(torch.float64)  # (B, T)
        _, features = model(inputs.to(device))
        for name in layer_names:
            x = features[name].detach().to("cpu", torch.float64)
            x = x.reshape(x.shape[0], x.shape[1], -1)  # (B, neurons, locations)
            locations[name] = x.shape[2]
            first = x.abs().sum(2) if reduction == "mean" else x.sum(2)
            terms = [onehot.T @ first]
            if reduction == "variance":
                terms.append(onehot.T @ x.pow(2).sum(2))
            if name not in sums:
                sums[name] = terms
            else:
                sums[name] = [a + b for a, b in zip(sums[name], terms, strict=True)]
        observations += onehot.sum(0)
    if start != tasks.shape[0]:
        raise TopoError(
            "the loader and the task list disagree on the number of samples",
            field=f"data.loader({split!r})",
            expected=tasks.shape[0],
            found=start,
        )
    layers = {}
    for name, terms in sums.items():
        count = (observations * locations[name]).clamp(min=1)[:, None]
        mean = terms[0] / count
        value = mean if reduction == "mean" else terms[1] / count - mean.pow(2)
        layers[name] = value.numpy()
    return ActivityRecord(
        reduction=reduction,
        task_names=tuple(task.name for task in data.tasks),
        layers=layers,
        counts=observations.numpy().astype(np.int64),
    )


def task_strength(activity: np.ndarray) -> np.ndarray:
    """``max(0, a_t − max_{t'≠t} a_t')`` per task and neuron: how specific a neuron is to a task.

    Args:
        activity: ``(tasks, neurons)`` recorded statistics.
    """
    activity = np.asarray(activity, dtype=np.float64)
    if activity.shape[0] < 2:
        return np.zeros_like(activity)
    order = np.sort(activity, axis=0)
    best, second = order[-1], order[-2]
    others = np.where(activity == best, second, best)  # max over the other tasks
    return np.maximum(activity - others, 0.0)
