"""DICOM photographs that lie about their size, bomb the inflater, or have broken headers."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from retinascreen.data.images import load_image
from retinascreen.errors import (
    CorruptImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
)
from tests.helpers.dicom_files import (
    deflate_bomb_dicom,
    deflated_dicom,
    dicom_bytes,
    encoded,
    jpeg_bomb_dicom,
    rle_dicom,
)

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"


def noise(height: int = 24, width: int = 32, channels: int = 3) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)


def test_dicom_saying_10x10_with_a_13000_square_jpeg_is_refused_without_decoding():
    data = jpeg_bomb_dicom(13_000, claimed=10)
    assert len(data) < 3_000_000
    start = time.perf_counter()
    with pytest.raises(
        ImageTooLargeError, match=r"upload.dcm: frame 1's JPEG header says 13000x13000"
    ):
        load_image(data, name="upload.dcm")
    # Decoding 169 megapixels takes over a second; reading the frame header takes microseconds.
    assert time.perf_counter() - start < 0.5


def test_jpeg_frame_whose_size_differs_from_the_dicom_header_is_refused():
    frame = encoded(noise(64, 64, 1), "JPEG")
    data = dicom_bytes(frames=[frame], syntax=JPEG_BASELINE, rows=10, cols=10, samples=1)
    with pytest.raises(CorruptImageError, match="64x64 but the DICOM header says 10x10"):
        load_image(data, name="eye.dcm")


@pytest.mark.parametrize("jp2_file", [True, False], ids=["jp2-boxes", "bare-codestream"])
def test_jpeg_2000_frame_size_is_read_from_its_siz_marker(jp2_file):
    frame = encoded(noise(40, 48, 1), "JPEG2000", irreversible=False, no_jp2=not jp2_file)
    assert frame.startswith(b"\xff\x4f\xff\x51") != jp2_file
    lying = dicom_bytes(frames=[frame], syntax=J2K_LOSSLESS, rows=10, cols=10, samples=1)
    with pytest.raises(CorruptImageError, match="JPEG 2000 header says 48x40"):
        load_image(lying)
    honest = dicom_bytes(frames=[frame], syntax=J2K_LOSSLESS, rows=40, cols=48, samples=1)
    np.testing.assert_array_equal(load_image(honest)[:, :, 0], noise(40, 48, 1))


def test_honest_jpeg_in_dicom_still_decodes():
    pixels = np.full((24, 32), 100, np.uint8)
    frame = encoded(pixels, "JPEG", quality=95)
    data = dicom_bytes(frames=[frame], syntax=JPEG_BASELINE, rows=24, cols=32, samples=1)
    out = load_image(data)
    assert out.shape == (24, 32, 3) and abs(int(out.mean()) - 100) <= 2


def test_frame_count_times_size_over_the_pixel_limit_is_refused():
    data = dicom_bytes(noise(20, 20), extra={"NumberOfFrames": 1_000_000})
    with pytest.raises(ImageTooLargeError, match="1000000 frames of 20x20"):
        load_image(data, max_pixels=50_000_000)


def test_deflate_bomb_is_refused_while_inflating():
    data = deflate_bomb_dicom(64 << 20, claimed=10)
    assert len(data) < 400_000
    with pytest.raises(
        ImageTooLargeError, match="inflates to more than .* its 10x10 header allows"
    ):
        load_image(data, name="bomb.dcm")


def test_honest_deflated_and_rle_dicom_decode_exactly():
    pixels = noise()
    np.testing.assert_array_equal(load_image(deflated_dicom(pixels)), pixels)
    np.testing.assert_array_equal(load_image(rle_dicom(pixels)), pixels)


def test_rle_segment_longer_than_any_frame_could_need_is_refused():
    data = bytearray(rle_dicom(noise(4, 4, 1)))
    frame_at = data.index(struct.pack("<I", 1) + struct.pack("<I", 64))  # 1 segment at offset 64
    # Make the single segment huge: a run header 0x81 repeats the next byte 128 times.
    segment = b"\x81\x00" * 5_000
    head = struct.pack("<16I", 1, 64, *([0] * 14))
    item = head + segment
    item_length_at = frame_at - 4
    old_length = struct.unpack("<I", data[item_length_at:frame_at])[0]
    data[item_length_at:frame_at] = struct.pack("<I", len(item))
    data[frame_at : frame_at + old_length] = item
    with pytest.raises(CorruptImageError, match="RLE header is corrupt .*cannot hold a 4x4 frame"):
        load_image(bytes(data))


def test_palette_colour_without_a_lookup_table_is_a_clear_error():
    data = dicom_bytes(noise(8, 8, 1), photometric="PALETTE COLOR")
    with pytest.raises(CorruptImageError, match="PALETTE COLOR but holds no colour lookup table"):
        load_image(data, name="palette.dcm")


def test_wrong_length_header_field_is_an_image_error():
    data = bytearray(dicom_bytes(noise(8, 8)))
    rows_at = data.index(b"\x28\x00\x10\x00US\x02\x00")  # (0028,0010) Rows, US, 2 bytes
    data[rows_at + 6 : rows_at + 8] = struct.pack("<H", 3)  # a 3-byte US value
    with pytest.raises((TruncatedImageError, CorruptImageError, NotAnImageError)):
        load_image(bytes(data), name="fuzzed.dcm")


def test_colour_jpeg_in_dicom_matches_pydicoms_own_decode():
    import io

    import pydicom
    from pydicom.pixels import pixel_array

    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32], rgb[:, 32:] = (200, 40, 30), (20, 180, 90)
    frame = encoded(rgb, "JPEG", quality=95)
    data = dicom_bytes(
        frames=[frame],
        syntax=JPEG_BASELINE,
        rows=48,
        cols=64,
        samples=3,
        photometric="YBR_FULL_422",
    )
    reference = pixel_array(pydicom.dcmread(io.BytesIO(data)), as_rgb=True)
    np.testing.assert_array_equal(load_image(data), reference)
    assert np.abs(load_image(data)[5, 5].astype(int) - (200, 40, 30)).max() <= 3


def test_jpeg_frame_with_thousands_of_scans_is_refused_before_decoding(monkeypatch):
    from PIL import ImageFile

    from retinascreen.errors import AbnormalEncodingError
    from tests.helpers.jpeg_bombs import scan_bomb

    def refuse(self, *args, **kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    frame = scan_bomb(512, 512, scans=2_000)
    data = dicom_bytes(
        frames=[frame],
        syntax=JPEG_BASELINE,
        rows=512,
        cols=512,
        samples=3,
        photometric="YBR_FULL_422",
    )
    with pytest.raises(AbnormalEncodingError, match=r"eye.dcm: frame 1: .*scans"):
        load_image(data, name="eye.dcm")
