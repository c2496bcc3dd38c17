"""API routers: each route is a few lines over a service."""

from __future__ import annotations

from snapid.serve.schemas import ErrorBody


def error_responses(*statuses: int) -> dict:
    """OpenAPI entries for error statuses; every error body is {"error", "message"}."""
    return {s: {"model": ErrorBody, "description": DESCRIPTIONS.get(s, "Error")} for s in statuses}


DESCRIPTIONS = {
    400: "Bad input: empty, corrupt, truncated or too small photo; malformed multipart.",
    401: "Missing or wrong admin token.",
    403: "Not allowed from this address, or admin disabled.",
    408: "The request body did not arrive within the deadline.",
    413: "Body, file count or pixel count above the limit.",
    415: "Not a JPEG, PNG, WebP, GIF or BMP image.",
    422: "Invalid request: missing field or invalid parameter, or a bundle that failed verification.",
    409: "Conflict: the feedback was already merged into a dataset, or explain=true for a bundle that cannot explain "
         "(explain_unavailable); for a new class, feedback that cannot make one, a packed bundle, reload off, or "
         "another one being made (add_class_running, with Retry-After).",
    429: "Too many: a hand-off session's or client's limit, or a prediction's feedback limit (feedback_limit).",
    503: "No model loaded, shutting down, overloaded, or the database locked by another writer (see Retry-After).",
    500: "snapid add-class failed unexpectedly (add_class_failed): its last line is the message.",
    501: "This install cannot do it: snapid add-class needs the train extra (add_class_unavailable).",
    504: "snapid add-class did not finish in time (add_class_timeout); nothing was changed.",
    507: "The server's disk is full: the photo was not kept (storage_full).",
}
