"""Typed errors with messages a clinician or a researcher can act on.

Every error the product raises on bad input derives from :class:`RetinascreenError`; the CLI
prints its message as one ``error: ...`` line, the web app shows it on the form, and the API
answers it as ``{"error": "..."}`` with the status code in :attr:`RetinascreenError.status`.
"""

from __future__ import annotations


class RetinascreenError(Exception):
    """Base class: bad input or an unusable resource, never a programming error."""

    status: int = 400


class ImageError(RetinascreenError):
    """A file could not be read as a photograph."""

    status = 422


class EmptyImageError(ImageError):
    """The file has zero bytes."""


class TruncatedImageError(ImageError):
    """The file starts like an image but ends early."""


class CorruptImageError(ImageError):
    """The file's headers contradict each other or its image data cannot be decoded."""


class NotAnImageError(ImageError):
    """The file is not an image at all."""


class UnsupportedFormatError(ImageError):
    """An image format retinascreen does not read."""

    status = 415


class ImageTooLargeError(ImageError):
    """More pixels than the limit (a decompression bomb guard)."""

    status = 413


class AbnormalEncodingError(ImageError):
    """A file encoded in a way no camera writes, which would cost far too much to decode.

    E.g. a JPEG with thousands of scans, or a PNG whose metadata inflates to megabytes.
    """


class NotFundusError(ImageError):
    """The photo does not show a fundus."""


class DatasetError(RetinascreenError):
    """A data set is missing files, has unknown labels or the wrong layout."""


class ConfigError(RetinascreenError):
    """A configuration file or option is invalid."""


class ModelError(RetinascreenError):
    """A model file is missing, unreadable or of an unknown kind."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights could not be downloaded and are not in the cache."""


class ExportAgreementError(ModelError):
    """An exported (quantised) model disagrees too often with the fp32 model."""
