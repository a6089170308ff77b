"""The dependency direction of the packages, and topo_models usable without hydra/mlflow/dvc."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("topo_models", "topo_data", "topo_train", "topo_eval")
ALLOWED = {
    "topo_models": set(),
    "topo_data": set(),
    "topo_train": {"topo_models", "topo_data"},
    "topo_eval": {"topo_models", "topo_data"},
}


def imported_top_levels(package: str) -> dict[str, set[str]]:
    """Top-level module names imported anywhere in the package, with the files importing them."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package / "src" / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_what_the_design_allows(package):
    imported = imported_top_levels(package)
    topo_imports = {name for name in imported if name.startswith("topo_") and name != package}
    assert topo_imports <= ALLOWED[package], {n: imported[n] for n in topo_imports}


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_is_its_own_src_layout_distribution(package):
    project = tomllib.loads((ROOT / package / "pyproject.toml").read_text())["project"]
    assert project["name"] == package.replace("_", "-")
    assert (ROOT / package / "src" / package / "__init__.py").is_file()
    declared = {
        dep.split(">")[0].split("=")[0].split("<")[0].strip()
        for dep in project.get("dependencies", [])
    }
    expected_topo = {name.replace("_", "-") for name in ALLOWED[package]}
    assert {d for d in declared if d.startswith("topo-")} == expected_topo


def test_topo_models_declares_no_training_or_tracking_dependencies():
    project = tomllib.loads((ROOT / "topo_models" / "pyproject.toml").read_text())["project"]
    names = " ".join(project["dependencies"])
    for heavy in ("hydra", "mlflow", "dvc", "submitit", "omegaconf"):
        assert heavy not in names


def test_topo_models_imports_with_hydra_mlflow_and_dvc_unavailable():
    code = (
        "import sys\n"
        "for name in ('hydra', 'omegaconf', 'mlflow', 'dvc', 'submitit', 'pandas', 'matplotlib'):\n"
        "    sys.modules[name] = None\n"
        "import pkgutil, importlib, topo_models, torch\n"
        "for m in pkgutil.walk_packages(topo_models.__path__, 'topo_models.'):\n"
        "    importlib.import_module(m.name)\n"
        "model = topo_models.create_model('resnet18_spatial')\n"
        "from topo_models.positions import UniformLayout\n"
        "positions = UniformLayout(n_neighborhoods=50).build(model, 32)\n"
        "print(len(positions))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "8"


def test_the_entry_points_leave_torchvision_to_the_code_that_uses_it():
    """Importing torchvision costs ~2 s (it loads torch._dynamo): the entry points and the
    packages import it only where an image transform, a torchvision data set or a torchvision
    network is built, so that the other families' processes start without it."""
    code = (
        "import sys\n"
        "import topo_models, topo_data, topo_train.train, topo_train.__main__, topo_eval.__main__\n"
        "from topo_data.multitask.sources import EMNIST_SPLITS\n"
        "print('torchvision' in sys.modules)\n"
        "from torchvision.datasets import EMNIST\n"
        "print(EMNIST_SPLITS == tuple(EMNIST.splits))\n"  # the copied names are torchvision's
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
