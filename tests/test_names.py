"""errorless.names: every name of the job grid is made and read back by one module."""

import numpy as np
import pytest

from errorless import names
from errorless.errors import DataError


@pytest.mark.parametrize("k", [1, 4, 9, 10, 40, 99, 100, 200, 1000])
def test_module_names_read_back_to_their_numbers(k):
    made = names.module_names(k)
    assert len(made) == k and len(set(map(len, made))) == 1  # one width: they sort as numbers
    assert made == sorted(made) and made[0] == "m" + "0" * (max(2, len(str(k))) - 1) + "1"
    assert [names.number(m) for m in made] == list(range(1, k + 1))
    subs = names.submodule_names(3)
    assert subs == ["s1", "s2", "s3"] and [names.number(s) for s in subs] == [1, 2, 3]


def test_shard_model_and_proto_names_split_back():
    for m in names.module_names(12):
        for s in names.submodule_names(2):
            assert names.split_shard(f"{m}_{s}") == (m, s)
    model = names.model_name("h2", 3)
    assert model == "h2_m3" and names.split_model(model) == ("h2", 3)
    for method in ("S", "Sp", "T"):
        proto = names.proto_name(method, model)
        assert names.split_proto(proto) == (method, model)
    assert names.split_model("custom") == ("custom", None)


@pytest.mark.parametrize("bad", ["x03", "m", "mxx", "03"])
def test_bad_module_names_are_refused(bad):
    with pytest.raises(DataError, match="not a module"):
        names.number(bad)


@pytest.mark.parametrize("bad", ["m03", "m03-s2", "s2_m03"])
def test_bad_shard_names_are_refused(bad):
    with pytest.raises(DataError, match="not a shard name"):
        names.split_shard(bad)


def test_image_ids_are_made_and_read_back_in_names() -> None:
    from errorless.names import image_id, image_id_key, image_ids, split_image_id

    assert image_id("train_data_batch_3", 1207) == "train_data_batch_3:1207"
    made = image_ids(np.array(["t10k", "val_data"]), np.array([947, 0]))
    assert made.tolist() == ["t10k:947", "val_data:0"]
    assert [split_image_id(i) for i in made] == [("t10k", 947), ("val_data", 0)]
    assert split_image_id("photo.png") == ("photo.png", None) and split_image_id(None) == (
        None,
        None,
    )
    assert sorted(["b:10", "b:9", "a:2"], key=image_id_key) == ["a:2", "b:9", "b:10"]


def test_id_lists_round_trip_through_a_csv_cell_and_a_parquet_list():
    ids = ["train_data_batch_1:0", "val_data:17", "img-7"]
    assert names.join_ids(ids) == "train_data_batch_1:0;val_data:17;img-7"
    assert names.split_ids(names.join_ids(ids)) == ids  # the CSV cell
    assert names.split_ids(np.array(ids, dtype=object)) == ids  # a Parquet list read back
    assert names.split_ids("") == [] and names.split_ids(None) == []
    assert names.split_ids(float("nan")) == []  # an empty CSV cell read by pandas
