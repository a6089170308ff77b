"""Retina figures draw the stage responses, spikes and maps they are given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topo_data.retina.video import ArraySource
from topo_eval.retina.figures import (
    plot_on_off_maps,
    plot_run_output,
    plot_spikes,
    plot_stage_responses,
    run_output_traces,
    stage_responses,
)
from topo_eval.retina.runner import RetinaRunner, read_outputs
from topo_models import TopoError
from topo_models.retina import Retina

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_stage_responses_start_settled_and_leave_the_callers_retina_alone():
    retina = Retina(spikes=False)
    before = retina.parameters_dict()
    traces = stage_responses(retina, "step", duration_s=0.1, size=5)
    assert traces["time_s"].shape == (100,) and traces["time_s"][1] == pytest.approx(0.001)
    # ON and OFF see opposite signs of the same transient: a brighter step drives ON up
    assert traces["ganglion_input_ON"][5] > traces["ganglion_input_ON"][0]
    assert traces["ganglion_input_OFF"][5] < traces["ganglion_input_OFF"][0]
    impulse = stage_responses(retina, "impulse", duration_s=0.4, size=5)
    assert abs(impulse["opl"][-1]) < 0.05 * np.abs(impulse["opl"]).max()  # it decays away
    assert retina.parameters_dict() == before and retina.opl.center_signal is None
    figure = plot_stage_responses(traces)
    np.testing.assert_allclose(figure.axes[1].lines[0].get_ydata(), traces["bipolar"])
    with pytest.raises(TopoError, match="unknown stimulus"):
        stage_responses(retina, "flash")


def test_spike_raster_and_maps_show_the_given_spikes():
    spikes = np.zeros((200, 4, 4), dtype=bool)
    spikes[[10, 50, 90], 0, 0] = True
    spikes[20, 1, 2] = True
    figure = plot_spikes(spikes, steps_per_second=1000.0)
    assert len(figure.axes[0].collections[0].get_offsets()) == 4
    on = torch.zeros(1, 1, 200, 4, 4)
    on[0, 0] = torch.as_tensor(spikes, dtype=torch.float32)
    maps = plot_on_off_maps({"ganglion_spikes_ON": on, "ganglion_spikes_OFF": on * 0}, 1000.0)
    shown = maps.axes[0].images[0].get_array()
    assert shown[0, 0] == pytest.approx(15.0) and shown[1, 2] == pytest.approx(5.0)  # Hz
    with pytest.raises(TopoError, match="one ON and one OFF"):
        plot_on_off_maps({"ganglion_spikes_ON": on}, 1000.0)


def _run(tmp_path, frames: int = 240, **retina) -> tuple[np.ndarray, Retina]:
    """A white-noise movie (frames, 8, 8) run in chunks of 50 frames into tmp_path."""
    movie = np.random.default_rng(1).random((frames, 8, 8), dtype=np.float32)
    model = Retina.from_preset("human.parvo", **retina)
    RetinaRunner(model, ArraySource(movie), tmp_path, chunk=50, progress=False).run()
    return movie, model


def test_the_run_figure_holds_the_sampled_cells_of_every_chunk_and_the_input(tmp_path):
    movie, retina = _run(tmp_path)
    steps = retina.resolution.steps_per_second
    traces = run_output_traces(tmp_path, ArraySource(movie), steps, cells=16, max_bins=1000)
    outputs = read_outputs(tmp_path)  # the whole run at once, for the check only
    rows, cols = traces["cells"].T
    assert len(set(zip(rows, cols, strict=True))) == 16 and traces["grid"] == (8, 8)
    assert traces["bin_s"] == pytest.approx(1 / steps)  # 240 frames: one frame per bin
    for name, spikes in outputs.items():
        sampled = spikes[0, 0][:, rows, cols].T.astype(float) * steps  # (cells, frames), Hz
        np.testing.assert_array_equal(traces["rates"][name], sampled)
        population = spikes[0, 0].reshape(240, -1).mean(axis=1) * steps
        np.testing.assert_allclose(traces["population"][name], population)
    _, frames = np.nonzero(traces["rates"]["ganglion_spikes_ON"])
    assert len(frames) > 10 and frames.max() >= 200  # real spikes, from the last chunks too
    np.testing.assert_allclose(
        traces["luminance"], movie.reshape(240, -1).mean(axis=1, dtype=float)
    )
    np.testing.assert_allclose(traces["luminance_range"][1], movie.reshape(240, -1).max(axis=1))
    figure = plot_run_output(traces, steps)
    rasters = [axis.images[0].get_array() for axis in figure.axes if axis.images][:2]
    np.testing.assert_array_equal(rasters[0], traces["rates"]["ganglion_spikes_ON"])
    assert "16 of 8×8 cells" in figure._suptitle.get_text()


def test_a_long_run_is_pooled_into_a_bounded_number_of_bins(tmp_path):
    """Bins of 4 frames here (max_bins 60 of 240 frames); a longer movie keeps the same sizes."""
    movie, retina = _run(tmp_path, spikes=False)
    traces = run_output_traces(tmp_path, ArraySource(movie), 1000.0, cells=3, max_bins=60)
    current = read_outputs(tmp_path)["ganglion_input_OFF"][0, 0].astype(float)
    rows, cols = traces["cells"].T
    binned = current[:, rows, cols].reshape(60, 4, 3).mean(axis=1).T  # currents are Hz already
    assert traces["rates"]["ganglion_input_OFF"].shape == (3, 60)
    np.testing.assert_allclose(traces["rates"]["ganglion_input_OFF"], binned, rtol=1e-6)
    np.testing.assert_allclose(traces["luminance"], movie.reshape(60, -1).mean(axis=1), rtol=1e-6)
    assert traces["bin_s"] == pytest.approx(0.004) and not traces["spikes"]
