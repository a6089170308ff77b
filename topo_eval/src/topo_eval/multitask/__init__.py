"""Spatial multi-task networks: record, split, score and plot (SpatialNetworks' workflow)."""

from topo_eval.multitask.record import ActivityRecord, record_activity, task_strength
from topo_eval.multitask.score import score_networks, split_summary, task_accuracies
from topo_eval.multitask.separation import cluster_separation, separation_table
from topo_eval.multitask.specialisation import (
    split_specialisation,
    symmetric_index,
    task_specialisation,
)
from topo_eval.multitask.split import (
    TaskAssignment,
    apply_masks,
    greedy_assignment,
    keep_masks,
    split_network,
)

__all__ = [
    "ActivityRecord",
    "TaskAssignment",
    "apply_masks",
    "cluster_separation",
    "greedy_assignment",
    "keep_masks",
    "record_activity",
    "score_networks",
    "separation_table",
    "split_network",
    "split_specialisation",
    "split_summary",
    "symmetric_index",
    "task_accuracies",
    "task_specialisation",
    "task_strength",
]
