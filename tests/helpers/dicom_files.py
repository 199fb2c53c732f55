"""DICOM files for tests and benches: honest ones, and the crafted ones an attacker would send."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

OPHTHALMIC_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.5.1"


def dicom_bytes(
    pixels: np.ndarray | None = None,
    *,
    photometric: str | None = None,
    frames: list[bytes] | None = None,
    syntax: str = "1.2.840.10008.1.2.1",
    rows: int | None = None,
    cols: int | None = None,
    samples: int | None = None,
    extra: dict[str, object] | None = None,
) -> bytes:
    """A DICOM Ophthalmic Photography file: native ``pixels``, or encapsulated ``frames``.

    ``rows``/``cols``/``samples`` override what the header says (to make it lie).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OPHTHALMIC_PHOTO
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = UID(syntax)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = OPHTHALMIC_PHOTO, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OP"
    shape = pixels.shape if pixels is not None else (rows or 1, cols or 1, samples or 1)
    ds.Rows = rows if rows is not None else shape[0]
    ds.Columns = cols if cols is not None else shape[1]
    ds.SamplesPerPixel = samples or (shape[2] if len(shape) == 3 else 1)
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric or (
        "RGB" if ds.SamplesPerPixel == 3 else "MONOCHROME2"
    )
    bits = 16 if pixels is not None and pixels.dtype == np.uint16 else 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    if frames is not None:
        ds.PixelData = encapsulate(frames)
        ds["PixelData"].VR = "OB"
        if len(frames) > 1:
            ds.NumberOfFrames = len(frames)
    else:
        assert pixels is not None
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def encoded(pixels: np.ndarray | None, fmt: str, *, size: int = 0, **options: object) -> bytes:
    """``pixels`` (or a flat grey square of ``size``) encoded by Pillow as ``fmt``."""
    image = Image.fromarray(pixels) if pixels is not None else Image.new("L", (size, size), 128)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg_bomb_dicom(side: int = 13_000, *, claimed: int = 10) -> bytes:
    """A DICOM saying ``claimed`` x ``claimed`` that carries a ``side`` x ``side`` JPEG frame.

    A flat grey JPEG is tiny on disk (13,000^2 is about 2 MB) but decodes to ``side``^2 bytes.
    """
    jpeg = encoded(None, "JPEG", size=side, quality=50)
    return dicom_bytes(
        frames=[jpeg], syntax="1.2.840.10008.1.2.4.50", rows=claimed, cols=claimed, samples=1
    )


def deflate_bomb_dicom(inflated_bytes: int = 256 << 20, *, claimed: int = 10) -> bytes:
    """A Deflated Explicit VR LE DICOM: a ``claimed``^2 header, then ``inflated_bytes`` of zeros.

    Built by streaming zeros through zlib, so it costs little to make (~1,000:1).
    """
    honest = deflated_dicom(np.zeros((claimed, claimed), np.uint8))
    meta_end = 144 + struct.unpack("<I", honest[140:144])[0]  # after the file meta group
    header = zlib.decompress(honest[meta_end:], -zlib.MAX_WBITS)
    header = header[: header.index(b"\xe0\x7f\x10\x00")]  # the data set up to PixelData
    body = header + b"\xe0\x7f\x10\x00OB\x00\x00" + struct.pack("<I", inflated_bytes)
    squeeze = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [squeeze.compress(body)]
    chunk = bytes(1 << 20)
    for _ in range(inflated_bytes >> 20):
        parts.append(squeeze.compress(chunk))
    parts.append(squeeze.compress(bytes(inflated_bytes & ((1 << 20) - 1))))
    parts.append(squeeze.flush())
    return honest[:meta_end] + b"".join(parts)


def deflated_dicom(pixels: np.ndarray) -> bytes:
    """An honest Deflated Explicit VR Little Endian DICOM of ``pixels``."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels)))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def rle_dicom(pixels: np.ndarray) -> bytes:
    """An honest RLE Lossless DICOM of ``pixels``."""
    import pydicom
    from pydicom.uid import RLELossless

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels)))
    ds.compress(RLELossless)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()
