"""The resume check: which config changes a run may resume across."""

from __future__ import annotations

from topo_train.config_diff import config_differences


def test_a_changed_number_is_a_difference_and_a_safe_key_is_not():
    saved = {"loss": {"alpha": 0.25}, "trainer": {"progress": True, "max_steps": 10}}
    current = {"loss": {"alpha": 0.5}, "trainer": {"progress": False, "max_steps": 10}}
    assert config_differences(saved, current) == ["loss.alpha"]


def test_a_run_saved_before_its_objective_moved_resumes_under_the_new_path():
    saved = {"loss": {"_target_": "topo_train.predictive_objective.PoissonObjective"}}
    current = {"loss": {"_target_": "topo_train.objectives.PoissonObjective"}}
    assert config_differences(saved, current) == []
    other = {"loss": {"_target_": "topo_train.objectives.RetinaPoissonObjective"}}
    assert config_differences(saved, other) == ["loss._target_"]
