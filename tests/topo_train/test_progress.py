"""Progress lines: one per tenth of the run and one at its end, for the log file; hidden from
the console while a progress bar shows the same."""

from __future__ import annotations

import logging

from topo_train.progress import HideWhenBarShown, Progress


def test_a_line_every_tenth_of_the_run_and_one_at_the_end(caplog):
    caplog.set_level(logging.INFO, logger="topo_train.progress")
    progress = Progress(total=40, initial=0, bar=False)
    for step in range(1, 41):
        progress.set_loss(1.0 / step)
        progress.update(step)
    progress.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0].startswith("step 4/40 (10%) · loss/total 0.25 · ")
    assert lines[-1].startswith("step 40/40 (100%)") and "left" not in lines[-1]


def test_a_resumed_run_counts_from_its_step_and_lines_carry_whether_a_bar_shows(caplog):
    caplog.set_level(logging.INFO, logger="topo_train.progress")
    progress = Progress(total=10, initial=8, bar=True)
    progress.update(9)
    progress.close()
    steps = [r.getMessage().split()[1] for r in caplog.records]
    assert steps == ["9/10", "9/10"]  # the tenth crossed at step 9, then where it stopped
    assert all(r.bar_shown for r in caplog.records)
    assert not HideWhenBarShown().filter(caplog.records[0])
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert HideWhenBarShown().filter(other)


def test_replicas_log_no_progress(caplog):
    caplog.set_level(logging.INFO, logger="topo_train.progress")
    progress = Progress(total=10, initial=0, bar=False, lines=False)
    progress.update(5)
    progress.close()
    assert not caplog.records


def test_the_bar_and_lines_show_the_metric_the_objective_names(caplog):
    caplog.set_level(logging.INFO, logger="topo_train.progress")
    progress = Progress(total=10, initial=0, bar=False)
    progress.set_loss(1.2345, "loss/poisson_per_neuron_trial")
    progress.update(1)
    assert (
        caplog.records[0]
        .getMessage()
        .startswith("step 1/10 (10%) · loss/poisson_per_neuron_trial 1.234 · ")
    )
