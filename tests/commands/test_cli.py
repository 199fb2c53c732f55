import subprocess
import sys

from retinascreen.cli import main


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "retinascreen" in out


def test_python_dash_m_runs():
    done = subprocess.run(
        [sys.executable, "-m", "retinascreen", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("retinascreen ")


def test_train_and_evaluate_help_name_idrids_splits_and_synth_writes_only_layouts(capsys):
    import pytest

    for command in ("train", "evaluate"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "idrid-test" in out and "idrid-all" in out and "idrid-test its testing set" in out
    with pytest.raises(SystemExit) as exc:
        main(["synth", "out", "--n", "2", "--layout", "idrid-test"])
    assert exc.value.code == 2
    assert "invalid choice: 'idrid-test'" in capsys.readouterr().err
