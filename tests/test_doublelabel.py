"""The double-labelling report: evidence, score, schema, planted-truth check
(docs/method.md#double-labelling-evidence)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_duplicates import write_manifest
from test_duplicates import write_shard as write_shard_rows

from errorless.cli import main
from errorless.errors import DataError
from errorless.names import join_ids
from errorless.quality import double_check, evidence, suspects
from errorless.quality.duplicates import output_schema

SETTINGS = {
    "features": ["R", "G", "B"],
    "featured_models": [3],
    "dataset": {"format": "npz", "path": "x"},
}
B1, B2 = "train_data_batch_1", "train_data_batch_2"


def write_shard(folder: Path, module: int, images: np.ndarray, labels, batch: str) -> None:
    """Shard m0<module>_s1 of ``images`` (rows 0..n-1 of ``batch``)."""
    write_shard_rows(folder, module, 1, images, labels, batch, range(len(images)))


def two_shard_manifest(folder: Path) -> None:
    """The run's shards m01_s1 and m02_s1 (double labelling reads the manifest, not the folder)."""
    write_manifest(folder, ["m01_s1", "m02_s1"])


def t_record(feature: str, module: str, residual_ids=(), residual_labels=(), conflicts=()) -> dict:
    return {
        "proto": "T_h1_m1",
        "method": "T",
        "model": "h1_m1",
        "feature": feature,
        "module": module,
        "submodule": "s1",
        "residual_ids": list(residual_ids),
        "residual_labels": list(residual_labels),
        "conflicts": json.dumps(list(conflicts)),
        "status": "residual_errors" if residual_ids else "error_free",
    }


def write_training(path: Path, records: list[dict]) -> None:
    s_rows = [
        {
            **r,
            "proto": "S_h1_m1",
            "method": "S",
            "residual_ids": [f"{B1}:9"],
            "residual_labels": [1],
            "conflicts": "[]",
        }
        for r in records[:1]
    ]
    pd.DataFrame(records + s_rows).to_parquet(path)


@pytest.fixture()
def planted_run(tmp_path: Path) -> Path:
    """Two shards with a same-shard, a cross-module and a near plant, and a residual-only image."""
    rng = np.random.default_rng(3)
    a = rng.integers(10, 246, size=(6, 8, 8, 3), dtype=np.uint8)
    b = rng.integers(10, 246, size=(6, 8, 8, 3), dtype=np.uint8)
    a[2] = a[0]  # same shard: label 0 and label 1
    b[3] = a[1]  # cross module: label 0 and label 3
    b[5] = (a[4].astype(int) + rng.integers(-2, 3, size=a[4].shape)).astype(
        np.uint8
    )  # near: 0 vs 3
    results = tmp_path / "results"
    (results / "shards").mkdir(parents=True)
    write_shard(results / "shards", 1, a, [0, 0, 1, 1, 0, 1], B1)
    write_shard(results / "shards", 2, b, [2, 2, 3, 3, 2, 3], B2)
    two_shard_manifest(results / "shards")
    conflict = {"ids": [f"{B1}:0", f"{B1}:2"], "labels": [0, 1]}
    recs = [t_record(f, "m01", [f"{B1}:0"], [0], [conflict]) for f in "RGB"]
    recs[0]["residual_ids"] += [f"{B1}:5"]
    recs[0]["residual_labels"] += [1]
    recs += [t_record(f, "m02") for f in "RGB"]
    write_training(results / "training.parquet", recs)
    pd.DataFrame(
        [
            {
                "kind": "same_shard",
                "id_a": f"{B1}:0",
                "label_a": 0,
                "id_b": f"{B1}:2",
                "label_b": 1,
                "module_a": "m01",
                "submodule_a": "s1",
                "module_b": "m01",
                "submodule_b": "s1",
            },
            {
                "kind": "cross_module",
                "id_a": f"{B1}:1",
                "label_a": 0,
                "id_b": f"{B2}:3",
                "label_b": 3,
                "module_a": "m01",
                "submodule_a": "s1",
                "module_b": "m02",
                "submodule_b": "s1",
            },
            {
                "kind": "near",
                "id_a": f"{B1}:4",
                "label_a": 0,
                "id_b": f"{B2}:5",
                "label_b": 3,
                "module_a": "m01",
                "submodule_a": "s1",
                "module_b": "m02",
                "submodule_b": "s1",
            },
        ]
    ).to_csv(tmp_path / "planted.csv", index=False)
    return results


def run(results: Path, *extra: str) -> int:
    s = json.dumps(SETTINGS)
    rc = main(["duplicates", "--settings", s, "--results", str(results)])
    assert rc == 0
    return main(["double-labeling", "--settings", s, "--results", str(results), *extra])


def test_report_on_planted_data(planted_run: Path) -> None:
    results = planted_run
    assert run(results, "--planted", str(results.parent / "planted.csv")) == 0
    rep = pd.read_parquet(results / "double_labeling.parquet")
    assert (
        pq.read_schema(results / "double_labeling.parquet").remove_metadata()
        == suspects.report_schema()
    )
    by_ev = dict(zip(rep["evidence"], rep["ids"].map(join_ids), strict=True))
    assert by_ev == {
        "exact_duplicate+conflict+residual": f"{B1}:0;{B1}:2",
        "exact_duplicate": f"{B1}:1;{B2}:3",
        "near_duplicate": f"{B1}:4;{B2}:5",
        "residual": f"{B1}:5",
    }
    assert list(rep["rank"]) == [1, 2, 3, 4]
    kinds = dict(zip(rep["evidence"], rep["kind"], strict=True))
    assert (
        kinds["exact_duplicate"] == "exact"
        and kinds["near_duplicate"] == "near"
        and pd.isna(kinds["residual"])
    )
    near_sim = rep.loc[rep["evidence"] == "near_duplicate", "similarity"].item()
    assert 0.9 <= near_sim < 1.0
    assert rep["evidence"].iloc[0] == "exact_duplicate+conflict+residual"
    assert rep["score"].iloc[0] == 5.0 and rep["score"].is_monotonic_decreasing
    top = rep.iloc[0]
    assert (top["n_features_failed"], top["n_features"]) == (3, 3)
    assert (top["batch_a"], top["row_a"], top["label_a"], top["label_b"]) == (B1, 0, 0, 1)
    single = rep[rep["evidence"] == "residual"].iloc[0]
    assert (
        single["n_features_failed"] == 1 and pd.isna(single["id_b"]) and pd.isna(single["label_b"])
    )
    assert list(single["fnn_failed"]) == ["T_h1_m1/R/m01_s1"]
    assert list(top["ids"]) == [f"{B1}:0", f"{B1}:2"] and list(top["labels"]) == [0, 1]
    assert rep.loc[rep["evidence"] == "exact_duplicate", "n_features"].item() == 3
    csv = pd.read_csv(results / "double_labeling.csv")
    assert list(csv.columns) == suspects.REPORT_COLUMNS and len(csv) == 4
    check = pd.read_csv(results / "quality" / "planted_check.csv").set_index("kind")
    assert check.loc["overall", ["planted", "found", "reported", "correct"]].tolist() == [
        3,
        3,
        3,
        3,
    ]
    assert check.loc["overall", "precision"] == 1.0 and check.loc["overall", "recall"] == 1.0
    assert check.loc["same_shard", "flagged_by_training"] == 1
    assert check.loc["cross_module", "flagged_by_training"] == 0
    assert check.loc["residual_only", "reported"] == 1
    assert (results / "quality" / "suspects.png").stat().st_size > 1000


def test_precision_recall_known_case() -> None:
    ev = evidence.TrainingEvidence()
    ev.residual_ids = {"b:1"}
    ev.failed = {"b:1": {"T/R/m01_s1"}}
    report = suspects.finish(
        pd.DataFrame(
            [
                # correct pair (a planted same_shard pair)
                {
                    "score": 5.0,
                    "evidence": "exact_duplicate+residual",
                    "group_size": 2,
                    "ids": "b:1;b:2",
                    "labels": "0;1",
                    "module_a": "m01",
                    "submodule_a": "s1",
                    "module_b": "m01",
                    "submodule_b": "s1",
                },
                # group of three containing the cross_module plant plus an unplanted image: found, not correct
                {
                    "score": 3.0,
                    "evidence": "exact_duplicate",
                    "group_size": 3,
                    "ids": "b:3;b:4;b:5",
                    "labels": "0;3;3",
                    "module_a": "m01",
                    "submodule_a": "s1",
                    "module_b": "m02",
                    "submodule_b": "s1",
                },
                # near pair not planted: a false positive
                {
                    "score": 1.5,
                    "evidence": "near_duplicate",
                    "group_size": 2,
                    "ids": "b:6;b:7",
                    "labels": "0;1",
                    "module_a": "m01",
                    "submodule_a": "s1",
                    "module_b": "m01",
                    "submodule_b": "s1",
                },
                {
                    "score": 1.1,
                    "evidence": "residual",
                    "group_size": 1,
                    "ids": "b:8",
                    "labels": "1",
                    "module_a": "m01",
                    "submodule_a": "s1",
                },
            ],
            columns=[c for c in suspects.REPORT_COLUMNS if c != "rank"],
        )
    )
    planted = pd.DataFrame(
        {
            "kind": ["same_shard", "cross_module", "near", "near"],
            "id_a": ["b:2", "b:3", "b:10", "b:12"],
            "id_b": ["b:1", "b:4", "b:11", "b:13"],
        }
    )
    summary, detail = double_check.planted_check(report, planted, ev)
    s = summary.set_index("kind")
    assert s.loc["overall", ["planted", "found", "reported", "correct"]].tolist() == [4, 2, 3, 1]
    assert s.loc["overall", "precision"] == pytest.approx(1 / 3)
    assert s.loc["overall", "recall"] == pytest.approx(0.5)
    assert s.loc["same_shard", ["precision", "recall", "flagged_by_training"]].tolist() == [
        1.0,
        1.0,
        1,
    ]
    assert s.loc["cross_module", ["found", "reported", "correct", "precision"]].tolist() == [
        1,
        1,
        0,
        0.0,
    ]
    assert s.loc["near", ["found", "reported", "correct", "recall"]].tolist() == [0, 0, 0, 0.0]
    assert (
        s.loc["not_planted", "reported"] == 1
    )  # the unplanted near pair: counted against precision
    assert s.loc["residual_only", "reported"] == 1
    assert detail["found"].tolist() == [True, True, False, False]
    assert detail["rank"].tolist()[:2] == [1, 2]


def test_empty_report_is_typed(tmp_path: Path) -> None:
    results = tmp_path / "r"
    (results / "quality").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist([], schema=output_schema()), results / "quality" / "duplicates.parquet"
    )
    recs = [t_record(f, m) for f in "RGB" for m in ("m01", "m02")]
    write_training(results / "training.parquet", recs)
    two_shard_manifest(results / "shards")  # listed, not written: no thumbnails are drawn
    rc = main(["double-labeling", "--settings", json.dumps(SETTINGS), "--results", str(results)])
    assert rc == 0
    table = pq.read_table(results / "double_labeling.parquet")
    assert table.num_rows == 0 and table.schema.remove_metadata() == suspects.report_schema()
    assert pd.read_csv(results / "double_labeling.csv").columns.tolist() == suspects.REPORT_COLUMNS
    check = pd.read_csv(results / "quality" / "planted_check.csv")
    assert check["note"].iloc[0].startswith("no ground truth")
    assert (results / "quality" / "suspects.png").exists()


def test_missing_training_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["double-labeling", "--settings", json.dumps(SETTINGS), "--results", str(tmp_path)])
    assert rc == 2
    assert str(tmp_path / "training.parquet") in capsys.readouterr().err
    with pytest.raises(DataError, match="training.parquet"):
        evidence.read_training(tmp_path / "training.parquet")


def test_missing_records_are_named(planted_run: Path) -> None:
    df = pd.read_parquet(planted_run / "training.parquet")
    df = df[~((df["feature"] == "G") & (df["module"] == "m02") & (df["method"] == "T"))]
    df.to_parquet(planted_run / "training.parquet")
    cfg = {**SETTINGS}
    from errorless.config import validate

    ev = evidence.training_evidence(df, evidence.expected_fnns(validate(cfg), ["m01_s1", "m02_s1"]))
    assert ev.missing == ["T_h1_m1/G/m02_s1"]
    assert run(planted_run) == 2
    assert run(planted_run, "--allow-missing") == 0


def test_conflicts_as_list_column_and_int_modules() -> None:
    df = pd.DataFrame(
        [
            {
                "proto": "T_h1_m1",
                "method": "T",
                "feature": "R",
                "module": 3,
                "submodule": 2,
                "residual_ids": ["x:1"],
                "residual_labels": [4],
                "conflicts": [{"ids": ["x:1", "x:2"], "labels": [4, 5]}],
            }
        ]
    )
    ev = evidence.training_evidence(df)
    assert ev.shard["x:2"] == ("m03", "s2") and ev.label["x:2"] == 5
    assert frozenset(("x:1", "x:2")) in ev.conflicts and ev.n_failed["x:2"] == 1


def test_feature_identity_is_not_a_double_label(tmp_path: Path) -> None:
    """docs/method.md#double-labelling-evidence: a black and a magenta image have identical inputs
    in feature G
    (constant channel -> zeros after centring): one FNN cannot fit them, but they are
    different images, so they are 'indistinguishable in feature G', not a suspect pair."""
    results = tmp_path / "results"
    (results / "shards").mkdir(parents=True)
    rng = np.random.default_rng(7)
    a = rng.integers(10, 246, size=(4, 16, 16, 3), dtype=np.uint8)
    a[0] = 0  # black
    a[1] = 0
    a[1][..., 0] = a[1][..., 2] = 200  # magenta: G constant as in black
    write_shard(results / "shards", 1, a, [0, 1, 0, 1], B1)
    write_shard(
        results / "shards",
        2,
        rng.integers(10, 246, size=(4, 16, 16, 3), dtype=np.uint8),
        [2, 3, 2, 3],
        B2,
    )
    two_shard_manifest(results / "shards")
    conflict = {"ids": [f"{B1}:0", f"{B1}:1"], "labels": [0, 1]}
    recs = [
        t_record("G", "m01", [f"{B1}:0"], [0], [conflict]),
        t_record("R", "m01"),
        t_record("B", "m01"),
    ]
    recs += [t_record(f, "m02") for f in "RGB"]
    write_training(results / "training.parquet", recs)
    planted = tmp_path / "planted.csv"
    pd.DataFrame(columns=["kind", "id_a", "id_b"]).to_csv(planted, index=False)
    assert run(results, "--planted", str(planted)) == 0
    rep = pd.read_parquet(results / "double_labeling.parquet")
    row = rep[rep["ids"].map(join_ids) == f"{B1}:0;{B1}:1"].iloc[0]
    assert (
        row["evidence"] == "indistinguishable+residual"
        and row["kind"] == "indistinguishable in feature G"
    )
    assert row["score"] < 3 and pd.isna(row["similarity"])
    assert not rep["evidence"].str.contains("duplicate").any()
    check = pd.read_csv(results / "quality" / "planted_check.csv").set_index("kind")
    assert check.loc["overall", "reported"] == 0 and check.loc["indistinguishable", "reported"] == 1


def test_budget_leftovers_are_kept_apart_and_ranked_last(planted_run: Path) -> None:
    """A T-FNN that stopped on its GDT budget leaves images that more budget may fit: they are
    `gdt_budget` rows below every residual of an exhausted search
    (docs/method.md#double-labelling-evidence)."""
    results = planted_run
    recs = pd.read_parquet(results / "training.parquet").to_dict("records")
    for r in recs:
        if r["method"] == "T" and r["module"] == "m02" and r["feature"] == "G":
            r.update(residual_ids=[f"{B2}:1", f"{B2}:3"], residual_labels=[2, 3], status="budget")
    pd.DataFrame(recs).to_parquet(results / "training.parquet")
    assert run(results, "--planted", str(results.parent / "planted.csv")) == 0
    rep = pd.read_parquet(results / "double_labeling.parquet")
    budget = rep[rep["ids"].map(join_ids) == f"{B2}:1"].iloc[0]
    assert budget["evidence"] == "gdt_budget" and list(budget["fnn_failed"]) == [
        "T_h1_m1/G/m02_s1 (budget)"
    ]
    assert budget["score"] == 0.5 and budget["rank"] == len(
        rep
    )  # below the exhausted-search residual
    assert rep.loc[rep["evidence"] == "residual", "score"].item() > budget["score"]
    # an image of a duplicate row keeps its match evidence, plus the weak budget mark
    cross = rep[rep["ids"].map(join_ids) == f"{B1}:1;{B2}:3"].iloc[0]
    assert cross["evidence"] == "exact_duplicate+gdt_budget" and "residual" not in cross["evidence"]
    check = pd.read_csv(results / "quality" / "planted_check.csv").set_index("kind")
    assert check.loc["budget_only", "reported"] == 1 and check.loc["residual_only", "reported"] == 1
    assert check.loc["cross_module", "flagged_by_training"] == 0  # a budget stop flags nothing
