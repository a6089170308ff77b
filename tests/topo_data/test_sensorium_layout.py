"""Sensorium layout: the writer's exact tree, the data_key rule, zip unpacking, validation."""

from __future__ import annotations

import shutil
import struct
import zipfile

import numpy as np
import pytest

from tests.topo_data.sensorium_files import DATA_KEY, make_session, read_only, tree_state
from topo_data import TopoDataError
from topo_data.sensorium import SensoriumSession, data_key_from_path, write_static_session

ZIP_NAME = "static27204-5-13-GrayImageNet-94c6ff995dac583098847cfecd43e7b6.zip"


def test_writer_names_zip_from_neurons_with_folder_as_single_top_entry(tmp_path):
    arrays = make_session(tmp_path / "src")
    assert arrays.path.name == ZIP_NAME
    with zipfile.ZipFile(arrays.path) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {ZIP_NAME[:-4]}
    top = ZIP_NAME[:-4]
    for field in ("images", "responses", "behavior", "pupil_center"):
        for i in (0, 39):
            assert f"{top}/data/{field}/{i}.npy" in names
        for stat in ("mean", "std", "min", "max", "median"):
            assert f"{top}/meta/statistics/{field}/all/{stat}.npy" in names
    for key in ("tiers", "frame_image_id", "frame_image_class", "trial_idx"):
        assert f"{top}/meta/trials/{key}.npy" in names
    for key in ("unit_ids", "cell_motor_coordinates", "area", "layer", "animal_ids"):
        assert f"{top}/meta/neurons/{key}.npy" in names
    # Only the zip is left: the staging folder is gone.
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == [ZIP_NAME]


def test_per_trial_files_and_statistics_match_the_arrays(tmp_path):
    arrays = make_session(tmp_path, zip=False)
    folder = arrays.path
    np.testing.assert_array_equal(np.load(folder / "data/images/7.npy"), arrays.images[7])
    np.testing.assert_array_equal(np.load(folder / "data/responses/3.npy"), arrays.responses[3])
    np.testing.assert_array_equal(np.load(folder / "meta/trials/trial_idx.npy"), np.arange(40))
    stats = folder / "meta/statistics"
    train = arrays.tiers == "train"
    resp = arrays.responses[train].astype(np.float64)
    np.testing.assert_allclose(np.load(stats / "responses/all/std.npy"), resp.std(0), rtol=1e-12)
    np.testing.assert_allclose(
        np.load(stats / "responses/all/median.npy"), np.median(resp, 0), rtol=1e-12
    )
    image_mean = np.load(stats / "images/all/mean.npy")
    assert image_mean.shape == ()
    np.testing.assert_allclose(image_mean, arrays.images[train].astype(np.float64).mean())
    np.testing.assert_allclose(
        np.load(stats / "behavior/all/std.npy"), arrays.behavior[train].std(0), rtol=1e-12
    )
    np.testing.assert_allclose(
        np.load(stats / "pupil_center/all/max.npy"), arrays.pupil_center[train].max(0)
    )


def test_session_reads_meta_and_trials(tmp_path):
    arrays = make_session(tmp_path)
    session = SensoriumSession(arrays.path)
    assert session.data_key == DATA_KEY
    assert (session.n_trials, session.n_neurons, session.image_shape) == (40, 12, (1, 16, 32))
    np.testing.assert_array_equal(session.tiers, arrays.tiers)
    np.testing.assert_array_equal(session.neurons.unit_ids, arrays.unit_ids)
    np.testing.assert_array_equal(session.read_trial("behavior", 5), arrays.behavior[5])
    ids = session.tier_trials("validation")
    np.testing.assert_array_equal(ids, np.flatnonzero(arrays.tiers == "validation"))
    np.testing.assert_array_equal(session.read_stack("responses", ids), arrays.responses[ids])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/d/static22846-10-16-preproc0.zip", "22846-10-16-0"),
        ("/d/static22846-10-16_nobehavior-preproc.zip", "22846-10-16-"),
        ("/data/static/x/static23343-5-17-ColorImageNet-abc.zip", "23343-5-17"),
        ("/data/static/static27204-5-13-GrayImageNet-94c6ff.zip", "27204-5-13"),
    ],
)
def test_data_key_rules_one_to_three(path, expected):
    # Rule 1 strips "preproc" and "_nobehavior" from the text after the last "static", cut at
    # the first "."; rules 2/3 cut at "-ColorImageNet"/"-GrayImageNet".
    after = path.split("static")[-1]
    if "preproc" in path:
        assert expected == after.split(".")[0].replace("preproc", "").replace("_nobehavior", "")
    assert data_key_from_path(path) == expected


def test_data_key_rule_four_reads_neuron_meta(tmp_path):
    arrays = make_session(tmp_path, zip=False, animal=21067, session=10, scan=18)
    plain = arrays.path.rename(tmp_path / "mouse_a")
    assert data_key_from_path(plain) == "21067-10-18"
    assert data_key_from_path("/x/mouse", [1, 1], [2, 2], [3, 3]) == "1-2-3"
    assert SensoriumSession(plain).data_key == "21067-10-18"


def test_zip_is_unpacked_beside_it_once(tmp_path):
    arrays = make_session(tmp_path)
    session = SensoriumSession(arrays.path)
    assert session.folder == tmp_path / ZIP_NAME[:-4]
    before = tree_state(session.folder)
    again = SensoriumSession(arrays.path)
    assert again.folder == session.folder
    assert tree_state(session.folder) == before


def test_read_only_zip_folder_is_never_written(tmp_path, monkeypatch):
    source = tmp_path / "readonly"
    arrays = make_session(source)
    cache_root = tmp_path / "cache_root"
    monkeypatch.setenv("TOPO_CACHE_DIR", str(cache_root))
    before = tree_state(source)
    with read_only(source):
        session = SensoriumSession(arrays.path)
        assert tree_state(source) == before
    assert session.folder == cache_root / "sensorium" / ZIP_NAME[:-4]
    np.testing.assert_array_equal(session.read_trial("responses", 2), arrays.responses[2])


def test_corrupt_zip_member_names_zip_and_member_and_leaves_nothing(tmp_path):
    arrays = make_session(tmp_path)
    member = f"{ZIP_NAME[:-4]}/data/responses/3.npy"
    with zipfile.ZipFile(arrays.path) as archive:
        info = archive.getinfo(member)
    assert info.compress_type == zipfile.ZIP_STORED  # so the flipped byte is in the data
    data = bytearray(arrays.path.read_bytes())
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    data[info.header_offset + 30 + name_len + extra_len + info.file_size - 1] ^= 0xFF
    arrays.path.write_bytes(bytes(data))
    for _ in range(2):  # a failed unpack leaves nothing that a second run would trust
        with pytest.raises(TopoDataError) as error:
            SensoriumSession(arrays.path)
        assert ZIP_NAME in str(error.value) and "data/responses/3.npy" in str(error.value)
        assert [p.name for p in tmp_path.iterdir()] == [ZIP_NAME]


def _folder(tmp_path):
    return make_session(tmp_path, zip=False).path


def _raises(folder, *parts):
    with pytest.raises(TopoDataError) as info:
        SensoriumSession(folder)
    for part in parts:
        assert part in str(info.value)
    return info.value


def test_missing_data_folder_names_it(tmp_path):
    folder = _folder(tmp_path)
    shutil.rmtree(folder / "data/responses")
    _raises(folder, str(folder / "data/responses"), "field: responses")


def test_missing_meta_file_names_it(tmp_path):
    folder = _folder(tmp_path)
    (folder / "meta/trials/frame_image_class.npy").unlink()
    _raises(folder, "frame_image_class.npy", "field: frame_image_class")


def test_missing_trial_file_is_a_count_disagreement(tmp_path):
    folder = _folder(tmp_path)
    (folder / "data/behavior/17.npy").unlink()
    error = _raises(folder, str(folder / "data/behavior/17.npy"), "field: behavior")
    assert "40 files" in str(error)


def test_trial_meta_of_another_length_is_rejected(tmp_path):
    folder = _folder(tmp_path)
    np.save(folder / "meta/trials/frame_image_id.npy", np.arange(39))
    _raises(folder, "frame_image_id.npy", "field: frame_image_id", "(39,)")


def test_unknown_tier_is_rejected(tmp_path):
    folder = _folder(tmp_path)
    tiers = np.load(folder / "meta/trials/tiers.npy")
    tiers[0] = "live_test"
    np.save(folder / "meta/trials/tiers.npy", tiers)
    _raises(folder, "tiers.npy", "field: tiers", "live_test")


def test_statistics_of_wrong_shape_are_rejected(tmp_path):
    folder = _folder(tmp_path)
    np.save(folder / "meta/statistics/responses/all/std.npy", np.ones(11))
    _raises(folder, "responses/all/std.npy", "field: responses.std", "(11,)")


def test_non_finite_responses_name_file_and_field(tmp_path):
    folder = _folder(tmp_path)
    values = np.load(folder / "data/responses/9.npy")
    values[4] = np.nan
    np.save(folder / "data/responses/9.npy", values)
    session = SensoriumSession(folder)
    with pytest.raises(TopoDataError) as info:
        session.read_stack("responses", np.arange(40))
    message = str(info.value)
    assert str(folder / "data/responses/9.npy") in message
    assert "field: responses" in message
    assert "neuron row 4" in message


def test_empty_trial_file_names_it(tmp_path):
    folder = _folder(tmp_path)
    (folder / "data/responses/5.npy").write_bytes(b"")
    session = SensoriumSession(folder)
    with pytest.raises(TopoDataError) as error:
        session.read_trial("responses", 5)
    assert str(folder / "data/responses/5.npy") in str(error.value)
    (folder / "data/images/0.npy").write_bytes(b"")
    _raises(folder, str(folder / "data/images/0.npy"))


def test_writer_rejects_unknown_tier_and_bad_shapes(tmp_path):
    neurons = {
        "unit_ids": np.arange(2),
        "cell_motor_coordinates": np.zeros((2, 3)),
        "animal_ids": 1,
        "sessions": 2,
        "scan_idx": 3,
    }
    args = (np.zeros((2, 1, 4, 4)), np.zeros((2, 2)), np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(TopoDataError, match="unknown tier"):
        write_static_session(tmp_path, *args, np.array(["train", "live"]), np.arange(2), neurons)
    with pytest.raises(TopoDataError, match="field: behavior"):
        bad = (args[0], args[1], np.zeros((2, 2)), args[3])
        write_static_session(tmp_path, *bad, np.array(["train"] * 2), np.arange(2), neurons)
    assert list(tmp_path.iterdir()) == []


def test_object_meta_arrays_load_without_running_their_pickle(tmp_path):
    import os

    from topo_data.sensorium.safe_npy import load_npy

    ids = np.array(["a3f9", 17, "ffe0", b"raw"], dtype=object)  # hashed competition ids
    np.save(tmp_path / "trial_idx.npy", ids)
    assert list(load_npy(tmp_path / "trial_idx.npy", "trial_idx")) == list(ids)

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = np.empty(1, dtype=object)
    evil[0] = Payload()
    np.save(tmp_path / "area.npy", evil)
    with pytest.raises(TopoDataError, match="posix.system|system") as error:
        load_npy(tmp_path / "area.npy", "area")
    assert "area.npy" in str(error.value) and not marker.exists()
