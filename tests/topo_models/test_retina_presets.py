"""Retina presets and parameter-tree browsing (``find``, ``parameter``, attribute paths)."""

from __future__ import annotations

import pytest

from topo_models.errors import TopoError
from topo_models.retina.parameters import ParameterInfo
from topo_models.retina.presets import PRESETS, preset_parameters
from topo_models.retina.resolution import Resolution
from topo_models.retina.retina import Retina

MAGNO_CHANGES = {
    "transient_tau": 0.03,
    "transient_weight": 1.0,
    "i_0": 80.0,
    "lambda_g": 400.0,
    "sigma_pool": 0.1,
}


def test_parvo_preset_is_the_default_retina():
    defaults = Retina().parameters_dict()
    assert set(PRESETS["human.parvo"]) == set(defaults)
    assert Retina.from_preset("human.parvo").parameters_dict() == defaults


def test_magno_preset_changes_only_the_magnocellular_values_on_both_channels():
    parvo, magno = PRESETS["human.parvo"], PRESETS["human.magno"]
    changed = {path for path in parvo if parvo[path] != magno[path]}
    expected = {f"{cell}.{name}" for cell in ("on", "off") for name in MAGNO_CHANGES}
    expected |= {"on_spikes.noise_sigma", "off_spikes.noise_sigma"}
    assert changed == expected
    retina = Retina.from_preset("human.magno")
    for cell in ("on", "off"):
        for name, value in MAGNO_CHANGES.items():
            assert retina.parameter(f"{cell}.{name}").value == pytest.approx(value, rel=1e-7)
        assert retina.parameter(f"{cell}_spikes.noise_sigma").value == 0.0


def test_parvo_has_gain_control_off_and_the_cgc_preset_differs_only_in_turning_it_on():
    parvo, cgc = PRESETS["human.parvo"], PRESETS["human.parvo.cgc"]
    assert parvo["bipolar.lambda_amp"] == 0.0  # VirtualRetina's default: no gain control
    assert {path for path in parvo if parvo[path] != cgc[path]} == {"bipolar.lambda_amp"}
    assert cgc["bipolar.lambda_amp"] == 100.0  # Hz, VirtualRetina's gain-control examples
    retina = Retina.from_preset("human.parvo.cgc")
    assert retina.parameter("bipolar.lambda_amp").value == 100.0


def test_preset_overrides_and_constructor_keywords():
    resolution = Resolution(steps_per_second=500.0)
    retina = Retina.from_preset("human.magno", on_i_0=90.0, spikes=False, resolution=resolution)
    assert retina.parameter("on.i_0").value == 90.0
    assert retina.parameter("off.i_0").value == 80.0
    assert retina.spikes is False and retina.resolution is resolution
    with pytest.raises(TopoError, match="unknown Retina parameter"):
        Retina.from_preset("human.parvo", on_i0=1.0)


def test_unknown_preset_lists_the_names_and_presets_are_read_only():
    with pytest.raises(TopoError) as err:
        Retina.from_preset("cat.x")
    assert err.value.expected == ["human.magno", "human.parvo", "human.parvo.cgc"]
    with pytest.raises(TypeError):
        PRESETS["human.parvo"]["on.i_0"] = 1.0  # type: ignore[index]
    copy = preset_parameters("human.parvo")
    copy["on.i_0"] = 1.0
    assert PRESETS["human.parvo"]["on.i_0"] == 37.0


def test_find_matches_path_or_doc_case_insensitively():
    retina = Retina()
    taus = [row.path for row in retina.find("TAU")]
    assert taus == [
        "opl.tau_center",
        "opl.undershoot_tau",
        "opl.tau_surround",
        "bipolar.tau_adaptation",
        "on.transient_tau",
        "off.transient_tau",
    ]
    refractory = {row.path for row in retina.find("Refractory")}  # only in the docs
    assert refractory == {
        "on_spikes.refr_mu",
        "on_spikes.refr_sigma",
        "off_spikes.refr_mu",
        "off_spikes.refr_sigma",
    }
    assert {row.path for row in retina.find("off_spikes.")} == {
        "off_spikes.refr_mu",
        "off_spikes.refr_sigma",
        "off_spikes.noise_sigma",
        "off_spikes.g_leak",
    }
    assert retina.find("no such thing") == []
    path, value, unit, doc = retina.find("surround Gaussian")[0]
    assert (path, unit) == ("opl.sigma_surround", "deg")
    assert value == pytest.approx(0.15)


def test_parameter_gives_value_unit_doc_and_follows_changes():
    retina = Retina()
    info = retina.parameter("bipolar.g_leak")
    assert info == ParameterInfo("bipolar.g_leak", 50.0, "Hz", "inert leak conductance g0")
    retina.load_parameters_dict({"bipolar.g_leak": 75.0})
    assert retina.parameter("bipolar.g_leak").value == 75.0
    assert retina.bipolar.g_leak.item() == 75.0  # the same value by attribute path
    with pytest.raises(TopoError, match="did you mean opl.sigma_center") as err:
        retina.parameter("opl.sigma_centre")
    assert "opl.sigma_center" in err.value.expected


def test_attribute_paths_reach_the_trainable_parameters():
    retina = Retina()
    for path, value in retina.parameters_dict().items():
        stage, name = path.split(".")
        param = getattr(getattr(retina, stage), name)
        assert param.item() == value
        assert dict(retina.named_parameters())[path] is param


def test_every_stage_keyword_default_is_its_declared_default():
    """Defaults are declared once (PARAMETERS); the constructors' keywords must not drift."""
    import inspect

    from topo_models.retina import OPL, Bipolar, GanglionInput, GanglionSpiking

    for stage in (OPL, Bipolar, GanglionInput, GanglionSpiking):
        signature = inspect.signature(stage.__init__).parameters
        for spec in stage.PARAMETERS:
            assert signature[spec.name].default == spec.default, (stage.__name__, spec.name)
