"""Topography analyses of a layer's responses on the cortical sheet (TDANN's V1 and VTC
analyses and generic ones): pure numpy/scipy functions of responses (images, units) and
coordinates (units, 2) in mm.

* ``tuning``: scaling to macaque rates, tuning curves, circular variance, preferred orientation.
* ``maps``: sliding-window and Gaussian maps on a grid.
* ``smoothness``: property difference against distance, and its smoothness score.
* ``pinwheels``: winding numbers, pinwheel counts and density.
* ``category``: Welch t / d' maps, patches, RSA, co-localisation.
* ``wiring``: inter-area wiring length.
* ``dimensionality``: PCA spectrum, effective dimensionality, power-law exponent.
* ``correlation``: response correlation against distance.
"""

from topo_eval.topography.category import (
    Patch,
    category_rsa,
    colocalisation,
    d_prime,
    find_patches,
    representational_similarity,
    selectivity_maps,
    selectivity_smoothness,
    selectivity_t,
)
from topo_eval.topography.correlation import correlation_vs_distance
from topo_eval.topography.dimensionality import (
    effective_dimensionality,
    pca_eigenvalues,
    power_law_exponent,
)
from topo_eval.topography.maps import SmoothedMap, gaussian_map, smoothed_map
from topo_eval.topography.pinwheels import (
    MACAQUE_PINWHEEL_DENSITY,
    Pinwheels,
    count_pinwheels,
    find_pinwheels,
    pinwheel_density,
    winding_numbers,
)
from topo_eval.topography.smoothness import (
    DistanceCurves,
    difference_over_distance,
    max_distance,
    smoothness,
    top_quartile_mask,
)
from topo_eval.topography.tuning import (
    MACAQUE_MEDIAN_PEAK,
    V1Tuning,
    circular_variance,
    preferred_orientation,
    scale_to_macaque,
    tuning_curves,
    v1_tuning,
)
from topo_eval.topography.wiring import active_mask, wiring_length

__all__ = [
    "MACAQUE_MEDIAN_PEAK",
    "MACAQUE_PINWHEEL_DENSITY",
    "DistanceCurves",
    "Patch",
    "Pinwheels",
    "SmoothedMap",
    "V1Tuning",
    "active_mask",
    "category_rsa",
    "circular_variance",
    "colocalisation",
    "correlation_vs_distance",
    "count_pinwheels",
    "d_prime",
    "difference_over_distance",
    "effective_dimensionality",
    "find_patches",
    "find_pinwheels",
    "gaussian_map",
    "max_distance",
    "pca_eigenvalues",
    "pinwheel_density",
    "power_law_exponent",
    "preferred_orientation",
    "representational_similarity",
    "scale_to_macaque",
    "selectivity_maps",
    "selectivity_smoothness",
    "selectivity_t",
    "smoothed_map",
    "smoothness",
    "tuning_curves",
    "top_quartile_mask",
    "v1_tuning",
    "winding_numbers",
    "wiring_length",
]

# The report pipeline: stimulus sets, responses cached per run, and the topography tasks
# (task=topography, task=topography_sweep); imported last, it builds on the analyses above.
from topo_eval.topography.stimulus_responses import (  # noqa: E402
    ModelInput,
    StimulusSet,
    category_stimulus_set,
    grating_set,
    model_input,
    responses_to_stimuli,
)
from topo_eval.topography.sweep import run_topography_sweep  # noqa: E402
from topo_eval.topography.task import run_topography, topography_report  # noqa: E402

__all__ += [
    "ModelInput",
    "StimulusSet",
    "category_stimulus_set",
    "grating_set",
    "model_input",
    "responses_to_stimuli",
    "run_topography",
    "run_topography_sweep",
    "topography_report",
]
