"""The API docs page (/docs): Swagger UI from an installed package, started by a static script, under the
app's strict CSP. Over plain HTTP (assets, content types, headers) and in Debian's headless Chromium
(the predict operation rendered, no CSP violation, no request leaving 127.0.0.1).
The browser test fails, rather than skips, under CI=true when Chromium or Playwright is missing."""

from __future__ import annotations

import re

import pytest

from snapid.config import Settings
from tests.helpers import live_server
from tests.serve.test_dashboard_browser import WAIT_MS, Page, until
from tests.serve.test_dashboard_browser import browser as browser  # a module fixture, re-exported for pytest

JS_TYPES = ("text/javascript", "application/javascript")


def directives(csp: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}


def test_docs_page_is_a_shell_with_no_inline_script_and_a_strict_csp(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    csp = directives(response.headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert not any("unsafe" in value for values in csp.values() for value in values)
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", response.text, flags=re.S)
    assert scripts and all('src="/' in attrs and body.strip() == "" for attrs, body in scripts)
    assert not re.search(r"https?://|\son[a-z]+=|style=", response.text)  # no CDN, no handler, no inline style
    assert 'data-openapi-url="/openapi.json"' in response.text


def test_swagger_assets_and_init_script_are_served_with_their_types(client):
    for path, types in (("/docs/assets/swagger-ui-bundle.js", JS_TYPES), ("/docs/assets/swagger-ui.css", ("text/css",)),
                        ("/static/docs/init.js", JS_TYPES)):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].split(";")[0] in types, (path, response.headers["content-type"])
        assert response.headers["x-content-type-options"] == "nosniff"
    assert b"SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").content
    assert "dataset.openapiUrl" in client.get("/static/docs/init.js").text


def test_only_the_listed_assets_are_served_and_fastapis_own_pages_are_gone(client):
    for path in ("/docs/assets/redoc.standalone.js", "/docs/assets/..%2F__init__.py", "/docs/assets/favicon.png",
                 "/redoc", "/docs/oauth2-redirect"):
        response = client.get(path)
        assert response.status_code == 404, path
    schema = client.get("/openapi.json")
    assert schema.status_code == 200 and "/api/v1/predict" in schema.json()["paths"]
    assert not any(p.startswith("/docs") for p in schema.json()["paths"])  # the page is not part of the API


@pytest.fixture
def server(home):
    with live_server(Settings(home=home.home), None) as base:
        yield base


def test_docs_render_the_predict_operation_offline_with_no_csp_violation(browser, server):
    opened = Page(browser)  # fails on a console error (a CSP violation shows there) or a request off 127.0.0.1
    page = opened.page
    try:
        response = page.goto(f"{server}/docs")
        assert "script-src 'self';" in response.headers["content-security-policy"]
        predict = page.locator(".opblock-summary-path", has_text="/api/v1/predict").first
        predict.wait_for(timeout=WAIT_MS)
        assert page.locator(".opblock-post .opblock-summary-path[data-path='/api/v1/predict']").count() == 1
        predict.click()  # expands: the multipart body with its file field renders too
        page.locator(".opblock-post.is-open .opblock-section-request-body").wait_for(timeout=WAIT_MS)
        until(page, "document.querySelector('.opblock-post.is-open').textContent.includes('files')")
        # Swagger UI's stylesheet applied (a blocked stylesheet would leave the default font)
        assert "sans-serif" in page.evaluate("getComputedStyle(document.querySelector('.swagger-ui')).fontFamily")
    finally:
        opened.close()
