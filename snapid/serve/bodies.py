"""Request bodies, bounded: a pure-ASGI middleware caps every body while it streams, `read_photos`
parses the multipart form with limits on files, fields and field sizes, and `read_json` reads a small
JSON body (feedback, review).

The cap does not trust Content-Length: a declared length above the cap is answered 413 before any
byte is read, and the bytes are counted as they arrive whether the length was declared, false or
absent (chunked), so the app never receives more than the cap. The whole body must also arrive within
a deadline, so a client sending one byte a second cannot hold a worker for ever.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from snapid.errors import InvalidRequest, SnapidError

FIELD = "files"              # the multipart field that carries the photos
MAX_FIELDS = 16              # non-file form fields accepted (and ignored)
MAX_FIELD_BYTES = 64 * 1024  # size of one non-file field


class BodyTooLarge(SnapidError):
    code = "body_too_large"
    status = 413


class BodyTimeout(SnapidError):
    code = "body_timeout"
    status = 408


async def send_error(send: Send, error: SnapidError) -> None:
    body = json.dumps(error.to_dict()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 after at most ``max_bytes`` body bytes reach the app; 408 when the body is slower than ``deadline_s``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, deadline_s: float):
        self.app, self.max_bytes, self.deadline_s = app, max_bytes, deadline_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await send_error(send, self._too_large(f"Content-Length {declared}"))
            return
        state = {"read": 0, "done": False, "started": False}
        deadline = time.monotonic() + self.deadline_s

        async def counted_receive() -> Message:
            if state["done"]:
                return await receive()  # after the body: only http.disconnect, no deadline
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise BodyTimeout(f"the request body did not arrive within {self.deadline_s:g} s") from None
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > self.max_bytes:
                    raise self._too_large(f"the body (more than {state['read']} bytes)")
                state["done"] = not message.get("more_body", False)
            return message

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except (BodyTooLarge, BodyTimeout) as exc:  # raised where no handler turned it into a response
            if state["started"]:
                raise
            await send_error(send, exc)

    def _too_large(self, what: str) -> BodyTooLarge:
        return BodyTooLarge(f"{what} is above the limit of {self.max_bytes} bytes; send smaller photos")


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # a malformed length is treated as absent: the bytes are still counted
    return None


async def read_photos(request: Request, *, max_files: int) -> list[tuple[str, bytes]]:
    """The photos in the multipart field ``files``: 1 to ``max_files`` of them, as (name, bytes).

    The file names are only used in messages (escaped by JSON); nothing is stored under them."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise InvalidRequest(f"send multipart/form-data with 1 to {max_files} photos in the field {FIELD!r} "
                             f"(got Content-Type {kind or 'none'!r})")
    # Starlette's parser answers 400 for too many files, fields or an oversized text field.
    form = await request.form(max_files=max_files, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)
    try:
        parts = form.getlist(FIELD)
        if not parts:
            raise InvalidRequest(f"no photo in the field {FIELD!r}; send 1 to {max_files} photos there")
        photos = []
        for i, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise InvalidRequest(f"{FIELD}[{i}] is a text field; send the photo as a file part")
            photos.append((_display_name(part.filename, i), await part.read()))
        return photos
    finally:
        await form.close()


async def read_file(request: Request, *, field: str, limit: int) -> tuple[str, bytes]:
    """The one file in the multipart field ``field``, as (its file name as sent, bytes): 413 above ``limit``
    bytes (on top of the body cap every request has). The name is for messages and suffixes only."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise InvalidRequest(f"send multipart/form-data with the file in the field {field!r} "
                             f"(got Content-Type {kind or 'none'!r})")
    form = await request.form(max_files=1, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)
    try:
        part = form.get(field)
        if part is None:
            raise InvalidRequest(f"no file in the field {field!r}")
        if not isinstance(part, UploadFile):
            raise InvalidRequest(f"{field} is a text field; send the file as a file part")
        data = await part.read(limit + 1)
        name = "".join(c for c in (part.filename or "") if c.isprintable())[:200]
        if len(data) > limit:
            raise BodyTooLarge(f"{name or field}: above the {limit >> 20} MB limit of a knowledge file")
        return name, data
    finally:
        await form.close()


def _display_name(filename: str | None, index: int) -> str:
    """A short, printable name for messages: never used as a path."""
    clean = "".join(c for c in (filename or "") if c.isprintable())[:80]
    return f"{FIELD}[{index}]" + (f" ({clean})" if clean else "")


async def read_json(request: Request, *, limit: int):
    """A small JSON body: 413 above ``limit`` bytes (declared or counted), 422 when it is not JSON
    or nests deeper than the parser allows."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the JSON body ({declared} bytes) is above the limit of {limit} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise InvalidRequest(f"send the body as application/json (got Content-Type {kind or 'none'!r})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the JSON body is above the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except RecursionError:
        raise InvalidRequest("the JSON body nests too deeply") from None
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON ({exc})") from None
