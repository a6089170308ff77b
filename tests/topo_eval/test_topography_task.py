"""``task=topography``: responses to stimulus sets (cached), and the whole report of one run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.topo_eval.conftest import compose_eval
from topo_data.images import sine_gratings
from topo_eval.__main__ import run_task
from topo_eval.topography import stimulus_responses as sr
from topo_models import TopoError, create_model
from topo_models.positions import RetinotopicLayout

SIZE = 32
# small samples and few images: the pipeline, not the statistics, is under test
FAST = [
    "topography.progress=false",
    "topography.gratings.phases=2",
    "topography.category_set.image_size=32",
    "topography.category_set.images_per_category=4",
    "topography.v1.n_samples=2",
    "topography.v1.sample_size=200",
    "topography.category.n_samples=2",
    "topography.category.sample_size=100",
    "topography.correlation.n_samples=2",
    "topography.correlation.sample_size=200",
    "topography.wiring.patterns=2",
    "topography.wiring.windows=2",
]


def tiny_run(run_dir: Path, alpha: float = 0.25, nan: bool = False) -> Path:
    """A run directory as topo_train leaves it: model.pt (weights, model config, the run's
    config) and training-scale positions/ for a ResNet-18 at 32 px (untrained)."""
    torch.manual_seed(0)
    model = create_model("resnet18_spatial").eval()
    state = model.state_dict()
    if nan:
        state["conv1.weight"] = torch.full_like(state["conv1.weight"], float("nan"))
    run_dir.mkdir(parents=True)
    config = {"_target_": "topo_models.ResNet18Spatial", "head": "none", "num_classes": None}
    torch.save(
        {
            "model": state,
            "model_config": {**config, "projection_dim": 128},
            "config_yaml": f"data:\n  image_size: {SIZE}\nloss:\n  alpha: {alpha}\n",
        },
        run_dir / "model.pt",
    )
    layout = RetinotopicLayout(scale="training", jitter_mm=0.3, n_neighborhoods=20, seed=0)
    layout.build(model, SIZE).save(run_dir / "positions")
    return run_dir / "model.pt"


def topography(checkpoint: Path, output: Path, *overrides: str):
    cfg = compose_eval(
        "task=topography", f"checkpoint={checkpoint}", f"output_dir={output}", *FAST, *overrides
    )
    return run_task(cfg, output)


class TwoLayers(nn.Module):
    """A trunk of two conv layers that counts its forward passes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 3, stride=2, padding=1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        a = torch.relu(self.a(x))
        b = self.b(a)
        return b.mean(), {"a": a, "b": b}


def test_responses_are_the_flattened_features_of_every_image():
    model = TwoLayers()
    stimuli = sr.grating_set(sr.ModelInput(3, 16, True), phases=1, orientations=2)
    found = sr.responses_to_stimuli(model, stimuli, ["b"], batch_size=5, progress=False)
    images = torch.cat([images for _, images in stimuli.batches(100)])
    expected = torch.flatten(model(images)[1]["b"], 1).detach().numpy()
    assert found["b"].dtype == np.float32 and found["b"].shape == (len(stimuli), 2 * 8 * 8)
    np.testing.assert_allclose(found["b"], expected, rtol=1e-5, atol=1e-6)
    assert set(found) == {"b"}  # only what was asked


def test_a_second_call_reads_the_cache_without_running_the_model(tmp_path):
    model = TwoLayers()
    stimuli = sr.grating_set(sr.ModelInput(3, 16, True), phases=1, orientations=2)
    cache = sr.cache_folder(tmp_path, stimuli, sr.ModelInput(3, 16, True), "sha")
    first = sr.responses_to_stimuli(model, stimuli, ["a", "b"], cache=cache, batch_size=8,
                                  progress=False)["a"]  # fmt: skip
    calls = model.calls
    again = sr.responses_to_stimuli(model, stimuli, ["a", "b"], cache=cache, progress=False)
    assert model.calls == calls
    np.testing.assert_array_equal(again["a"], first)
    assert sorted(p.name for p in cache.glob("*.npy")) == ["a.npy", "b.npy"]
    assert not list(cache.glob(".*"))  # no temp file left


def test_the_cache_key_changes_with_the_stimuli_the_input_and_the_checkpoint(tmp_path):
    given, bigger = sr.ModelInput(3, 16, True), sr.ModelInput(3, 24, True)

    def key(model_input=given, phases=1, fingerprint="sha"):
        stimuli = sr.grating_set(model_input, phases=phases, orientations=2)
        return sr.cache_folder(tmp_path, stimuli, model_input, fingerprint)

    assert key() == key()
    assert len({key(), key(phases=2), key(bigger), key(fingerprint="other")}) == 4
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"one")
    before = sr.checkpoint_fingerprint(checkpoint)
    checkpoint.write_bytes(b"two")
    assert sr.checkpoint_fingerprint(checkpoint) != before


def test_nan_responses_are_refused_naming_the_layer_and_nothing_is_cached(tmp_path):
    model = TwoLayers()
    with torch.no_grad():
        model.b.bias.fill_(float("nan"))
    stimuli = sr.grating_set(sr.ModelInput(3, 16, True), phases=1, orientations=2)
    with pytest.raises(TopoError, match="NaN") as error:
        sr.responses_to_stimuli(model, stimuli, ["a", "b"], cache=tmp_path / "c", progress=False)
    assert error.value.field == "b"
    assert not list((tmp_path / "c").glob("*.npy*")) and not list((tmp_path / "c").glob(".*"))


def test_gratings_keep_tdanns_cycles_per_pixel_below_224_px_and_its_metadata_order():
    assert sr.grating_frequencies(224) == pytest.approx(np.linspace(5.5, 110, 9)[:-1])
    small = np.asarray(sr.grating_frequencies(64))
    assert small == pytest.approx(np.linspace(5.5, 110, 9)[:-1] * 64 / 224)
    assert small.max() < 32  # under Nyquist
    frequencies = sr.grating_frequencies(16)
    _, expected = sine_gratings(16, frequencies_cycles_per_image=frequencies)
    found = sr.grating_metadata(8, frequencies, 5, ("bw", "rc"))
    pd.testing.assert_frame_equal(found, expected)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("runs") / "run")


def test_one_run_reports_every_analysis_in_a_table_figures_and_a_page(run, tmp_path, monkeypatch):
    monkeypatch.setenv("TOPO_CACHE_DIR", str(tmp_path / "cache"))
    table_path, metrics = topography(run, tmp_path / "out")
    table = pd.read_csv(table_path)
    assert list(table.columns) == [
        "layer", "analysis", "metric", "value", "chance", "reference", "distances"
    ]  # fmt: skip
    rows = set(zip(table.layer, table.metric, strict=True))
    assert {
        ("layer2.0", "fraction_selective"),
        ("layer2.0", "orientation_smoothness"),
        ("layer4.1", "faces_patches"),
        ("layer4.1", "colocalisation_faces_places"),
        ("layer2.1", "wiring_length_from_layer2.0"),
        ("layer4.1", "wiring_length_from_layer4.0"),
    } <= rows
    for layer in [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]:
        assert {(layer, "effective_dimensionality"), (layer, "correlation_near")} <= rows
    smooth = table[table.metric == "orientation_smoothness"].iloc[0]
    assert np.isfinite(smooth.chance) and smooth.distances == "human mm"  # converted
    assert table[table.metric == "pinwheel_density"].reference.tolist() == [pytest.approx(np.pi)]
    figures = sorted(p.name for p in (tmp_path / "out" / "figures").glob("*.png"))
    assert "layer2.0_orientation_map.png" in figures and "layer4.1_selectivity.png" in figures
    page = (tmp_path / "out" / "index.html").read_text()
    assert all(f'src="figures/{name}"' in page for name in figures)
    assert metrics["layer2.0/fraction_selective"] == pytest.approx(
        table.set_index(["layer", "metric"]).value["layer2.0", "fraction_selective"]
    )
    cached = sorted(p.name for p in (run.parent / "topography_cache").iterdir())
    assert [name.split("-")[0] for name in cached] == ["categories", "gratings"]

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran although every response was cached")

    monkeypatch.setattr(sr, "_compute", no_model)
    again, _ = topography(run, tmp_path / "again")
    pd.testing.assert_frame_equal(pd.read_csv(again), table)


def _left_behind(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_checkpoint_without_positions_names_the_folder_and_writes_nothing(tmp_path):
    checkpoint = tiny_run(tmp_path / "run")
    (tmp_path / "run" / "positions").rename(tmp_path / "elsewhere")
    with pytest.raises(TopoError, match="no positions") as error:
        topography(checkpoint, tmp_path / "out")
    assert error.value.file == str(tmp_path / "run" / "positions")
    assert error.value.field == "positions"
    assert _left_behind(tmp_path / "out") == [] and not list(tmp_path.glob(".out*"))


def test_a_layer_the_model_lacks_is_named_and_nothing_is_written(run, tmp_path):
    with pytest.raises(TopoError, match="no such layer") as error:
        topography(run, tmp_path / "out", "topography.layers.v1=[layer9.9]")
    assert error.value.found == "layer9.9" and error.value.field == "topography.layers.v1"
    assert _left_behind(tmp_path / "out") == []


def test_nan_responses_stop_the_report_with_nothing_written(tmp_path):
    checkpoint = tiny_run(tmp_path / "run", nan=True)
    with pytest.raises(TopoError, match="NaN"):
        topography(checkpoint, tmp_path / "out", "topography.layers.category=[]")
    assert _left_behind(tmp_path / "out") == []
    assert not list((tmp_path / "run" / "topography_cache").rglob("*.npy*"))


def test_a_category_folder_of_one_category_is_refused(run, tmp_path):
    (tmp_path / "stimuli" / "faces").mkdir(parents=True)
    (tmp_path / "stimuli" / "faces" / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="at least two categories"):
        topography(run, tmp_path / "out", f"topography.categories={tmp_path / 'stimuli'}")
    assert _left_behind(tmp_path / "out") == []
