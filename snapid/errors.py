"""Typed errors: the CLI prints them, the API maps them to {"error": code, "message": ...}.

Each error carries a stable machine-readable ``code`` and the HTTP ``status`` that
``../shared/BAD_INPUTS.md`` assigns to it; the message names the file or value at fault.
"""

from __future__ import annotations


class SnapidError(Exception):
    code = "error"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict:
        return {"error": self.code, "message": self.message}


# --- images (snapid.images) -------------------------------------------------------------
class ImageError(SnapidError):
    code = "bad_image"
    status = 400


class EmptyFile(ImageError):
    code = "empty_file"
    status = 400


class UnsupportedImage(ImageError):
    code = "unsupported_image"
    status = 415


class CorruptImage(ImageError):
    code = "corrupt_image"
    status = 400


class ImageTooSmall(ImageError):
    code = "image_too_small"
    status = 400


class TooManyPixels(ImageError):
    code = "too_many_pixels"
    status = 413


class FileTooLarge(ImageError):
    code = "file_too_large"
    status = 413


class DecodeTimeout(ImageError):
    """Decoding one image took more CPU time than its bound (SNAPID_DECODE_TIMEOUT_S)."""
    code = "decode_timeout"
    status = 422


# --- datasets and workspace ------------------------------------------------------------
class DatasetError(SnapidError):
    """A dataset cannot be read as asked: unknown format, missing column, bad box..."""

    code = "dataset_error"
    status = 422


class AnnotationError(DatasetError):
    """An annotation is wrong; the message names the file and line."""

    code = "bad_annotation"


class UnsafeFile(AnnotationError):
    """An annotation file that is not read: a link leaving the dataset root, a FIFO or device, or too large."""

    code = "unsafe_file"


class NotFound(SnapidError):
    code = "not_found"
    status = 404


class UsageError(SnapidError):
    """An option or argument value that cannot be used; the message names it."""
    code = "usage"
    status = 422


class UnsafePath(SnapidError):
    code = "unsafe_path"
    status = 400


class InvalidRequest(SnapidError):
    """A request the API cannot take as sent (a bad parameter, body or content type)."""
    code = "invalid_request"
    status = 422
