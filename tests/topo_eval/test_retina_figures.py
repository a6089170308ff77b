"""Retina figures draw the stage responses, spikes and maps they are given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topo_eval.retina.figures import (
    plot_on_off_maps,
    plot_spikes,
    plot_stage_responses,
    stage_responses,
)
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
