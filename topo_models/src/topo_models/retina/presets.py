"""Named parameter sets of the retina, keyed by dotted path (reference/retina.md §1.8).

``human.parvo`` is VirtualRetina's ``human.parvo.xml`` (the model's defaults). ``human.magno``
is the magnocellular ON/OFF pair of the same default configuration: more transient (τ_tr 30 ms,
w_tr 1), higher gain (i0 80 Hz, λ_G 400 Hz), pooled over σ 0.1°, noiseless spiking. Presets hold
physical parameters only; the resolution is chosen separately (``Retina(resolution=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from topo_models.errors import TopoError

_PARVO: dict[str, float] = {
    "opl.sigma_center": 0.05,
    "opl.tau_center": 0.01,
    "opl.undershoot_tau": 0.1,
    "opl.undershoot_weight": 0.8,
    "opl.sigma_surround": 0.15,
    "opl.tau_surround": 0.004,
    "opl.relative_weight": 1.0,
    "opl.lambda_opl": 10.0,
    "bipolar.lambda_amp": 0.0,
    "bipolar.g_leak": 50.0,
    "bipolar.input_amp": 50.0,
    "bipolar.tau_adaptation": 0.005,
    "bipolar.sigma_adaptation": 0.2,
}
for _cell in ("on", "off"):
    _PARVO.update(
        {
            f"{_cell}.transient_tau": 0.02,
            f"{_cell}.transient_weight": 0.7,
            f"{_cell}.i_0": 37.0,
            f"{_cell}.v_0": 0.0,
            f"{_cell}.lambda_g": 100.0,
            f"{_cell}.sigma_pool": 0.0,
            f"{_cell}_spikes.refr_mu": 0.003,
            f"{_cell}_spikes.refr_sigma": 0.0,
            f"{_cell}_spikes.noise_sigma": 0.1,
            f"{_cell}_spikes.g_leak": 50.0,
        }
    )

_MAGNO = dict(_PARVO)
for _cell in ("on", "off"):
    _MAGNO.update(
        {
            f"{_cell}.transient_tau": 0.03,
            f"{_cell}.transient_weight": 1.0,
            f"{_cell}.i_0": 80.0,
            f"{_cell}.lambda_g": 400.0,
            f"{_cell}.sigma_pool": 0.1,
            f"{_cell}_spikes.noise_sigma": 0.0,
        }
    )

PRESETS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {"human.parvo": MappingProxyType(_PARVO), "human.magno": MappingProxyType(_MAGNO)}
)


def preset_parameters(name: str) -> dict[str, float]:
    """A fresh ``{"stage.name": value}`` copy of preset ``name``; TopoError lists the names."""
    if name not in PRESETS:
        raise TopoError("unknown retina preset", field="name", expected=sorted(PRESETS), found=name)
    return dict(PRESETS[name])
