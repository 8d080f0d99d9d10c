"""Schema fuzzing: schemathesis generates valid and invalid requests from the served OpenAPI
document (every operation, a bounded number of examples each); none may get a 5xx."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

EXAMPLES = 20
POSTS = {"POST /v1/chat/completions", "POST /v1/completions", "POST /v1/feedback", "POST /v1/admin/purge"}
GETS = {"GET /v1/models", "GET /v1/review/queue", "GET /v1/feedback/export", "GET /v1/admin/audit", "GET /v1/versions/stats", "GET /v1/me"}
PARAMETERLESS = {"GET /v1/models", "GET /v1/versions/stats", "GET /v1/me"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_server_errors(main_app, mode):
    schema = schemathesis.openapi.from_url(f"{main_app.url}/openapi.json", headers=main_app.headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= POSTS | GETS
    calls: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def no_5xx(case):
            response = case.call(base_url=main_app.url, headers=main_app.headers, timeout=120)
            calls[f"{case.method.upper()} {case.path}"] += 1
            answered[f"{case.method.upper()} {case.path} {response.status_code}"] += 1
            assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
            if response.status_code >= 400 and response.status_code != 405:
                assert response.json()["error"]["message"], "errors must be OpenAI error objects"

        try:
            no_5xx()
        except Unsatisfiable:  # nothing to break in an operation without parameters or body
            assert mode is GenerationMode.NEGATIVE and not operation.body and operation.method.upper() == "GET"
    assert all(calls[op] >= 5 for op in POSTS), calls
    assert all(calls[op] >= 5 for op in GETS - PARAMETERLESS), calls  # routes with parameters to vary
    if mode is GenerationMode.POSITIVE:  # valid requests really reach the model
        assert answered["POST /v1/chat/completions 200"] + answered["POST /v1/completions 200"] >= 5, answered
