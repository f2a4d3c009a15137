"""Bad and hostile input across the whole API: schemathesis generates requests from the
OpenAPI spec of a running `gigcx serve` and checks every answer. No 5xx, and every answer
matches what the spec says (status code, content type, body schema)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers.processes import ServerProcess
from tests.helpers.slack_requests import KEY

CONSOLE_TOKEN = "a-console-token-for-the-fuzzer"
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def fuzzed_server(synced_brand: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("fuzz")
    env = {
        "GIGCX_STORE__URL": f"sqlite:///{folder / 'fuzz.db'}",
        "GIGCX_WEB__MESSAGES_PER_MINUTE_PER_IP": "1000000",
        "GIGCX_WEB__MESSAGES_PER_MINUTE_PER_CONVERSATION": "1000000",
        "GIGCX_WEB__HANDOFF_CALLS_PER_MINUTE_PER_CONVERSATION": "1000000",
        "GIGCX_WEB__CONSOLE_FAILURES_PER_MINUTE_PER_IP": "1000000",
        "GIGCX_WEB__CONSOLE_TOKEN": CONSOLE_TOKEN,
    }
    server = ServerProcess(synced_brand / "gigcx.yaml", env, folder / "server.log").start()
    try:
        asyncio.run(server.ready())
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzzed_server}/openapi.json")


@pytest.fixture(scope="module")
def conversation(fuzzed_server: str) -> tuple[str, str]:
    """A real conversation and its token, so generated requests get past authentication."""
    created = httpx.post(
        f"{fuzzed_server}/v1/brands/kestrel/conversations", json={"widget_key": KEY}
    ).json()
    return created["conversation_id"], created["token"]


def fuzz(
    api_schema: schemathesis.BaseSchema, base_url: str, prepare: Callable[[Case], None]
) -> list[str]:
    """Generated requests for every operation; what failed, one line per operation."""
    failures = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @EXAMPLES
        @given(case=operation.as_strategy())
        def run(case: Case) -> None:
            prepare(case)
            case.call_and_validate(base_url=base_url, checks=CHECKS)

        try:
            run()
        except Exception as error:  # every operation is tried; all failures are reported
            failures.append(f"{operation.label}: {str(error)[:800]}")
    return failures


def test_any_request_gets_a_documented_answer_and_never_a_server_error(
    api_schema: schemathesis.BaseSchema, fuzzed_server: str
) -> None:
    failures = fuzz(api_schema, fuzzed_server, lambda case: None)
    assert not failures, "\n\n".join(failures)


def test_hostile_bodies_past_authentication_get_a_documented_answer(
    api_schema: schemathesis.BaseSchema, fuzzed_server: str, conversation: tuple[str, str]
) -> None:
    conversation_id, token = conversation

    def authenticated(case: Case) -> None:
        parameters = case.path_parameters or {}
        if "conversation_id" in parameters:
            parameters["conversation_id"] = conversation_id
        if "brand" in parameters:
            parameters["brand"] = "kestrel"
        case.headers = {
            **(case.headers or {}),
            "Authorization": f"Bearer {token}",
            "X-Console-Token": CONSOLE_TOKEN,
        }
        if isinstance(case.body, dict) and "widget_key" in case.body:
            case.body["widget_key"] = KEY

    failures = fuzz(api_schema, fuzzed_server, authenticated)
    assert not failures, "\n\n".join(failures)
