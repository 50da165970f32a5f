"""`errorless info` shows the job grid the workflow plans (errorless.grid.job_grid)."""

import ast

from errorless.cli import main


def info_lines(capsys, path) -> dict[str, str]:
    assert main(["info", "--config", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    return dict(line.split(": ", 1) for line in out if not line.startswith((" ", "{", "}")))


def test_info_on_imagenet64_without_labels_counts_1000(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "dataset: {format: imagenet64, path: data/imagenet64}\n"
        "modules: {labels_per_module: 25, submodules: 2}\n"
    )
    info = info_lines(capsys, cfg)
    assert info["labels"] == "1000"
    modules = ast.literal_eval(info["modules"])  # a printed list of names
    assert modules == [f"m{j:02d}" for j in range(1, 41)]  # 1000 / 25
    assert ast.literal_eval(info["submodules"]) == ["s1", "s2"]
    assert info["training jobs"] == str(40 * 2 * 6)  # default: h1, 6 features


def test_info_on_the_default_config_matches_the_planned_grid(root, capsys):
    info = info_lines(capsys, root / "config.yaml")
    assert info["labels"] == "20" and info["training jobs"] == "48"  # the dry run's 48 trains
    assert ast.literal_eval(info["protos"]) == ["S_h1_m1", "T_h1_m1"]


def test_info_without_labels_for_npz_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: {format: npz, path: data}\nmodules: {labels_per_module: 2}\n")
    assert main(["info", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config key dataset.labels" in err[0]
