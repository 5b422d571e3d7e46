"""Refusal codes are registered where they are defined, and the schema shows each: every code
an endpoint answered anywhere in this test run is among that endpoint's documented examples."""
import re

import pytest
from drf_spectacular.generators import SchemaGenerator

from operations import refusals

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def documented(schema) -> dict[tuple[str, str], set[str]]:
    """(method, path pattern) -> the refusal codes its responses show examples of."""
    codes = {}
    for path, operations in schema["paths"].items():
        # The router takes each path with and without its trailing slash.
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path.rstrip("/"))) + "/?$"
        for method, operation in operations.items():
            shown = set()
            for response in operation.get("responses", {}).values():
                problem = response.get("content", {}).get("application/problem+json", {})
                shown |= {e["value"]["code"] for e in problem.get("examples", {}).values()}
            codes[(method, pattern)] = shown
    return codes


def test_each_documented_example_matches_its_registered_status(schema):
    for operations in schema["paths"].values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                problem = response.get("content", {}).get("application/problem+json", {})
                for example in problem.get("examples", {}).values():
                    code = example["value"]["code"]
                    assert refusals.get(code).status == int(status) == example["value"][
                        "status"], code


def test_every_registered_code_is_shown_by_some_endpoint(schema):
    shown = set().union(*documented(schema).values())
    assert set(refusals.declared()) - shown == set()


def test_a_code_declared_twice_with_another_status_is_refused():
    refusals.declare("tests_only_code", 400, "x")
    with pytest.raises(ValueError, match="declared as 400"):
        refusals.declare("tests_only_code", 409, "x")


@pytest.mark.after_api_tests
def test_every_refusal_the_api_answered_in_this_run_is_in_its_endpoints_schema(
        schema, refusals_answered):
    if not refusals_answered:
        pytest.skip("reads the refusals answered by the API tests: run it with the suite")
    contract = documented(schema)
    missing = []
    for method, path, code in sorted(refusals_answered):
        matches = [shown for (m, pattern), shown in contract.items()
                   if m == method and re.match(pattern, path)]
        if not matches:
            continue  # not an endpoint (a 404 for an unknown URL is no endpoint's refusal)
        if not any(code in shown for shown in matches):
            missing.append(f"{method.upper()} {path} answered {code!r}")
    assert missing == [], "answered but not in the schema:\n" + "\n".join(missing)
