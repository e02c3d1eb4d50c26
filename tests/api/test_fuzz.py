"""Schema-driven fuzzing (schemathesis) of every operation in the app's OpenAPI document.

In-process over ASGI, authenticated as admin (who may call every route), with valid
(``positive``) and invalid (``negative``) inputs for each operation. Valid inputs often get
the name of a real key, so that the fuzzer reaches the cryptography and not only "no such
key". Checks: no 5xx, status code, content type, headers and body as documented, and invalid
input rejected with a 4xx. Deterministic (derandomized) and bounded.

schemathesis's own pytest integration (``from_fixture``) does not run under pytest 9, so
the operations are parametrized here (from the role table, which covers every route) and
each runs its own Hypothesis test over ``operation.as_strategy(...)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import load_all_checks
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from qrc.api.deps import ApiSettings
from qrc.crypto.registry import REGISTRY, set_status
from tests.api.conftest import Api, running_api
from tests.api.test_roles import TABLE

MAX_EXAMPLES = 25
UNDOCUMENTED = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
OPERATIONS = sorted((m, p) for (m, p) in TABLE if p not in UNDOCUMENTED)


def _checks() -> list[Any]:
    load_all_checks()
    from schemathesis.checks import not_a_server_error

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    # The fuzzer may apply random policies, which change the process-wide algorithm
    # registry: put it back afterwards for the other tests of this process.
    statuses = {algorithm: info.status for algorithm, info in REGISTRY.items()}
    try:
        with running_api(
            tmp_path_factory.mktemp("fuzz"), ApiSettings(rate_limit_per_second=0)
        ) as api:
            yield api
    finally:
        for algorithm, status in statuses.items():
            set_status(algorithm, status)


@pytest.fixture(scope="module")
def api_schema(fuzz_api: Api) -> Any:
    config = schemathesis.Config.from_dict(
        {"headers": fuzz_api.headers("admin"), "generation": {"deterministic": True}}
    )
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_api.app, config=config)


@pytest.fixture(scope="module")
def real_keys(fuzz_api: Api) -> list[str]:
    """Names of keys of every purpose for the fuzzer to aim at."""
    return [
        fuzz_api.create_key("fuzz-enc")["name"],
        fuzz_api.create_key("fuzz-sym", "key_wrapping", algorithm="AES-256-GCM")["name"],
        fuzz_api.create_key("fuzz-sig", "signing", algorithm="ML-DSA-44")["name"],
    ]


def _aim(case: Case[Any], key: str | None) -> Case[Any]:
    """Point a valid case at a real key (``None``: leave the generated name)."""
    if key is None:
        return case
    if "key" in (case.path_parameters or {}):
        case.path_parameters["key"] = key
    body = case.body
    if isinstance(body, dict):
        if isinstance(body.get("key"), str):
            body["key"] = key
        items = body.get("items")
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                item["key"] = key
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=lambda x: x)
def test_operation_conforms_to_its_schema(
    api_schema: Any, real_keys: list[str], method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]
    cases = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE:
        aims = st.sampled_from([None, *real_keys])
        cases = st.tuples(cases, aims).map(lambda pair: _aim(*pair))
    checks = _checks()

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: Case[Any]) -> None:
        case.call_and_validate(checks=checks)

    try:
        run()
    except Unsatisfiable:
        # Every parameter accepts any string (a path ID, say): there is nothing to negate.
        assert mode is GenerationMode.NEGATIVE
        pytest.skip("no invalid input exists for this operation")
