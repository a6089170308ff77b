"""``split``: assign neurons to tasks from the weights and cut per-task sub-networks.

Greedy backward assignment (SpatialNetworks' method): an output neuron belongs to task
``index % tasks`` (logit index = label · tasks + task); going down, neuron k of the layer below
scores ``s_t(k) = Σ_{j of task t} |W[j, k]|`` over the neurons j above it that feed on it, and
belongs to ``argmax_t s_t(k)``. A conv weight is reduced over its kernel (Σ |w|) per channel
pair. One matrix product per layer.

Sub-network of task t: in every layer of ``where``, the incoming weights (rows) of the neurons
not kept for t are zeroed, and so are their biases (``zero_bias``), so that they take no input.
``greedy`` keeps a layer's own neurons; ``probability`` keeps neuron k for task t with
probability ``s_t(k) / max_t' s_t'(k)`` (one seeded draw per neuron and task). Both use the row
convention (the original masked rows in one method and columns in the other).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from topo_models import TopoError
from topo_models.atomic import atomic_write_bytes

METHODS = ("greedy", "probability")
ASSIGNMENT_FILE = "assignment.npz"


@dataclass(frozen=True)
class TaskAssignment:
    """Per spatial layer (network order): each neuron's task and the scores behind it."""

    tasks: dict[str, np.ndarray]  # layer → (neurons,) int task index
    scores: dict[str, np.ndarray]  # layer → (tasks, neurons) summed |W| from each task above

    def counts(self, n_tasks: int) -> dict[str, np.ndarray]:
        """Neurons of each task, per layer: ``(tasks,)``."""
        return {name: np.bincount(t, minlength=n_tasks) for name, t in self.tasks.items()}

    def save(self, directory: str | Path) -> Path:
        """Write ``assignment.npz`` (``tasks:<layer>`` and ``scores:<layer>`` arrays)."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            **{f"tasks:{name}": t for name, t in self.tasks.items()},
            **{f"scores:{name}": s for name, s in self.scores.items()},
        )
        path = Path(directory) / ASSIGNMENT_FILE
        atomic_write_bytes(buffer.getvalue(), path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> TaskAssignment:
        path = Path(directory) / ASSIGNMENT_FILE
        if not path.is_file():
            raise TopoError(
                "no task assignment here; run the split stage first",
                file=path,
                expected=f"{ASSIGNMENT_FILE} written by `python -m topo_eval task=split`",
            )
        with np.load(path, allow_pickle=False) as saved:
            parts = {kind: {} for kind in ("tasks", "scores")}
            for key in saved.files:
                kind, _, name = key.partition(":")
                if kind in parts:
                    parts[kind][name] = saved[key]
        return cls(**parts)


def _bare(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def spatial_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The network's spatial layers in order; a clear error for other modules."""
    model = _bare(model)
    if not hasattr(model, "spatial_layers"):
        raise TopoError(
            "this model has no spatial layers to split",
            field="model",
            expected="a spatial network (spatial_mlp, spatial_cnn)",
            found=type(model).__name__,
        )
    return dict(model.spatial_layers())


def check_where(model: nn.Module, where: Sequence[str] | str | None) -> list[str]:
    """``where`` as a list of spatial layer names; unknown names are refused.

    ``None`` is the last hidden layer (the one under the output: masking it cuts the network
    where its tasks part, while the layers below still share features); ``"all"`` is every
    spatial layer.
    """
    layers = spatial_layers(model)
    names = list(layers)
    if where is None:
        return names[-2:-1] or names
    if isinstance(where, str):
        if where != "all":
            raise TopoError(
                "split.where must list layer names, or be 'all' or null",
                field="where",
                expected=names,
                found=where,
            )
        return names
    modules = dict(_bare(model).named_modules())
    for name in where:
        if name not in layers:
            reason = "is not a spatial layer" if name in modules else "is not a layer of the model"
            raise TopoError(
                f"split.where: {name!r} {reason}",
                field="where",
                expected=list(layers),
                found=name,
            )
    return [str(name) for name in where]


def weight_strength(weight: torch.Tensor) -> torch.Tensor:
    """|W| as ``(out, in)``: a conv weight summed over its kernel."""
    strength = weight.detach().abs().double()
    return strength.sum(dim=tuple(range(2, strength.dim()))) if strength.dim() > 2 else strength


@torch.no_grad()
def greedy_assignment(model: nn.Module, n_tasks: int) -> TaskAssignment:
    """Assign every neuron of every spatial layer to a task, from the output layer down."""
    layers = spatial_layers(model)
    names = list(layers)
    output = layers[names[-1]]
    n_out = output.weight.shape[0]
    if n_out % n_tasks:
        raise TopoError(
            "the output layer does not hold labels × tasks logits",
            field="n_tasks",
            expected=f"a divisor of {n_out}",
            found=n_tasks,
        )
    task = torch.arange(n_out) % n_tasks
    tasks = {names[-1]: task.numpy()}
    scores = {names[-1]: nn.functional.one_hot(task, n_tasks).T.double().numpy()}
    bare = _bare(model)
    for upper in reversed(names):
        lower = bare.predecessor(upper)
        if lower is None:
            continue
        onehot = nn.functional.one_hot(torch.as_tensor(tasks[upper]).long(), n_tasks).double()
        score = onehot.T @ weight_strength(layers[upper].weight)  # (tasks, neurons below)
        tasks[lower] = score.argmax(0).numpy()
        scores[lower] = score.numpy()
    return TaskAssignment(
        tasks={name: tasks[name] for name in names}, scores={name: scores[name] for name in names}
    )


def keep_masks(
    assignment: TaskAssignment,
    n_tasks: int,
    where: Sequence[str],
    method: str = "greedy",
    seed: int = 0,
) -> list[dict[str, np.ndarray]]:
    """Per task, the neurons kept in each layer of ``where``: ``[{layer: (neurons,) bool}]``."""
    if method not in METHODS:
        raise TopoError("unknown split method", field="method", expected=METHODS, found=method)
    generator = np.random.default_rng(seed)
    masks: list[dict[str, np.ndarray]] = [{} for _ in range(n_tasks)]
    for name in where:
        if method == "greedy":
            for t in range(n_tasks):
                masks[t][name] = assignment.tasks[name] == t
            continue
        scores = assignment.scores[name]
        top = scores.max(0, keepdims=True)
        probability = np.divide(scores, top, out=np.zeros_like(scores), where=top > 0)
        drawn = generator.random(scores.shape) < probability  # (tasks, neurons)
        for t in range(n_tasks):
            masks[t][name] = drawn[t]
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, keep: dict[str, np.ndarray], zero_bias: bool = True) -> nn.Module:
    """A copy of ``model`` with the incoming weights of every dropped neuron zeroed."""
    network = copy.deepcopy(_bare(model))
    layers = dict(network.spatial_layers())
    for name, kept in keep.items():
        layer = layers[name]
        dropped = torch.as_tensor(~np.asarray(kept, dtype=bool), device=layer.weight.device)
        layer.weight[dropped] = 0.0
        if zero_bias and layer.bias is not None:
            layer.bias[dropped] = 0.0
    return network


def split_network(
    model: nn.Module,
    n_tasks: int,
    where: Sequence[str] | str | None = None,
    method: str = "greedy",
    zero_bias: bool = True,
    seed: int = 0,
) -> tuple[list[nn.Module], TaskAssignment, list[dict[str, np.ndarray]]]:
    """Per-task sub-networks of ``model``, the assignment and the masks used."""
    layers = check_where(model, where)
    assignment = greedy_assignment(model, n_tasks)
    masks = keep_masks(assignment, n_tasks, layers, method, seed)
    networks = [apply_masks(model, keep, zero_bias).eval() for keep in masks]
    return networks, assignment, masks
