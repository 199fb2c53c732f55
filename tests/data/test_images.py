"""images.load_image / save_image on real files in every format, and on every kind of bad file."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile, PngImagePlugin

from retinascreen.data.images import MAX_PIXELS, jpeg_scan_count, load_image, save_image
from retinascreen.errors import (
    AbnormalEncodingError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedFormatError,
)
from tests.helpers.jpeg_bombs import scan_bomb


def gradient(height: int = 24, width: int = 32) -> np.ndarray:
    """A colourful RGB test pattern whose pixels are all different enough to compare."""
    yy, xx = np.mgrid[:height, :width]
    return np.stack(
        [
            xx * 255 // (width - 1),
            yy * 255 // (height - 1),
            (xx + yy) * 255 // (width + height - 2),
        ],
        axis=2,
    ).astype(np.uint8)


def write_dicom(path: Path, pixels: np.ndarray, photometric: str, *, bits: int = 8) -> Path:
    """An Ophthalmic Photography DICOM file written with pydicom (uncompressed)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_class = "1.2.840.10008.5.1.4.1.1.77.1.5." + ("2" if bits > 8 else "1")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OP"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height (no real pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )
    return path


# --------------------------------------------------------------------------- good files


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_formats_round_trip_exactly(tmp_path, suffix):
    rgb = gradient()
    path = tmp_path / f"photo{suffix}"
    options = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(rgb).save(path, **options)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out, rgb)


def test_jpeg_decodes_close_to_original(tmp_path):
    rgb = gradient(48, 64)
    path = tmp_path / "photo.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    out = load_image(path)
    assert out.shape == (48, 64, 3)
    assert np.abs(out.astype(int) - rgb).mean() < 3


def test_sixteen_bit_grayscale_png_and_tiff_are_scaled_to_eight_bit(tmp_path):
    gray16 = (np.arange(24 * 32, dtype=np.uint32).reshape(24, 32) * 85).astype(np.uint16)
    expected = np.round(gray16 / 257).astype(np.uint8)
    for suffix in (".png", ".tif"):
        path = tmp_path / f"gray16{suffix}"
        Image.fromarray(gray16).save(path)
        out = load_image(path)
        assert out.shape == (24, 32, 3)
        assert np.abs(out[:, :, 0].astype(int) - expected).max() <= 1
        np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])


def test_sixteen_bit_rgb_png_and_tiff(tmp_path):
    rgb16 = gradient().astype(np.uint16) * 257
    for suffix in (".png", ".tif"):
        path = tmp_path / f"rgb16{suffix}"
        cv2.imwrite(str(path), rgb16[:, :, ::-1])  # OpenCV writes 48-bit colour, BGR order
        out = load_image(path)
        assert out.dtype == np.uint8
        assert np.abs(out.astype(int) - gradient()).max() <= 1


def test_grayscale_palette_and_rgba_become_rgb(tmp_path):
    rgb = gradient()
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "gray.png")
    gray = load_image(tmp_path / "gray.png")
    np.testing.assert_array_equal(gray, np.repeat(rgb[:, :, :1], 3, axis=2))

    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(
        load_image(tmp_path / "palette.png"), np.asarray(palette.convert("RGB"))
    )

    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:, :16, 3] = 0  # left half fully transparent -> black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = load_image(tmp_path / "rgba.png")
    assert out.shape == (24, 32, 3)
    assert out[:, :16].max() == 0
    np.testing.assert_array_equal(out[:, 16:], rgb[:, 16:])


def test_exif_orientation_six_is_applied(tmp_path):
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:8, :8] = (255, 0, 0)  # red mark at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(rgb).save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (40, 20, 3)  # portrait once rotated
    assert out[2, 17, 0] > 200 and out[2, 2, 0] < 50  # the mark moved to the top-right


def test_bytes_input_and_name_in_messages(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(gradient()).save(buffer, format="PNG")
    np.testing.assert_array_equal(load_image(buffer.getvalue()), gradient())
    with pytest.raises(NotAnImageError, match="upload.jpg"):
        load_image(b"hello, this is not a photo", name="upload.jpg")


def test_dicom_rgb_eight_bit(tmp_path):
    rgb = gradient()
    path = write_dicom(tmp_path / "eye.dcm", rgb, "RGB")
    assert path.read_bytes()[128:132] == b"DICM"
    np.testing.assert_array_equal(load_image(path), rgb)


def test_dicom_detected_by_magic_without_suffix(tmp_path):
    path = write_dicom(tmp_path / "eye.dcm", gradient(), "RGB")
    renamed = path.rename(tmp_path / "export_0001")
    np.testing.assert_array_equal(load_image(renamed), gradient())
    np.testing.assert_array_equal(load_image(renamed.read_bytes()), gradient())


def test_dicom_sixteen_bit_monochrome(tmp_path):
    gray16 = (np.arange(24 * 32, dtype=np.uint32).reshape(24, 32) * 85).astype(np.uint16)
    out = load_image(write_dicom(tmp_path / "mono16.dcm", gray16, "MONOCHROME2", bits=16))
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    assert np.abs(out[:, :, 1].astype(int) - np.round(gray16 / 257)).max() <= 1


def test_dicom_monochrome1_is_inverted(tmp_path):
    gray = gradient()[:, :, 0]
    out = load_image(write_dicom(tmp_path / "mono1.dcm", gray, "MONOCHROME1"))
    np.testing.assert_array_equal(out[:, :, 0], 255 - gray)


def test_dicom_ybr_full_is_converted_to_rgb(tmp_path):
    from pydicom.pixels import convert_color_space

    rgb = gradient()
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    out = load_image(write_dicom(tmp_path / "ybr.dcm", ybr, "YBR_FULL"))
    assert np.abs(out.astype(int) - rgb).max() <= 2


def test_dicom_rle_compressed(tmp_path):
    import pydicom
    from pydicom.uid import RLELossless

    path = write_dicom(tmp_path / "eye.dcm", gradient(), "RGB")
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    np.testing.assert_array_equal(load_image(tmp_path / "rle.dcm"), gradient())


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_save_image_round_trips_and_leaves_no_temp_files(tmp_path, suffix):
    target = save_image(tmp_path / "sub" / f"crop{suffix}", gradient())
    assert target.exists()
    assert [p.name for p in target.parent.iterdir()] == [f"crop{suffix}"]
    out = load_image(target)
    assert np.abs(out.astype(int) - gradient()).mean() < (0.01 if suffix == ".png" else 4)


def test_save_image_refuses_unknown_suffix(tmp_path):
    with pytest.raises(UnsupportedFormatError, match=".gif"):
        save_image(tmp_path / "crop.gif", gradient())
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- bad files


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(EmptyImageError, match="empty.jpg.*empty"):
        load_image(path)


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_truncated_files(tmp_path, fmt, suffix):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format=fmt)
    data = buffer.getvalue()
    for cut in (len(data) // 2, 20):
        path = tmp_path / f"cut{cut}{suffix}"
        path.write_bytes(data[:cut])
        with pytest.raises(TruncatedImageError, match=path.name):
            load_image(path)


def test_truncated_dicom(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = write_dicom(tmp_path / "eye.dcm", noise, "RGB").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 1000])
    with pytest.raises(TruncatedImageError, match="cut.dcm"):
        load_image(tmp_path / "cut.dcm")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("Patient 12, left eye, follow-up in 6 months.\n")
    with pytest.raises(NotAnImageError, match="notes.jpg.*text"):
        load_image(path)


def test_svg_is_not_a_photograph(tmp_path):
    path = tmp_path / "logo.svg"
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>')
    with pytest.raises(NotAnImageError, match="SVG"):
        load_image(path)


def test_random_binary_is_not_an_image(tmp_path):
    path = tmp_path / "blob.png"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(NotAnImageError):
        load_image(path)


def test_dcm_suffix_without_dicom_content(tmp_path):
    path = tmp_path / "scan.dcm"
    path.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(NotAnImageError, match="scan.dcm"):
        load_image(path)


@pytest.mark.parametrize("fmt", ["GIF", "ICO", "PPM"])
def test_unsupported_formats(tmp_path, fmt):
    path = tmp_path / f"picture.{fmt.lower()}"
    Image.fromarray(gradient()).save(path, format=fmt)
    with pytest.raises(UnsupportedFormatError, match=f"picture.{fmt.lower()}.*not supported"):
        load_image(path)


def test_pixel_limit_checked_against_max_pixels(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(gradient()).save(path)
    with pytest.raises(ImageTooLargeError, match="photo.png.*limit"):
        load_image(path, max_pixels=500)  # 24 x 32 = 768 pixels
    assert load_image(path, max_pixels=768).shape == (24, 32, 3)


@pytest.mark.parametrize("width,height", [(10_000, 6_000), (100_000, 100_000)])
def test_header_claimed_huge_png_is_refused_before_decoding(tmp_path, width, height):
    path = png_header_only(tmp_path / "bomb.png", width, height)
    assert path.stat().st_size < 100 and width * height > MAX_PIXELS
    with pytest.raises(ImageTooLargeError, match="bomb.png"):
        load_image(path)


def test_all_errors_are_image_errors_with_status_codes(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path / "empty.png")
    assert 400 <= caught.value.status < 500


@pytest.mark.parametrize("fmt", ["WEBP", "PNG", "TIFF"])
def test_multi_frame_files_decode_their_first_frame(fmt):
    first, second = Image.fromarray(gradient()), Image.fromarray(255 - gradient())
    buffer = io.BytesIO()
    first.save(buffer, format=fmt, save_all=True, append_images=[second], lossless=True)
    out = load_image(buffer.getvalue())
    assert out.shape == (24, 32, 3) and np.abs(out.astype(int) - gradient()).max() <= 2


def test_animated_webp_canvas_is_checked_before_decoding():
    frames = [Image.fromarray(gradient()), Image.fromarray(255 - gradient())]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:])
    data = bytearray(buffer.getvalue())
    vp8x = data.index(b"VP8X")  # canvas width-1 and height-1, 24 bits each
    data[vp8x + 12 : vp8x + 18] = (9_999).to_bytes(3, "little") + (9_999).to_bytes(3, "little")
    with pytest.raises(ImageTooLargeError, match="anim.webp"):
        load_image(bytes(data), name="anim.webp")


def _no_decoding(monkeypatch):
    """Make any pixel decode fail loudly: what is refused must be refused from the markers."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_progressive_jpeg_with_thousands_of_scans_is_refused_before_decoding(monkeypatch):
    bomb = scan_bomb(1_024, 1_024, scans=3_000)
    assert len(bomb) < 200_000 and jpeg_scan_count(bomb, stop_after=10**6) == 3_000
    _no_decoding(monkeypatch)
    with pytest.raises(AbnormalEncodingError, match=r"bomb.jpg: .*encoded abnormally.*scans") as e:
        load_image(bomb, name="bomb.jpg")
    assert e.value.status == 422


def test_honest_progressive_and_baseline_jpegs_still_decode():
    rgb = gradient(64, 96)
    for progressive in (False, True):
        buffer = io.BytesIO()
        exif = b"Exif\x00\x00" + b"\xff\xda" * 300  # marker-like bytes inside APP1 do not count
        Image.fromarray(rgb).save(
            buffer, format="JPEG", quality=95, progressive=progressive, exif=exif
        )
        data = buffer.getvalue()
        assert 1 <= jpeg_scan_count(data) <= 10
        assert np.abs(load_image(data).astype(int) - rgb).max() < 24


@pytest.mark.parametrize("chunk", ["zTXt", "iCCP"])
def test_png_metadata_bomb_says_the_metadata_is_abnormal_not_cut_short(chunk):
    buffer = io.BytesIO()
    image = Image.fromarray(gradient())
    if chunk == "zTXt":
        info = PngImagePlugin.PngInfo()
        info.add_text("comment", "A" * 40_000_000, zip=True)
        image.save(buffer, format="PNG", pnginfo=info)
    else:
        image.save(buffer, format="PNG", icc_profile=b"\x00" * 40_000_000)
    assert len(buffer.getvalue()) < 100_000
    with pytest.raises(AbnormalEncodingError, match="photo.png: the file's metadata") as caught:
        load_image(buffer.getvalue(), name="photo.png")
    assert "cut short" not in str(caught.value) and "truncated" not in str(caught.value)
