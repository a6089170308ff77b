"""VirtualRetina XML: the human.parvo layout, every attribute's mapping, errors, round trips."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from topo_models.errors import TopoError
from topo_models.retina.presets import PRESETS
from topo_models.retina.resolution import Resolution
from topo_models.retina.retina import Retina
from topo_models.retina.virtualretina_schema import (
    CONTRAST_GAIN_CONTROL,
    GANGLION_LAYER,
    LINEAR_VERSION,
    SPIKING_CHANNEL,
    UNDERSHOOT,
)
from topo_models.retina.virtualretina_xml import (
    VirtualRetinaConfig,
    read_virtualretina_xml,
    write_virtualretina_xml,
)

# VirtualRetina's human.parvo.xml (the model's defaults).
HUMAN_PARVO = """<?xml version="1.0" encoding="UTF-8"?>
<retina-description-file>
  <retina temporal-step__sec="0.01" input-luminosity-range="255" pixels-per-degree="5.0">
    <!-- Parvocellular pathway -->
    <outer-plexiform-layer>
      <linear-version center-sigma__deg="0.05" surround-sigma__deg="0.15"
          center-tau__sec="0.01" center-n__uint="0" surround-tau__sec="0.004"
          opl-amplification="10" opl-relative-weight="1" leaky-heat-equation="1">
        <undershoot relative-weight="0.8" tau__sec="0.1"/>
      </linear-version>
    </outer-plexiform-layer>
    <contrast-gain-control opl-amplification__Hz="50" bipolar-inert-leaks__Hz="50"
        adaptation-sigma__deg="0.2" adaptation-tau__sec="0.005"
        adaptation-feedback-amplification__Hz="0"/>
    <ganglion-layer sign="1" transient-tau__sec="0.02" transient-relative-weight="0.7"
        bipolar-linear-threshold="0" value-at-linear-threshold__Hz="37"
        bipolar-amplification__Hz="100" sigma-pool__deg="0.0">
      <spiking-channel g-leak__Hz="50" sigma-V="0.1" refr-mean__sec="0.003"
          refr-stdev__sec="0" random-init="1">
        <square-array size-x__deg="4" size-y__deg="4" uniform-density__inv-deg="20"/>
      </spiking-channel>
    </ganglion-layer>
    <ganglion-layer sign="-1" transient-tau__sec="0.02" transient-relative-weight="0.7"
        bipolar-linear-threshold="0" value-at-linear-threshold__Hz="37"
        bipolar-amplification__Hz="100" sigma-pool__deg="0.0">
      <spiking-channel g-leak__Hz="50" sigma-V="0.1" refr-mean__sec="0.003"
          refr-stdev__sec="0" random-init="1">
        <square-array size-x__deg="4" size-y__deg="4" uniform-density__inv-deg="20"/>
      </spiking-channel>
    </ganglion-layer>
  </retina>
</retina-description-file>
"""


def _write(tmp_path: Path, text: str, name: str = "retina.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_human_parvo_file_gives_the_parvo_preset_and_its_resolution(tmp_path):
    path = _write(tmp_path, HUMAN_PARVO)
    with pytest.warns(UserWarning) as caught:
        config = read_virtualretina_xml(path)
    assert config.parameters == dict(PRESETS["human.parvo"])
    assert config.resolution == Resolution(
        pixels_per_degree=5.0, steps_per_second=100.0, input_luminance_range=255.0
    )
    message = str(caught[0].message)
    for unused in ("leaky-heat-equation", "random-init", "square-array"):
        assert unused in message
    assert "center-n__uint" not in message  # order 0 is what the model implements
    assert str(path) in message


def test_retina_from_the_file_uses_its_resolution_and_luminance_range(tmp_path):
    path = _write(tmp_path, HUMAN_PARVO)
    with pytest.warns(UserWarning):
        retina = Retina.from_virtualretina_xml(path, spikes=False, on_i_0=50.0)
    assert retina.resolution.dt == pytest.approx(0.01)
    assert retina.resolution.input_luminance_range == 255.0
    assert retina.parameter("on.i_0").value == 50.0  # keyword overrides the file
    assert retina.parameter("off.i_0").value == 37.0
    assert retina.spikes is False
    with pytest.raises(TopoError, match="resolution comes from the VirtualRetina file"):
        Retina.from_virtualretina_xml(path, resolution=Resolution())


def _all_attributes_file(tmp_path: Path) -> tuple[Path, dict[str, float]]:
    """A file with a distinct value for every mapped attribute; OFF listed before ON."""
    expected: dict[str, float] = {}
    counter = iter(range(1, 1000))

    def attrs(stage: str, mapping: dict[str, str]) -> str:
        parts = []
        for xml_name, name in mapping.items():
            value = next(counter) / 64.0
            expected[f"{stage}.{name}"] = value
            parts.append(f'{xml_name}="{value!r}"')
        return " ".join(parts)

    opl, under = attrs("opl", LINEAR_VERSION), attrs("opl", UNDERSHOOT)
    cgc = attrs("bipolar", CONTRAST_GAIN_CONTROL)
    off, off_spk = attrs("off", GANGLION_LAYER), attrs("off_spikes", SPIKING_CHANNEL)
    on, on_spk = attrs("on", GANGLION_LAYER), attrs("on_spikes", SPIKING_CHANNEL)
    text = f"""<retina-description-file><retina temporal-step__sec="0.002">
      <outer-plexiform-layer><linear-version {opl}><undershoot {under}/></linear-version>
      </outer-plexiform-layer>
      <contrast-gain-control {cgc}/>
      <ganglion-layer sign="-1" {off}><spiking-channel {off_spk}/></ganglion-layer>
      <ganglion-layer sign="1" {on}><spiking-channel {on_spk}/></ganglion-layer>
    </retina></retina-description-file>"""
    return _write(tmp_path, text), expected


def test_every_attribute_lands_on_its_parameter_path_and_sign_picks_on_or_off(tmp_path):
    path, expected = _all_attributes_file(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing unused in this file: no warning
        config = read_virtualretina_xml(path)
    assert config.parameters == expected
    assert set(expected) == set(Retina().parameters_dict())
    assert config.resolution == Resolution(steps_per_second=500.0)
    assert config.ignored == ()
    retina = Retina.from_virtualretina_xml(path)
    assert retina.opl.sigma_center.item() == expected["opl.sigma_center"]
    assert retina.off_spikes.noise_sigma.item() == expected["off_spikes.noise_sigma"]


def test_layers_without_sign_are_on_then_off(tmp_path):
    text = """<retina-description-file><retina>
      <ganglion-layer value-at-linear-threshold__Hz="11"/>
      <ganglion-layer value-at-linear-threshold__Hz="22"/>
    </retina></retina-description-file>"""
    config = read_virtualretina_xml(_write(tmp_path, text))
    assert config.parameters == {"on.i_0": 11.0, "off.i_0": 22.0}
    assert config.resolution == Resolution()


@pytest.mark.parametrize(
    ("text", "where", "name"),
    [
        (
            '<retina-description-file><retina><contrast-gain-control typo__Hz="1"/>'
            "</retina></retina-description-file>",
            "retina-description-file/retina/contrast-gain-control@typo__Hz",
            "bipolar-inert-leaks__Hz",
        ),
        (
            '<retina-description-file><retina><ganglion-layer/><ganglion-layer sign="-1">'
            '<spiking-channel sigma-v="0.1"/></ganglion-layer></retina></retina-description-file>',
            "retina-description-file/retina/ganglion-layer[2]/spiking-channel@sigma-v",
            "sigma-V",
        ),
        (
            "<retina-description-file><retina><outer-plexiform-layer><nonlinear-version/>"
            "</outer-plexiform-layer></retina></retina-description-file>",
            "retina-description-file/retina/outer-plexiform-layer/nonlinear-version",
            "linear-version",
        ),
        (
            '<retina-description-file><retina frame-rate="5"/></retina-description-file>',
            "retina-description-file/retina@frame-rate",
            "temporal-step__sec",
        ),
    ],
)
def test_unknown_attribute_or_element_names_file_path_and_known_names(tmp_path, text, where, name):
    path = _write(tmp_path, text)
    with pytest.raises(TopoError) as err:
        read_virtualretina_xml(path)
    assert err.value.file == str(path)
    assert err.value.field == where
    assert name in err.value.expected


def test_dtd_and_entities_are_refused_before_expansion(tmp_path):
    laughs = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>
<retina-description-file><retina pixels-per-degree="&lol2;"/></retina-description-file>"""
    with pytest.raises(TopoError, match="DOCTYPE and entity declarations are refused"):
        read_virtualretina_xml(_write(tmp_path, laughs))
    with pytest.raises(TopoError, match="not well-formed"):
        read_virtualretina_xml(_write(tmp_path, "<retina-description-file><retina>"))


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("center-tau__sec", "fast", "not a finite number"),
        ("center-tau__sec", "-0.01", "invalid value for opl.tau_center"),
        ("center-sigma__deg", "nan", "not a finite number"),
    ],
)
def test_bad_values_name_the_attribute(tmp_path, attribute, value, message):
    text = (
        f'<retina-description-file><retina><outer-plexiform-layer><linear-version {attribute}="'
        f'{value}"/></outer-plexiform-layer></retina></retina-description-file>'
    )
    with pytest.raises(TopoError, match=message) as err:
        read_virtualretina_xml(_write(tmp_path, text))
    assert err.value.field.endswith(f"linear-version@{attribute}")


def test_structure_errors(tmp_path):
    two_on = (
        '<retina-description-file><retina><ganglion-layer sign="1"/><ganglion-layer sign="1"/>'
        "</retina></retina-description-file>"
    )
    with pytest.raises(TopoError, match="same sign"):
        read_virtualretina_xml(_write(tmp_path, two_on))
    three = "<retina-description-file><retina>" + "<ganglion-layer/>" * 3 + "</retina>"
    with pytest.raises(TopoError, match="too many <ganglion-layer>"):
        read_virtualretina_xml(_write(tmp_path, three + "</retina-description-file>"))
    with pytest.raises(TopoError, match="sign is ON or OFF"):
        read_virtualretina_xml(
            _write(
                tmp_path,
                '<retina-description-file><retina><ganglion-layer sign="2"/>'
                "</retina></retina-description-file>",
            )
        )
    with pytest.raises(TopoError, match="not a VirtualRetina retina description"):
        read_virtualretina_xml(_write(tmp_path, "<retina/>"))
    with pytest.raises(TopoError, match="cannot read"):
        read_virtualretina_xml(tmp_path / "missing.xml")


def test_unused_elements_are_warned_not_parsed(tmp_path):
    text = """<retina-description-file><retina>
      <basic-microsaccade-generator anything="1"><whatever/></basic-microsaccade-generator>
      <log-polar-scheme fovea-radius__deg="1"/>
      <outer-plexiform-layer><linear-version center-n__uint="2"/></outer-plexiform-layer>
    </retina></retina-description-file>"""
    with pytest.warns(UserWarning, match="basic-microsaccade-generator") as caught:
        config = read_virtualretina_xml(_write(tmp_path, text))
    assert "log-polar-scheme" in str(caught[0].message)
    assert config.ignored[-1].endswith("linear-version@center-n__uint")  # order 2: not modelled
    assert config.parameters == {}


def test_default_retina_round_trips_through_the_file(tmp_path):
    retina = Retina()
    path = tmp_path / "defaults.xml"
    write_virtualretina_xml(retina, path)
    text = path.read_text(encoding="utf-8")
    assert 'center-sigma__deg="0.05"' in text  # float32 values written with their short digits
    config = read_virtualretina_xml(path)
    assert config.parameters == pytest.approx(retina.parameters_dict(), rel=1e-7)
    back = Retina.from_virtualretina_xml(path)
    assert back.parameters_dict() == retina.parameters_dict()
    assert back.resolution == retina.resolution


def test_changed_retina_and_config_round_trip_exactly(tmp_path):
    resolution = Resolution(pixels_per_degree=7.5, steps_per_second=30.0, input_luminance_range=255)
    retina = Retina.from_preset(
        "human.magno", resolution=resolution, opl_lambda_opl=-3.25, bipolar_lambda_amp=123.0
    )
    write_virtualretina_xml(retina, tmp_path / "magno.xml")
    back = Retina.from_virtualretina_xml(tmp_path / "magno.xml")
    assert back.parameters_dict() == retina.parameters_dict()
    assert back.resolution == resolution
    assert back.parameter("on.lambda_g").value == 400.0

    config = VirtualRetinaConfig(
        {"opl.tau_center": 0.0123456789, "on.v_0": -0.1, "off_spikes.refr_mu": 0.002},
        Resolution(pixels_per_degree=3.3, steps_per_second=123.4),
    )
    write_virtualretina_xml(config, tmp_path / "partial.xml")
    again = read_virtualretina_xml(tmp_path / "partial.xml")
    assert again.parameters == config.parameters
    assert again.resolution == config.resolution


def test_writing_replaces_the_file_atomically_and_checks_its_input(tmp_path):
    path = tmp_path / "out.xml"
    path.write_text("old", encoding="utf-8")
    write_virtualretina_xml(Retina(), path)
    assert path.read_text(encoding="utf-8").startswith("<?xml")
    assert [p.name for p in tmp_path.iterdir()] == ["out.xml"]  # no temp file left behind
    with pytest.raises(TopoError, match="unknown physical parameter path"):
        write_virtualretina_xml(VirtualRetinaConfig({"opl.sigma": 1.0}), path)
    with pytest.raises(TopoError, match="nothing to write"):
        write_virtualretina_xml({"opl.sigma_center": 1.0}, path)
