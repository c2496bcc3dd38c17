"""POST /api/v1/admin/knowledge (issue 21): a knowledge file imported through the admin API, for the served
model's dataset, with the admin route's guard (token, loopback); a bad file is refused whole naming the file,
line and column, nothing is stored and the old version keeps serving; a good one reaches the next answers (this
process at once, another worker through its poller within seconds)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from snapid.config import Settings
from snapid.importer import import_dataset
from snapid.knowledge.store import versions
from snapid.serve.app import create_app
from tests.conftest import write_image
from tests.serve.conftest import ADMIN_TOKEN, RED, coloured, files, running
from tests.webapp.conftest import knowledge_bundle

pytestmark = pytest.mark.anyio

URL = "/api/v1/admin/knowledge"
TOKEN = {"X-Admin-Token": ADMIN_TOKEN}


@pytest.fixture
def served(tmp_path, home, engine):
    root = tmp_path / "colours"
    for c, label in enumerate(("red", "green", "blue")):
        for i in range(2):
            write_image(root / label / f"{i}.jpg", (64, 48), seed=c * 10 + i)
    import_dataset(root, name="colours", engine=engine)
    bundle = knowledge_bundle(tmp_path / "bundles" / "colours")
    settings = Settings(home=home.home, reload_poll_s=0, knowledge_poll_s=0.05, timezone="Asia/Seoul",
                        admin_token=ADMIN_TOKEN)
    return settings, bundle


def upload(name: str, text: str) -> dict:
    return {"file": (name, text.encode(), "text/csv")}


async def ask(client) -> dict:
    answer = await client.post("/api/v1/predict?lang=en", files=files(coloured(RED)))
    assert answer.status_code == 200, answer.text
    return answer.json()


async def until(client, version: int, timeout_s: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await ask(client)
        if (answer["knowledge_source"], answer["knowledge_version"]) == ("database", version) \
                or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.05)


async def test_the_guard_token_and_loopback(served, engine):
    settings, bundle = served
    app = create_app(settings, bundle=bundle)
    cards = upload("cards.csv", "class_id,name_en\nred,Crimson pill\n")
    async with running(app) as client:
        r = await client.post(URL, files=cards)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = await client.post(URL, files=cards, headers={"X-Admin-Token": "wrong-token-wrong-token"})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        remote = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("203.0.113.9", 4000)),
                                   base_url="http://127.0.0.1")
        async with remote:
            r = await remote.post(URL, files=cards, headers=TOKEN)
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        # a proxy on this machine speaking for someone else is not a local client
        r = await client.post(URL, files=cards, headers={**TOKEN, "X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert versions("colours", engine=engine) == []
    disabled = create_app(settings.model_copy(update={"admin_token": ""}), bundle=bundle)
    async with running(disabled) as client:
        r = await client.post(URL, files=cards, headers={"X-Admin-Token": ""})
        assert r.status_code == 403 and r.json()["error"] == "admin_disabled"


async def test_a_good_file_reaches_the_next_answer(served, engine):
    settings, bundle = served
    async with running(create_app(settings, bundle=bundle)) as client:
        first = await ask(client)
        assert (first["knowledge_source"], first["knowledge_version"]) == ("bundle", 2)
        r = await client.post(URL, files=upload("cards.csv", "class_id,name_en,maker\nred,Crimson pill,Live Pharm\n"),
                              headers=TOKEN)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["dataset"] == "colours" and body["knowledge_version"] == 1 and body["kind"] == "cards"
        assert body["source"] == "cards.csv" and body["items"] == 1 and body["missing"] == ["blue", "green"]
        assert body["serving"] is True
        answer = await ask(client)
        assert (answer["knowledge_source"], answer["knowledge_version"]) == ("database", 1)
        assert answer["card"]["display_name"] == "Crimson pill"
        r = await client.post(URL + "?kind=table&table=Discounts", headers=TOKEN, files=upload(
            "discounts.csv", "class_id,store,offer_en,valid_from,valid_to\nred,CU,1+1,2000-01-01,2999-12-31\n"))
        assert r.status_code == 200, r.text
        assert (r.json()["knowledge_version"], r.json()["table"], r.json()["items"]) == (2, "discounts", 1)
        answer = await until(client, 2)
        assert [f["value"] for f in answer["card"]["rows"][0]["fields"]] == ["CU", "1+1"]
        r = await client.post(URL + "?kind=places", headers=TOKEN, files=upload(
            "places.csv", "name_en,category,lat,lon\nCafe,food,37.57,126.98\n"))
        assert r.status_code == 200 and r.json()["knowledge_version"] == 3, r.text


async def test_another_worker_picks_it_up_through_its_poller(served, engine):
    settings, bundle = served
    other = create_app(settings, bundle=bundle)  # a second worker process: it only polls
    async with running(create_app(settings, bundle=bundle)) as client, running(other) as worker:
        assert (await ask(worker))["knowledge_source"] == "bundle"
        r = await client.post(URL, files=upload("cards.csv", "class_id,name_en\nred,Scarlet pill\n"), headers=TOKEN)
        assert r.status_code == 200, r.text
        start = time.monotonic()
        answer = await until(worker, r.json()["knowledge_version"])
        assert answer["knowledge_version"] == 1 and answer["card"]["display_name"] == "Scarlet pill"
        assert time.monotonic() - start < 5


@pytest.mark.parametrize(("query", "name", "text", "named"), [
    ("?kind=table&table=discounts", "bad.csv", "class_id,store,valid_to\nred,CU,2026-12-31\nred,GS25,31/12/2026\n",
     "bad.csv line 3: column 'valid_to'"),
    ("?kind=table&table=discounts", "bad.csv", "class_id,store\nred,CU\npurple,CU\n",
     "bad.csv line 3: column 'class_id'"),
    ("?kind=places", "bad.csv", "name,category,lat,lon\nCafe,food,37.5,126.9\nInn,lodging,97.5,126.9\n",
     "bad.csv line 3: column 'lat'"),
    ("?kind=cards", "../../etc/bad.yaml", "- class_id: red\n  link: javascript:alert(1)\n", "bad.yaml entry 1"),
    ("?kind=cards", "bad.csv", "class_id,name_en\n", "bad.csv: no records"),
])
async def test_a_bad_file_is_refused_whole_and_the_old_version_keeps_serving(served, engine, query, name, text,
                                                                             named):
    settings, bundle = served
    async with running(create_app(settings, bundle=bundle)) as client:
        r = await client.post(URL, files=upload("cards.csv", "class_id,name_en\nred,Red pill\n"), headers=TOKEN)
        assert r.status_code == 200 and r.json()["knowledge_version"] == 1
        r = await client.post(URL + query, files=upload(name, text), headers=TOKEN)
        assert r.status_code == 422, r.text
        error = r.json()
        assert error["error"] == "knowledge_error" and named in error["message"], error
        assert "snapid-knowledge-" not in error["message"]  # the file as sent, not where it was written
        assert [v["version"] for v in versions("colours", engine=engine)] == [1]
        await asyncio.sleep(0.2)
        answer = await ask(client)
        assert (answer["knowledge_source"], answer["knowledge_version"]) == ("database", 1)
        assert answer["card"]["display_name"] == "Red pill"


async def test_bad_requests(served, engine):
    settings, bundle = served
    async with running(create_app(settings, bundle=bundle)) as client:
        r = await client.post(URL + "?kind=table", files=upload("d.csv", "class_id,store\nred,CU\n"), headers=TOKEN)
        assert r.status_code == 422 and "table=NAME" in r.json()["message"]
        r = await client.post(URL + "?kind=table&table=cards", files=upload("d.csv", "class_id\nred\n"), headers=TOKEN)
        assert r.status_code == 422 and r.json()["error"] == "knowledge_error"
        r = await client.post(URL + "?kind=photos", files=upload("d.csv", "class_id\nred\n"), headers=TOKEN)
        assert r.status_code == 422
        r = await client.post(URL, content=b"class_id\nred\n", headers={**TOKEN, "Content-Type": "text/csv"})
        assert r.status_code == 422 and "multipart/form-data" in r.json()["message"]
        r = await client.post(URL, data={"file": "class_id\nred\n"}, files={"other": ("x.csv", b"x")}, headers=TOKEN)
        assert r.status_code == 422 and r.json()["error"] == "invalid_request", r.text
    assert versions("colours", engine=engine) == []


async def test_a_file_above_the_knowledge_limit_is_413(served, engine, monkeypatch):
    import snapid.serve.routes.admin as admin

    settings, bundle = served
    monkeypatch.setattr(admin, "MAX_FILE_BYTES", 64)
    async with running(create_app(settings, bundle=bundle)) as client:
        r = await client.post(URL, files=upload("big.csv", "class_id,name_en\n" + "red,Red pill\n" * 10),
                              headers=TOKEN)
        assert r.status_code == 413 and "big.csv" in r.json()["message"], r.text
        big = settings.max_body_bytes + 1
        r = await client.post(URL, files={"file": ("huge.csv", b"x" * big, "text/csv")}, headers=TOKEN)
        assert r.status_code == 413
    assert versions("colours", engine=engine) == []


async def test_openapi_lists_the_route(served):
    settings, bundle = served
    async with running(create_app(settings, bundle=bundle)) as client:
        spec = (await client.get("/openapi.json")).json()
    op = spec["paths"][URL]["post"]
    assert {"401", "403", "413", "422"} <= set(op["responses"])
    assert "multipart/form-data" in op["requestBody"]["content"]
    assert {p["name"] for p in op["parameters"]} >= {"kind", "table", "allow_unknown"}
