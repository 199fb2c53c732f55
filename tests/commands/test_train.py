"""The train / evaluate / compare commands as a user runs them."""

from __future__ import annotations

import csv
import json

import pytest

from retinascreen.cli import main
from tests.helpers.tiny_fundus import make_tiny_aptos


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_aptos(tmp_path_factory.mktemp("cli") / "data", n=30)


def test_train_extend_evaluate_compare(tmp_path, data, capsys):
    config = tmp_path / "train.toml"
    config.write_text(
        f'data = "{data}"\nformat = "aptos"\nbackbone = "mini_xception"\nhead = "gap"\n'
        f"size = 64\nwidths = [8, 16]\nepochs = 5\nbatch_size = 8\nval = 0.2\ntest = 0.2\n"
        f'cache_dir = "{tmp_path / "cache"}"\n'
    )
    run = tmp_path / "run"
    common = ["train", "--config", str(config), "--size", "48", "--out", str(run)]
    assert main([*common, "--epochs", "1"]) == 0
    used = (run / "config.toml").read_text()
    assert "size = 48" in used and "epochs = 1" in used  # flags override the file
    assert 'head = "gap"' in used  # the file fills the rest

    assert main([*common, "--epochs", "2"]) == 0  # train the same run one epoch further
    with open(run / "history.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0", "1"]

    capsys.readouterr()
    out_dir = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                str(run),
                "--data",
                str(data),
                "--format",
                "aptos",
                "--out",
                str(out_dir),
                "--target-sensitivity",
                "0.9",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "QWK" in printed and "referable" in printed
    evaluated = json.loads((out_dir / "metrics.json").read_text())
    trained = json.loads((run / "metrics.json").read_text())
    assert evaluated["n"] == trained["n"]  # the same test split as training
    assert evaluated["referable"]["target_sensitivity"] == 0.9
    assert (out_dir / "confusion.png").is_file() and (out_dir / "roc.png").is_file()

    assert main(["compare", str(run), "--markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| run | backbone | head |")
    assert "| run | mini_xception | gap | 48 | softmax |" in table[2]


def test_train_errors_are_one_line(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "missing"),
                "--format",
                "aptos",
                "--backbone",
                "mini_xception",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert main(["train", "--data", "x", "--epochs", "0", "--out", str(tmp_path / "r")]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err
    assert main(["compare", str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err


def test_train_help_names_every_registered_backbone():
    from retinascreen.commands.train import BACKBONE_NAMES
    from retinascreen.models.backbones import BACKBONES

    assert sorted(BACKBONE_NAMES) == sorted(BACKBONES)
