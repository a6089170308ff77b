"""Multi-task data for spatial multi-task networks (SpatialNetworks, Wołczyk et al. 2019).

Several image data sets (torchvision's MNIST family read from local files, or scikit-learn's
bundled digits) become ``labels``-way tasks by label modulo ``labels``, served in one of three
input modes: sequential, concatenate or mix. ``MultiTaskData`` is the training loop's data
module; batches are ``MultiTaskBatch(inputs, targets)`` with ``IGNORE_INDEX`` where a sample
has no label for a task.
"""

from topo_data.multitask.batches import ORDERS, MultiTaskBatch
from topo_data.multitask.data_module import INPUT_MODES, MultiTaskData
from topo_data.multitask.sources import EMNIST_SPLITS, SOURCE_NAMES, load_source
from topo_data.multitask.tasks import IGNORE_INDEX, TaskInfo

__all__ = [
    "EMNIST_SPLITS",
    "IGNORE_INDEX",
    "INPUT_MODES",
    "ORDERS",
    "SOURCE_NAMES",
    "MultiTaskBatch",
    "MultiTaskData",
    "TaskInfo",
    "load_source",
]
