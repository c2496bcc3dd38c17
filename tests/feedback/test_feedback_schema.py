"""API fuzz (BAD_INPUTS.md) of the feedback and review operations: generated valid and invalid
requests; no 5xx, and every answer matches its documented status, content type and schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from snapid.config import Settings
from snapid.serve.app import create_app
from tests.feedback.conftest import TOKEN
from tests.serve.conftest import make_bundle

# A label must name a class of the served model, which the schema cannot list: a schema-valid label
# may rightly get 422 unknown_label, so "positive data acceptance" does not apply to those bodies.
# Likewise a new class's schema-valid body names feedback ids that need not exist (404), on a server that does not
# watch its bundle here (409 reload_off).
LABEL_BODIES = {"/api/v1/feedback", "/api/v1/review/{feedback_id}", "/api/v1/review/new-class"}
OPERATIONS = [("POST", "/api/v1/feedback"), ("GET", "/api/v1/review"), ("POST", "/api/v1/review/{feedback_id}"),
              ("GET", "/api/v1/uploads/{upload_id}/thumb"), ("GET", "/api/v1/review/new-classes"),
              ("POST", "/api/v1/review/new-class")]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    root = tmp_path_factory.mktemp("feedback-schema")
    app = create_app(Settings(home=root / "home", reload_poll_s=0, review_token=TOKEN),
                     bundle=make_bundle(root / "bundle"))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("method, path", OPERATIONS)
@pytest.mark.parametrize("token", [None, TOKEN])
def test_feedback_api_conforms_to_its_schema(api_schema, method, path, token):
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    @given(case=operation.as_strategy())
    @hypothesis_settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case):
        excluded = [positive_data_acceptance] if path in LABEL_BODIES else []
        response = case.call_and_validate(headers=headers, excluded_checks=excluded)
        assert response.status_code < 500

    check()
