"""The process-wide decode slots: full decodes queue instead of stacking their memory."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from retinascreen.data import images
from retinascreen.data.images import decode_slot, load_image
from retinascreen.errors import ConfigError
from tests.helpers.dicom_files import dicom_bytes


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("photo", [png(), dicom_bytes(np.zeros((16, 16, 3), np.uint8))])
def test_a_decode_waits_while_every_slot_is_taken(monkeypatch, photo):
    monkeypatch.setenv(images.DECODE_CONCURRENCY_ENV, "1")
    done = threading.Event()

    def decode() -> None:
        load_image(photo)
        done.set()

    with decode_slot():  # another request is decoding a big photo
        worker = threading.Thread(target=decode)
        worker.start()
        assert not done.wait(0.3), "the decode did not wait for a free slot"
    assert done.wait(5), "the decode did not start once the slot was free"
    worker.join()


def test_default_is_two_concurrent_decodes(monkeypatch):
    monkeypatch.delenv(images.DECODE_CONCURRENCY_ENV, raising=False)
    assert images.decode_concurrency() == 2
    with decode_slot(), decode_slot():  # two at once do not block each other
        pass


@pytest.mark.parametrize("value", ["zero", "0", "-3"])
def test_bad_concurrency_setting_is_a_config_error(monkeypatch, value):
    monkeypatch.setenv(images.DECODE_CONCURRENCY_ENV, value)
    with pytest.raises(ConfigError, match="RETINASCREEN_DECODE_CONCURRENCY"):
        load_image(png())
