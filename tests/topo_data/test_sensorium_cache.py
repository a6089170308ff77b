"""The tier cache: equal to per-trial reading, memory-mapped, rebuilt on change, atomic."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from tests.topo_data.sensorium_files import DATA_KEY, make_session, read_only, tree_state
from topo_data.sensorium import SensoriumSession, open_tier_cache, static_loaders
from topo_data.sensorium.normalization import ImagePipeline, StaticNormalizer

OPTIONS = {"include_behavior": True, "include_eye_position": True, "scale": 0.5}


def _batches(path, cache, **kwargs):
    loaders = static_loaders([path], 6, seed=5, cache=cache, **{**OPTIONS, **kwargs})
    return {tier: list(v[DATA_KEY]) for tier, v in loaders.items()}


def test_cached_batches_equal_per_trial_file_batches(tmp_path):
    arrays = make_session(tmp_path, final_test=True)
    cached, files = _batches(arrays.path, True), _batches(arrays.path, False)
    assert list(cached) == ["train", "validation", "test", "final_test"]
    for tier in cached:
        assert len(cached[tier]) == len(files[tier]) > 0
        for a, b in zip(cached[tier], files[tier], strict=True):
            for x, y in zip(a, b, strict=True):
                torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6)
    subset = _batches(arrays.path, True, neuron_ids=[arrays.unit_ids[[4, 2]]], image_n=6)
    reference = _batches(arrays.path, False, neuron_ids=[arrays.unit_ids[[4, 2]]], image_n=6)
    for a, b in zip(subset["train"], reference["train"], strict=True):
        torch.testing.assert_close(a.responses, b.responses, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a.trial_id, b.trial_id)


def _open(session, tier="validation", scale=0.5, cache_dir=None):
    norm = StaticNormalizer.from_statistics(session.statistics)
    return open_tier_cache(session, tier, norm, ImagePipeline(scale=scale), cache_dir)


def test_cache_lives_in_the_session_folder_and_is_memory_mapped(tmp_path):
    session = SensoriumSession(make_session(tmp_path).path)
    tier_cache = _open(session)
    assert tier_cache.folder.parent == session.folder / ".topo_cache"
    assert isinstance(tier_cache.images, np.memmap) and tier_cache.images.dtype == np.float32
    assert not tier_cache.images.flags.writeable
    assert tier_cache.images.shape == (tier_cache.trial_ids.size, 1, 8, 16)
    # Reopening an unchanged session reuses the cache without rebuilding it.
    stamp = (tier_cache.folder / "info.json").stat().st_mtime_ns
    again = _open(SensoriumSession(session.folder))
    assert again.folder == tier_cache.folder
    assert (again.folder / "info.json").stat().st_mtime_ns == stamp


def test_options_change_builds_a_separate_cache(tmp_path):
    session = SensoriumSession(make_session(tmp_path).path)
    half, full = _open(session, scale=0.5), _open(session, scale=None)
    assert half.folder != full.folder
    assert full.images.shape[2:] == (16, 32) and half.images.shape[2:] == (8, 16)


def test_source_change_rebuilds_the_cache(tmp_path):
    arrays = make_session(tmp_path, zip=False)
    session = SensoriumSession(arrays.path)
    first = _open(session)
    trial = int(first.trial_ids[0])
    old = np.array(first.responses[0])
    file = arrays.path / "data" / "responses" / f"{trial}.npy"
    np.save(file, arrays.responses[trial] * 2)
    rebuilt = _open(SensoriumSession(arrays.path))
    assert rebuilt.folder == first.folder
    np.testing.assert_allclose(np.array(rebuilt.responses[0]), old * 2, rtol=1e-6)


def test_failed_build_leaves_no_cache(tmp_path, monkeypatch):
    session = SensoriumSession(make_session(tmp_path).path)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ImagePipeline, "stack", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _open(session)
    root = session.folder / ".topo_cache"
    assert list(root.iterdir()) == []
    monkeypatch.undo()
    assert _open(session).images.shape[0] == (session.tiers == "validation").sum()


@pytest.mark.parametrize("name", ["trial_ids.npy", "images.npy"])
def test_an_emptied_cache_file_is_rebuilt_not_raised(tmp_path, name):
    session = SensoriumSession(make_session(tmp_path).path)
    first = _open(session)
    expected = np.array(first.images)
    (first.folder / name).write_bytes(b"")
    del first
    rebuilt = _open(session)
    np.testing.assert_array_equal(np.array(rebuilt.images), expected)


def test_read_only_session_caches_under_topo_cache_dir(tmp_path, monkeypatch):
    arrays = make_session(tmp_path / "src", zip=False)
    monkeypatch.setenv("TOPO_CACHE_DIR", str(tmp_path / "cache_root"))
    before = tree_state(arrays.path)
    with read_only(arrays.path):
        tier_cache = _open(SensoriumSession(arrays.path))
        assert tree_state(arrays.path) == before
    assert tier_cache.folder.is_relative_to(tmp_path / "cache_root" / "sensorium_cache")
    explicit = _open(SensoriumSession(arrays.path), cache_dir=tmp_path / "mine")
    assert explicit.folder.parent == tmp_path / "mine" / arrays.path.name


def test_cache_pickles_without_copying_the_arrays(tmp_path):
    session = SensoriumSession(make_session(tmp_path).path)
    tier_cache = _open(session)
    blob = pickle.dumps(tier_cache)
    assert len(blob) < 1000
    restored = pickle.loads(blob)
    np.testing.assert_array_equal(np.asarray(restored.images), np.asarray(tier_cache.images))
