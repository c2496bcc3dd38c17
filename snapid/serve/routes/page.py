"""The identification page (GET /) and the phone upload page of the QR hand-off (GET /m/{token}).

Both are static shells: their scripts (static/app/) fetch everything from the API, so no data is ever
put into HTML by the server. The phone page reads its token from its own URL; the access log redacts it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

APP = Path(__file__).resolve().parents[1] / "static" / "app"
router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    return FileResponse(APP / name, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/")
def identify_page() -> FileResponse:
    return _page("index.html")


@router.get("/m/{token}")
def phone_page(token: str = PathParam(max_length=200, pattern=r"^[A-Za-z0-9._-]+$")) -> FileResponse:
    return _page("phone.html")
