"""Named parameter sets of the retina, keyed by dotted path.

``human.parvo`` is VirtualRetina's ``human.parvo.xml`` (the model's defaults). Like
VirtualRetina's defaults it has contrast gain control off (``bipolar.lambda_amp = 0``): up to
the ganglion rectifier the retina is linear, and the peak current of ``task=retina_report`` is
exactly proportional to contrast (16.00 times larger for 16 times the contrast).
``human.parvo.cgc`` is ``human.parvo`` with gain control on, λ_A = 100 Hz, the feedback gain of
VirtualRetina's own gain-control examples (``EXAMPLE_cat_X_cell.xml``,
``EXAMPLE_primate_ParvoMagno.xml``): mildly compressive, as P cells' contrast responses are
(Kaplan & Shapley 1986, PNAS 83:2755). In the report's protocol the ON current's gain at
contrast 0.8 is 0.85 of its low-contrast gain (the bipolar potential's 0.72); λ_A = 1000 Hz
gives 0.61. ``human.magno`` is the magnocellular ON/OFF pair of the default configuration: more
transient (τ_tr 30 ms, w_tr 1), higher gain (i0 80 Hz, λ_G 400 Hz), pooled over σ 0.1°,
noiseless spiking. Presets hold physical parameters only; the resolution is chosen separately
(``Retina(resolution=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from topo_models.errors import TopoError
from topo_models.retina.virtualretina_schema import SPECS

# The model's declared defaults (each stage's PARAMETERS) are human.parvo: one source of truth.
_PARVO: dict[str, float] = {
    f"{stage}.{name}": spec.default
    for stage, specs in SPECS.items()
    for name, spec in specs.items()
}

_PARVO_CGC = {**_PARVO, "bipolar.lambda_amp": 100.0}

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
    {
        "human.parvo": MappingProxyType(_PARVO),
        "human.parvo.cgc": MappingProxyType(_PARVO_CGC),
        "human.magno": MappingProxyType(_MAGNO),
    }
)


def preset_parameters(name: str) -> dict[str, float]:
    """A fresh ``{"stage.name": value}`` copy of preset ``name``; TopoError lists the names."""
    if name not in PRESETS:
        raise TopoError("unknown retina preset", field="name", expected=sorted(PRESETS), found=name)
    return dict(PRESETS[name])
