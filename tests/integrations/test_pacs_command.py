"""``retinascreen pacs``: an unreachable PACS or a missing URL is one clear error line."""

from __future__ import annotations

from retinascreen.cli import main
from tests.helpers.live_server import PASSWORD, USERNAME, free_port


def test_an_unreachable_pacs_is_one_error_line(tmp_path, capsys, web_model_path, monkeypatch):
    from retinascreen.web.accounts import create_admin

    monkeypatch.delenv("RETINASCREEN_PACS_URL", raising=False)
    instance = tmp_path / "instance"
    create_admin(USERNAME, PASSWORD, instance=instance)
    common = ["--user", USERNAME, "--instance", str(instance), "--model", str(web_model_path)]
    assert main(["pacs", "pull", *common]) == 2
    assert "error: give the PACS's DICOMweb URL" in capsys.readouterr().err
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    assert main(["pacs", "pull", "--url", url, *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: PACS {url}: searching")
    assert main(["pacs", "pull", "--url", "ftp://pacs", *common]) == 2
    assert "must start with http" in capsys.readouterr().err
