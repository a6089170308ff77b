"""The one place where physical units become pixels and time steps.

Every retina stage takes a ``Resolution`` and converts its physical parameters (degrees,
seconds, Hz) at call time, so nothing hard-codes 1 kHz or ``dt = 0.001`` (the convis original
does in Bipolar and GanglionSpiking).
"""

from __future__ import annotations

from dataclasses import dataclass

from topo_models.errors import TopoError


@dataclass(frozen=True)
class Resolution:
    """Spatial and temporal sampling of the input movie.

    Args:
        pixels_per_degree: pixels per degree of visual angle (px/deg).
        steps_per_second: frames per second of the movie (Hz); one frame is one time step.
        input_luminance_range: luminance of the brightest input value; the OPL gain is divided
            by it (VirtualRetina's ``ampOPL = opl-amplification / input-luminosity-range``).
        filter_epsilon: relative tail below which a Gaussian kernel is truncated.
    """

    pixels_per_degree: float = 10.0
    steps_per_second: float = 1000.0
    input_luminance_range: float = 1.0
    filter_epsilon: float = 0.001

    def __post_init__(self) -> None:
        for name in ("pixels_per_degree", "steps_per_second", "input_luminance_range"):
            value = getattr(self, name)
            if not value > 0:
                raise TopoError(
                    "resolution values must be positive", field=name, expected="> 0", found=value
                )
        if not 0 < self.filter_epsilon < 1:
            raise TopoError(
                "filter_epsilon is a relative tail",
                field="filter_epsilon",
                expected="0 < epsilon < 1",
                found=self.filter_epsilon,
            )

    @property
    def dt(self) -> float:
        """Length of one time step in seconds."""
        return 1.0 / self.steps_per_second

    def deg_to_px(self, degrees: float) -> float:
        """Visual angle (deg) to pixels."""
        return degrees * self.pixels_per_degree

    def sec_to_steps(self, seconds: float) -> float:
        """Duration (s) to time steps (not rounded)."""
        return seconds * self.steps_per_second
