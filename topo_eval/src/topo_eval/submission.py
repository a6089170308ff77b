"""Old import path of :mod:`topo_eval.predictive.submission`, kept so existing imports still
work."""

from topo_eval.predictive.submission import (
    COLUMNS,
    Submission,
    competition_trial_indices,
    ground_truth,
    read_submission,
    score_submission,
    submission_file_name,
    write_submission,
)

__all__ = [
    "COLUMNS",
    "Submission",
    "competition_trial_indices",
    "ground_truth",
    "read_submission",
    "score_submission",
    "submission_file_name",
    "write_submission",
]
