"""API fuzz (BAD_INPUTS.md): schemathesis generates requests from the app's own /openapi.json, valid
and invalid; no response may be a 5xx, and every response must match its documented status, content
type and schema. Bounded: a fixed number of examples per operation, no network (in-process ASGI)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from snapid.config import Settings
from snapid.serve.app import create_app
from tests.serve.conftest import ADMIN_TOKEN, make_bundle


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    root = tmp_path_factory.mktemp("schema")
    bundle = make_bundle(root / "bundle")
    app = create_app(Settings(home=root / "home", reload_poll_s=0, admin_token=ADMIN_TOKEN), bundle=bundle)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


# Random bytes are valid for `format: binary` but are not photos, so a correct server refuses them:
# "positive data acceptance" does not apply to the upload. Every other check runs.
EXCLUDED = [positive_data_acceptance]
UPLOADS = ("/predict", "/admin/knowledge")  # the knowledge file too: random bytes are not a valid file
OPERATIONS = [("POST", "/api/v1/predict"), ("GET", "/api/v1/model"), ("GET", "/api/v1/classes"),
              ("GET", "/healthz/live"), ("GET", "/healthz/ready"), ("GET", "/metrics"),
              ("POST", "/api/v1/admin/reload"), ("POST", "/api/v1/admin/knowledge")]


def _operation(schema, method: str, path: str):
    return schema[path][method]


def test_every_serving_operation_is_fuzzed(api_schema):
    mine = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert set(OPERATIONS) <= mine  # the dashboard's routes (runs, compare) have their own tests


# schemathesis' pytest plugin (from_fixture) does not run under pytest 9, so Hypothesis drives the cases.
@pytest.mark.parametrize("method, path", OPERATIONS)
def test_api_conforms_to_its_schema(api_schema, method, path):
    operation = _operation(api_schema, method, path)

    @given(case=operation.as_strategy())
    @hypothesis_settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call_and_validate(excluded_checks=EXCLUDED if path.endswith(UPLOADS) else [])
        assert response.status_code < 500 or response.status_code == 503

    check()
