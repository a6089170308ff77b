"""The one table between VirtualRetina's XML names and our dotted parameter paths.

Each mapping is ``xml-attribute → parameter name`` for one element; the stage (``opl``,
``bipolar``, ``on``/``off``, ``on_spikes``/``off_spikes``) is decided by where the element sits.
``UNUSED_*`` lists what VirtualRetina has and this model deliberately does not implement.
"""

from __future__ import annotations

from topo_models.retina.parameters import PhysicalParameter
from topo_models.retina.spiking import GanglionSpiking
from topo_models.retina.stages import OPL, Bipolar, GanglionInput

ROOT, RETINA = "retina-description-file", "retina"
RESOLUTION_ATTRIBUTES = ("temporal-step__sec", "pixels-per-degree", "input-luminosity-range")
LINEAR_VERSION = {
    "center-sigma__deg": "sigma_center",
    "center-tau__sec": "tau_center",
    "surround-sigma__deg": "sigma_surround",
    "surround-tau__sec": "tau_surround",
    "opl-amplification": "lambda_opl",
    "opl-relative-weight": "relative_weight",
}
UNDERSHOOT = {"relative-weight": "undershoot_weight", "tau__sec": "undershoot_tau"}
CONTRAST_GAIN_CONTROL = {
    "opl-amplification__Hz": "input_amp",
    "bipolar-inert-leaks__Hz": "g_leak",
    "adaptation-sigma__deg": "sigma_adaptation",
    "adaptation-tau__sec": "tau_adaptation",
    "adaptation-feedback-amplification__Hz": "lambda_amp",
}
GANGLION_LAYER = {
    "transient-tau__sec": "transient_tau",
    "transient-relative-weight": "transient_weight",
    "bipolar-linear-threshold": "v_0",
    "value-at-linear-threshold__Hz": "i_0",
    "bipolar-amplification__Hz": "lambda_g",
    "sigma-pool__deg": "sigma_pool",
}
SPIKING_CHANNEL = {
    "g-leak__Hz": "g_leak",
    "sigma-V": "noise_sigma",
    "refr-mean__sec": "refr_mu",
    "refr-stdev__sec": "refr_sigma",
}
# center-n__uint = 0 is the single exponential the model implements; only n > 0 is "unused".
UNUSED_ATTRIBUTES = {
    "linear-version": ("center-n__uint", "leaky-heat-equation"),
    "spiking-channel": ("random-init",),
}
UNUSED_ELEMENTS = {
    RETINA: ("basic-microsaccade-generator", "log-polar-scheme"),
    "spiking-channel": ("square-array", "circular-array"),
}
SPECS: dict[str, dict[str, PhysicalParameter]] = {
    stage: {spec.name: spec for spec in cls.PARAMETERS}
    for stage, cls in (
        ("opl", OPL),
        ("bipolar", Bipolar),
        ("on", GanglionInput),
        ("off", GanglionInput),
        ("on_spikes", GanglionSpiking),
        ("off_spikes", GanglionSpiking),
    )
}
