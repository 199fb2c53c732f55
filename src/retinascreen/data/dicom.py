"""Safe decoding of DICOM photographs: every size is checked before any pixel is decoded.

A DICOM header's Rows x Columns may lie about the frames it carries: a file that says 10 x 10
can hold a 13,000 x 13,000 JPEG. So before decoding, :func:`load_dicom`

- checks Rows x Columns x frames, samples and bits against the pixel limit;
- reads each encapsulated frame's own header (JPEG SOF, JPEG-LS SOF55, JPEG 2000 SIZ, RLE
  segment table) and refuses a frame whose size differs from the DICOM header or is over the
  limit, a JPEG frame with more scans than a camera writes (a scan bomb), and an RLE segment
  longer than any honest encoding of one frame;
- inflates the Deflated transfer syntax itself, at most the bytes the header's size allows;

and turns whatever a corrupt or fuzzed header makes pydicom raise into the typed errors of
:mod:`retinascreen.errors`.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from retinascreen.data.pixels import check_jpeg_scans, decode_slot
from retinascreen.data.pixels import check_pixels as _check_pixels
from retinascreen.errors import (
    CorruptImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedFormatError,
)

_DEFLATED = "1.2.840.10008.1.2.1.99"
_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", _DEFLATED}
_JPEG = {
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",  # JPEG-LS: SOF55 has the same layout
    "1.2.840.10008.1.2.4.81",
}
_J2K = {
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
}
_RLE = "1.2.840.10008.1.2.5"
_YBR = {"YBR_FULL", "YBR_FULL_422"}
_LIBJPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}  # 8-bit lossy JPEG
# JPEG start-of-frame markers (all processes) and JPEG-LS SOF55.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_HEADER_SLACK = 1 << 20  # bytes allowed besides the pixels in an inflated data set

# What pydicom (and numpy under it) raises on corrupt or fuzzed input.
_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    AttributeError,
    KeyError,
    TypeError,
    ValueError,
    IndexError,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    struct.error,
    zlib.error,
)


def _pydicom_errors() -> tuple[type[BaseException], ...]:
    from pydicom.errors import BytesLengthException, InvalidDicomError

    return (InvalidDicomError, BytesLengthException, *_PARSE_ERRORS)


def load_dicom(data: bytes, label: str, max_pixels: int) -> np.ndarray:
    """Decode the first frame of a DICOM file into an RGB ``uint8`` array (H, W, 3).

    Every size is checked from the headers first; nothing larger than ``max_pixels`` (times
    samples and bytes per sample) is ever allocated. Raises the :mod:`retinascreen.errors` types.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every odd value of a fuzzed header
        ds = _read(data, label, max_pixels)
        info = _image_info(ds, label, max_pixels)
        first = _check_frames(ds, info, label, max_pixels)
        with decode_slot():
            if first is not None and info.syntax in _LIBJPEG and info.photometric in _YBR:
                return _decode_colour_jpeg(first, info, label)
            return _decode(ds, info, label)


def _read(data: bytes, label: str, max_pixels: int) -> Any:
    import pydicom

    errors = _pydicom_errors()
    try:
        if data[128:132] == b"DICM":
            data = _inflate_if_deflated(data, label, max_pixels)
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except errors:
        if data[128:132] == b"DICM":
            raise TruncatedImageError(
                f"{label}: the DICOM header is truncated or corrupt"
            ) from None
        raise NotAnImageError(f"{label}: not a DICOM image (no readable image header)") from None


def _inflate_if_deflated(data: bytes, label: str, max_pixels: int) -> bytes:
    """Deflated Explicit VR Little Endian -> the same file, inflated to Explicit VR LE.

    pydicom inflates the whole stream with no bound (a zip bomb); here the image header is
    inflated first, and the rest only up to the size that header allows.
    """
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info, read_dataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    fp = io.BytesIO(data)
    fp.seek(132)
    meta = _read_file_meta_info(fp)
    if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED:
        return data
    body = data[fp.tell() :]
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    head = inflater.decompress(body, _HEADER_SLACK)
    header = read_dataset(
        io.BytesIO(head),
        is_implicit_VR=False,
        is_little_endian=True,
        stop_when=lambda tag, vr, length: tag == 0x7FE00010,
    )
    rows, cols = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
    frames = int(header.get("NumberOfFrames", 1) or 1)
    _check_pixels(label, cols, rows, max_pixels)
    _check_frame_count(label, cols, rows, frames, max_pixels)
    samples = int(header.get("SamplesPerPixel", 1) or 1)
    bits = int(header.get("BitsAllocated", 8) or 8)
    allowed = rows * cols * frames * min(max(samples, 1), 4) * min(max(bits, 8), 32) // 8
    allowed += _HEADER_SLACK
    rest = inflater.decompress(inflater.unconsumed_tail, allowed - len(head) + 1)
    if len(head) + len(rest) > allowed:
        raise ImageTooLargeError(
            f"{label}: the deflated DICOM data inflates to more than the {allowed:,} bytes its "
            f"{cols}x{rows} header allows (refused while inflating, a zip-bomb guard)"
        )
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    write_file_meta_info(out, meta, enforce_standard=False)
    return data[:132] + out.getvalue() + head + rest


class _Info:
    """The image header fields the checks and the decode need."""

    def __init__(self, ds: Any) -> None:
        self.rows, self.cols = int(ds.Rows), int(ds.Columns)
        self.frames = int(ds.get("NumberOfFrames", 1) or 1)
        self.samples = int(ds.get("SamplesPerPixel", 1) or 1)
        self.bits = int(ds.get("BitsAllocated", 8) or 8)
        self.stored = int(ds.get("BitsStored", self.bits) or self.bits)
        self.signed = int(ds.get("PixelRepresentation", 0) or 0)
        self.photometric = str(ds.get("PhotometricInterpretation", "")).upper()
        self.syntax = str(ds.file_meta.get("TransferSyntaxUID", "")) if ds.file_meta else ""


def _image_info(ds: Any, label: str, max_pixels: int) -> _Info:
    try:
        info = _Info(ds)
    except _pydicom_errors():
        raise NotAnImageError(f"{label}: not a DICOM image (no readable image header)") from None
    if "PixelData" not in ds:
        raise NotAnImageError(f"{label}: the DICOM file holds no pixel data (not an image object)")
    _check_pixels(label, info.cols, info.rows, max_pixels)
    _check_frame_count(label, info.cols, info.rows, info.frames, max_pixels)
    if info.samples not in (1, 3, 4) or info.bits not in (1, 8, 16, 32):
        raise UnsupportedFormatError(
            f"{label}: DICOM images with {info.samples} samples of {info.bits} bits per pixel "
            "are not supported (expected 1 or 3 samples of 8 or 16 bits)"
        )
    if info.syntax and info.syntax not in _NATIVE | _JPEG | _J2K | {_RLE}:
        raise UnsupportedFormatError(
            f"{label}: cannot decode DICOM transfer syntax {info.syntax} "
            "(use uncompressed, JPEG, JPEG 2000 or RLE)"
        )
    if info.photometric == "PALETTE COLOR" and not _has_palette(ds):
        raise CorruptImageError(
            f"{label}: the DICOM image is PALETTE COLOR but holds no colour lookup table"
        )
    return info


def _check_frame_count(label: str, cols: int, rows: int, frames: int, max_pixels: int) -> None:
    if frames < 1:
        raise CorruptImageError(f"{label}: the DICOM header claims {frames} frames")
    if rows * cols * frames > max_pixels:
        raise ImageTooLargeError(
            f"{label}: {frames} frames of {cols}x{rows} = {rows * cols * frames / 1e6:.1f} "
            f"megapixels is over the limit of {max_pixels / 1e6:.1f} megapixels (refused before "
            "decoding, a decompression-bomb guard)"
        )


def _has_palette(ds: Any) -> bool:
    colours = ("Red", "Green", "Blue")
    return all(f"{c}PaletteColorLookupTableDescriptor" in ds for c in colours) and (
        all(f"{c}PaletteColorLookupTableData" in ds for c in colours)
        or all(f"Segmented{c}PaletteColorLookupTableData" in ds for c in colours)
    )


def _check_frames(ds: Any, info: _Info, label: str, max_pixels: int) -> bytes | None:
    """Each encapsulated frame's own size, read from its header, must match Rows x Columns.

    Returns the first frame's bytes (None for native pixel data).
    """
    if info.syntax in _NATIVE or not info.syntax:
        return None
    try:
        frames = list(_frames(ds, info))
    except _pydicom_errors() as exc:
        raise CorruptImageError(
            f"{label}: the encapsulated DICOM pixel data is corrupt ({exc})"
        ) from None
    if not frames:
        raise TruncatedImageError(f"{label}: the DICOM file holds no image frame")
    for number, frame in enumerate(frames[: info.frames], start=1):
        if info.syntax == _RLE:
            _check_rle(frame, info, label, number)
            continue
        kind, size = (
            ("JPEG", _jpeg_size(frame)) if info.syntax in _JPEG else ("JPEG 2000", _j2k_size(frame))
        )
        if size is None:
            raise CorruptImageError(
                f"{label}: frame {number} has no readable {kind} header (corrupt pixel data)"
            )
        width, height = size
        where = f"frame {number}'s {kind} header says {width}x{height}"
        if width * height > max_pixels:
            raise ImageTooLargeError(
                f"{label}: {where} = {width * height / 1e6:.1f} megapixels, over the limit of "
                f"{max_pixels / 1e6:.1f} megapixels (refused before decoding, a decompression-bomb guard)"
            )
        if (width, height) != (info.cols, info.rows):
            raise CorruptImageError(
                f"{label}: {where} but the DICOM header says {info.cols}x{info.rows}; "
                "refused before decoding (corrupt or crafted file)"
            )
        if info.syntax in _JPEG:
            check_jpeg_scans(frame, f"{label}: frame {number}")

    return frames[0]


def _frames(ds: Any, info: _Info) -> Iterator[bytes]:
    from pydicom.encaps import generate_frames

    yield from generate_frames(ds.PixelData, number_of_frames=info.frames)


def _jpeg_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG / JPEG-LS start-of-frame, walking the marker segments."""
    if frame[:2] != b"\xff\xd8":
        return None
    pos, end = 2, len(frame)
    while pos + 4 <= end:
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            pos += 2
            continue
        (length,) = struct.unpack(">H", frame[pos + 2 : pos + 4])
        if marker in _SOF:
            if pos + 9 > end:
                return None
            height, width = struct.unpack(">HH", frame[pos + 5 : pos + 9])
            return (width, height) if height else None  # height 0 (DNL) is not trusted
        if marker in (0xDA, 0xD9) or length < 2:  # scan or end before any frame header
            return None
        pos += 2 + length
    return None


def _j2k_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) from the SIZ marker of a JPEG 2000 codestream, bare or in a JP2 file."""
    start = 0 if frame[:4] == b"\xff\x4f\xff\x51" else _jp2_codestream(frame)
    if start is None or frame[start : start + 4] != b"\xff\x4f\xff\x51":
        return None
    if start + 24 > len(frame):
        return None
    xsiz, ysiz, x0, y0 = struct.unpack(">IIII", frame[start + 8 : start + 24])
    if x0 >= xsiz or y0 >= ysiz:
        return None
    return xsiz - x0, ysiz - y0


def _jp2_codestream(frame: bytes) -> int | None:
    """Where the contiguous codestream box (jp2c) of a JP2 file starts, walking its boxes."""
    pos = 0
    while pos + 8 <= len(frame):
        length, kind = struct.unpack(">I4s", frame[pos : pos + 8])
        header = 8
        if length == 1 and pos + 16 <= len(frame):
            (length,) = struct.unpack(">Q", frame[pos + 8 : pos + 16])
            header = 16
        if kind == b"jp2c":
            return pos + header
        if length < header:  # 0 = "to the end of the file", only valid for the last box
            return None
        pos += length
    return None


def _check_rle(frame: bytes, info: _Info, label: str, number: int) -> None:
    """RLE: 15 segment offsets; one segment per sample byte, none longer than honest RLE."""
    bad = f"{label}: frame {number}'s RLE header is corrupt"
    if len(frame) < 64:
        raise CorruptImageError(f"{bad} (cut short)")
    count, *offsets = struct.unpack("<16I", frame[:64])
    expected = info.samples * max(info.bits // 8, 1)
    if count != expected:
        raise CorruptImageError(f"{bad} ({count} segments for {expected} sample bytes)")
    bounds = [*offsets[:count], len(frame)]
    if bounds[0] != 64 or any(b <= a for a, b in zip(bounds, bounds[1:], strict=False)):
        raise CorruptImageError(f"{bad} (segment offsets out of order or outside the frame)")
    # Honest RLE never needs 2 bytes per pixel byte (a lone byte costs at most 2), and each
    # segment byte expands to at most 64, so decoding stays within 128 x Rows x Columns.
    honest = 2 * info.rows * info.cols + 16
    for a, b in zip(bounds, bounds[1:], strict=False):
        if b - a > honest:
            raise CorruptImageError(
                f"{bad} (a segment of {b - a:,} bytes cannot hold a {info.cols}x{info.rows} frame)"
            )


def _decode_colour_jpeg(frame: bytes, info: _Info, label: str) -> np.ndarray:
    """A colour JPEG frame straight through Pillow: libjpeg converts YCbCr to RGB as it decodes.

    pydicom decodes the raw YCbCr and converts it in floating point, which costs several times
    the image (about 930 MB for 7,000^2 instead of about 320 MB).
    """
    from PIL import Image

    from retinascreen.data.pixels import pil_to_rgb

    try:
        with Image.open(io.BytesIO(frame), formats=["JPEG"]) as image:
            image.load()
            return pil_to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise TruncatedImageError(
            f"{label}: the DICOM JPEG frame is truncated or corrupt ({exc})"
        ) from None


def _decode(ds: Any, info: _Info, label: str) -> np.ndarray:
    from pydicom.pixels import apply_color_lut, pixel_array

    try:
        # index=0 decodes only the first frame; as_rgb converts YBR_FULL(_422) to RGB.
        array = pixel_array(ds, index=0 if info.frames > 1 else None, as_rgb=True)
        if info.photometric == "PALETTE COLOR":
            array = apply_color_lut(array, ds)
            return _to_rgb(np.asarray(array), "RGB", 16 if array.dtype != np.uint8 else 8, 0)
    except NotImplementedError as exc:
        raise UnsupportedFormatError(
            f"{label}: cannot decode DICOM transfer syntax {info.syntax or '?'} ({exc})"
        ) from None
    except _pydicom_errors() as exc:
        message = str(exc)
        if "less than expected" in message or "truncat" in message.lower() or "end of" in message:
            raise TruncatedImageError(
                f"{label}: the DICOM pixel data is truncated ({exc})"
            ) from None
        raise CorruptImageError(f"{label}: cannot decode the DICOM pixel data ({exc})") from None
    if array.shape[:2] != (info.rows, info.cols):
        raise CorruptImageError(
            f"{label}: the decoded frame is {array.shape[1]}x{array.shape[0]}, not the "
            f"{info.cols}x{info.rows} of its header"
        )
    return _to_rgb(np.asarray(array), info.photometric, info.stored, info.signed)


def _to_rgb(array: np.ndarray, photometric: str, bits: int, signed: int) -> np.ndarray:
    """Scale to 8 bits (in float32, or not at all for unsigned 8-bit data) and make RGB."""
    if array.dtype == np.uint8 and not signed:
        scaled = array
    else:
        values = array.astype(np.float32)
        if signed:
            values += np.float32(2.0 ** (bits - 1))
        top = (
            255.0
            if bits <= 8
            else max(2.0**bits - 1.0, float(values.max()) if values.size else 1.0)
        )
        values *= np.float32(255.0 / top)
        values += np.float32(0.5)
        scaled = np.clip(values, 0, 255, out=values).astype(np.uint8)
    if scaled.ndim == 2:
        if photometric == "MONOCHROME1":
            scaled = 255 - scaled
        return np.ascontiguousarray(np.repeat(scaled[:, :, None], 3, axis=2))
    return np.ascontiguousarray(scaled[:, :, :3])
