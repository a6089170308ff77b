"""topo_train: one Hydra-configured training loop for every topo family.

``python -m topo_train`` is the CLI; ``train(cfg)`` is the same run from Python.
"""

from topo_train.train import train

__all__ = ["train"]
