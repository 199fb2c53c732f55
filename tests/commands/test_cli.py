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
