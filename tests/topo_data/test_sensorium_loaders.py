"""static_loaders: tiers, keys, shapes, values, neuron and trial selection, several sessions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.transform import rescale

from tests.topo_data.sensorium_files import DATA_KEY, expected_precision, make_session
from topo_data import TopoDataError
from topo_data.sensorium import StaticBatch, static_loader, static_loaders


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return make_session(tmp_path_factory.mktemp("sensorium"), final_test=True)


def _all(loader) -> StaticBatch:
    batches = list(loader)
    return StaticBatch(
        *(None if parts[0] is None else torch.cat(parts) for parts in zip(*batches, strict=True))
    )


def test_tiers_keys_and_batch_fields(session):
    loaders = static_loaders([session.path], batch_size=8, seed=0, include_behavior=True)
    assert list(loaders) == ["train", "validation", "test", "final_test"]
    assert all(list(v) == [DATA_KEY] for v in loaders.values())
    batch = next(iter(loaders["train"][DATA_KEY]))
    assert isinstance(batch, StaticBatch)
    assert batch.images.shape == (8, 4, 16, 32) and batch.images.dtype == torch.float32
    assert batch.responses.shape == (8, 12) and batch.behavior.shape == (8, 3)
    assert batch.pupil_center is None and batch.trial_id.dtype == torch.int64
    for tier, per_key in loaders.items():
        dataset = per_key[DATA_KEY].dataset
        np.testing.assert_array_equal(dataset.trial_ids, np.flatnonzero(session.tiers == tier))
        assert dataset.n_trials_in_file == 40 and dataset.input_shape == (4, 16, 32)
    only = static_loaders([session.path], batch_size=4, tier="validation")
    assert list(only) == ["validation"]


def test_values_are_normalised_like_the_published_loader(session):
    loader = static_loader(session.path, 5, tier="test", include_behavior=True, scale=0.5)["test"]
    batch = _all(loader)
    ids = np.flatnonzero(session.tiers == "test")  # sequential order
    np.testing.assert_array_equal(batch.trial_id.numpy(), ids)
    precision = expected_precision(session.train("responses"))
    np.testing.assert_allclose(
        batch.responses.numpy(), session.responses[ids] * precision, rtol=1e-6
    )
    train_images = session.train("images")
    normed = (session.images[ids] - train_images.mean()) / train_images.std()
    behavior = session.behavior[ids] / session.train("behavior").std(0)
    np.testing.assert_allclose(batch.behavior.numpy(), behavior, rtol=1e-6)
    for row in range(ids.size):
        planes = np.ones((3, 16, 32)) * behavior[row][:, None, None]
        full = np.concatenate([normed[row], planes])
        expected = rescale(
            full, 0.5, order=1, mode="reflect", anti_aliasing=False, preserve_range=True,
            channel_axis=0,
        )  # fmt: skip
        np.testing.assert_allclose(batch.images[row].numpy(), expected, rtol=1e-5, atol=1e-5)
    inverse = loader.dataset.normalizer.inverse_responses(batch.responses)
    np.testing.assert_allclose(inverse.numpy(), session.responses[ids], rtol=1e-5)


def test_eye_position_is_z_scored_and_channel_selection_keeps_chosen_planes(session):
    loaders = static_loader(
        session.path, 40, tier="validation", include_eye_position=True,
        add_eye_pos_as_channels=True, select_input_channel=[0, 2],
    )  # fmt: skip
    batch = _all(loaders["validation"])
    ids = batch.trial_id.numpy()
    train = session.train("pupil_center")
    z = (session.pupil_center[ids] - train.mean(0)) / train.std(0)
    np.testing.assert_allclose(batch.pupil_center.numpy(), z, rtol=1e-6)
    assert batch.images.shape[1] == 2 and batch.behavior is None
    planes = np.broadcast_to(z[:, 1, None, None], (len(ids), 16, 32))
    np.testing.assert_allclose(batch.images[:, 1].numpy(), planes, rtol=1e-6)


def test_downscaling_144x256_to_36x64_with_behaviour_channels(tmp_path):
    big = make_session(tmp_path, n_trials=10, n_neurons=5, image_shape=(1, 144, 256))
    loaders = static_loaders([big.path], 4, include_behavior=True, scale=0.25, tier="train")
    dataset = loaders["train"][DATA_KEY].dataset
    assert dataset.input_shape == (4, 36, 64)
    batch = dataset[[0, 1]]
    assert batch.images.shape == (2, 4, 36, 64)
    train = big.train("images")
    image = (big.images[dataset.trial_ids[0]] - train.mean()) / train.std()
    # At scale 1/4 bilinear sampling without anti-aliasing averages the 2×2 centre of each 4×4.
    centre = image[0].reshape(36, 4, 64, 4)[:, 1:3, :, 1:3].mean(axis=(1, 3))
    np.testing.assert_allclose(batch.images[0, 0].numpy(), centre, rtol=1e-5, atol=1e-5)


def test_train_shuffle_is_seeded_and_covers_each_trial_once(session):
    def order(seed):
        loader = static_loader(session.path, 7, tier="train", seed=seed)["train"]
        return np.concatenate([b.trial_id.numpy() for b in loader])

    first, again, other = order(3), order(3), order(4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(np.sort(first), np.flatnonzero(session.tiers == "train"))


def test_neuron_selection_by_area_layer_ids_and_seeded_draw(session):
    def neurons(**kwargs):
        loader = static_loader(session.path, 4, tier="validation", **kwargs)["validation"]
        return loader.dataset

    v1 = neurons(areas=["V1"])
    np.testing.assert_array_equal(v1.neurons.unit_ids, session.unit_ids[session.area == "V1"])
    assert v1[[0]].responses.shape == (1, 6)
    both = neurons(areas=["V1"], layers=["L4"])
    mask = (session.area == "V1") & (session.layer == "L4")
    np.testing.assert_array_equal(both.neurons.unit_ids, session.unit_ids[mask])
    wanted = session.unit_ids[[5, 1, 9]]
    by_id = neurons(neuron_ids=wanted)
    np.testing.assert_array_equal(by_id.neurons.unit_ids, wanted)
    full = neurons()[[0, 1]].responses.numpy()
    np.testing.assert_allclose(by_id[[0, 1]].responses.numpy(), full[:, [5, 1, 9]])
    drawn = neurons(neuron_n=4, neuron_base_seed=3, exclude_neuron_n=2)
    expected = np.random.RandomState(12).choice(session.unit_ids, size=6, replace=False)[2:]
    np.testing.assert_array_equal(drawn.neurons.unit_ids, expected)
    with pytest.raises(TopoDataError, match="neuron_ids"):
        neurons(neuron_ids=wanted, neuron_n=2)
    with pytest.raises(TopoDataError, match="unit_ids"):
        neurons(neuron_ids=[999999])


def test_train_trial_selection_image_n_ids_and_condition(session):
    train_pool = np.flatnonzero(session.tiers == "train")
    loaders = static_loader(session.path, 4, image_n=5, image_base_seed=2)
    expected = np.random.RandomState(10).choice(train_pool, size=5, replace=False)
    np.testing.assert_array_equal(loaders["train"].dataset.trial_ids, expected)
    assert len(loaders["validation"].dataset) == (session.tiers == "validation").sum()
    ids = session.frame_image_id[train_pool[[3, 0]]]
    chosen = static_loader(session.path, 4, image_ids=ids, tier="train")["train"].dataset
    np.testing.assert_array_equal(chosen.trial_ids, train_pool[[3, 0]])
    np.testing.assert_array_equal(chosen.frame_image_id, ids)
    cond = static_loader(session.path, 4, image_condition="cond_a")
    for tier, loader in cond.items():
        mask = (session.tiers == tier) & (session.frame_image_class == "cond_a")
        np.testing.assert_array_equal(loader.dataset.trial_ids, np.flatnonzero(mask))
    either = static_loader(session.path, 4, image_condition=["cond_a", "imagenet"], tier="train")
    np.testing.assert_array_equal(either["train"].dataset.trial_ids, train_pool)
    test_ids = session.frame_image_id[session.tiers == "test"][:1]
    with pytest.raises(TopoDataError, match="non-train"):
        static_loader(session.path, 4, image_ids=test_ids)
    with pytest.raises(TopoDataError, match="image_n"):
        static_loader(session.path, 4, image_n=999)


def test_several_sessions_give_one_loader_per_data_key(tmp_path):
    a = make_session(tmp_path / "a")
    b = make_session(tmp_path / "b", animal=21067, session=10, scan=18, n_neurons=7, seed=1)
    loaders = static_loaders([a.path, b.path], 6, neuron_ids=[None, b.unit_ids[:3]])
    assert list(loaders["train"]) == [DATA_KEY, "21067-10-18"]
    assert loaders["test"][DATA_KEY].dataset.n_neurons == 12
    assert loaders["test"]["21067-10-18"].dataset.n_neurons == 3
    assert "final_test" not in loaders
    with pytest.raises(TopoDataError, match="data_key"):
        static_loaders([a.path, a.path], 6)


def test_cuda_request_without_a_device_fails_clearly(session):
    if torch.cuda.is_available():
        batch = next(iter(static_loader(session.path, 4, tier="test", cuda=True)["test"]))
        assert batch.images.is_cuda and batch.responses.is_cuda
    else:
        with pytest.raises(TopoDataError, match="cuda"):
            static_loader(session.path, 4, cuda=True)
