"""Every family plugs into the loop through the declared contracts, and the loop knows no family."""

from __future__ import annotations

import re

import pytest
import yaml
from hydra.utils import get_class

from tests.conftest import CONF, ROOT
from topo_train.contracts import DataModule, Objective

FAMILY_WORDS = (
    "simclr", "sensorium", "retina", "multitask", "multi-task", "swap", "classifier", "spatial",
    "tdann", "neuron", "projector", "supervised", "grating", "shifter", "mnist",
)  # fmt: skip
LOOP_FILES = ("train.py", "trainer.py")


def members(protocol: type) -> list[str]:
    """The names a class must provide to satisfy ``protocol``."""
    return [
        name
        for name in {**protocol.__dict__, **protocol.__annotations__}
        if not name.startswith("_") and name not in ("state_dict", "load_state_dict")
    ]


def targets(group: str) -> list[str]:
    return sorted({yaml.safe_load(p.read_text())["_target_"] for p in (CONF / group).glob("*")})


@pytest.mark.parametrize("target", targets("data"))
def test_every_data_module_implements_the_data_contract(target):
    cls = get_class(target)
    missing = [name for name in members(DataModule) if not hasattr(cls, name)]
    assert not missing, (target, missing)


@pytest.mark.parametrize("target", targets("loss"))
def test_every_objective_implements_the_objective_contract(target):
    cls = get_class(target)
    missing = [name for name in members(Objective) if not hasattr(cls, name)]
    assert not missing, (target, missing)
    for group, values in cls.requires.items():  # what it declares names real config keys
        keys = set().union(*(yaml.safe_load(p.read_text()) for p in (CONF / group).glob("*")))
        assert set(values) <= keys, (target, group, values)


@pytest.mark.parametrize("name", LOOP_FILES)
def test_the_loop_names_no_family(name):
    text = (ROOT / "topo_train" / "src" / "topo_train" / name).read_text().lower()
    found = sorted({w for w in FAMILY_WORDS if re.search(rf"\b{re.escape(w)}", text)})
    assert not found, f"{name} mentions {found}: family concepts belong in objectives/data/hooks"
    assert "hasattr(" not in text
