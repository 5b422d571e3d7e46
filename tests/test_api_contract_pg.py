"""The running API keeps its OpenAPI contract (schemathesis against the live stack, with a
token): every operation is exercised with valid and invalid data; no answer is a server error,
every answer matches the schema (status, content type, body), and no body the schema forbids
is accepted."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from rest_framework.authtoken.models import Token

from tests.factories import OperationFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, tmp_path_factory, stack_storage):
    """The stack with throttles high enough for the run to reach every endpoint's logic (the
    throttles themselves are tested elsewhere)."""
    from tests.stack import running_stack

    with django_db_blocker.unblock():
        with running_stack(tmp_path_factory.mktemp("contract-logs"), stack_storage,
                           REBOUND_RETRY_THROTTLE="100000/min",
                           REBOUND_UPLOAD_THROTTLE="100000/min") as stack:
            yield stack
# CI generates the same data every run (a fixed seed, one worker, so the server meets it in
# the same order). By hand, REBOUND_CONTRACT_SEED=random and REBOUND_CONTRACT_EXAMPLES=200
# make a longer random run. What a run finds goes to tests/contract-examples (schemathesis'
# example database, tried first by later runs; ignored by git except what is added by hand):
# each failure also becomes a fixed test beside the code it concerns.
SEED = os.environ.get("REBOUND_CONTRACT_SEED", "20261202")
EXAMPLES = os.environ.get("REBOUND_CONTRACT_EXAMPLES", "15")
EXAMPLES_KEPT = Path(__file__).parent / "contract-examples"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,negative_data_rejection")


def test_every_operation_keeps_the_schema_with_valid_and_invalid_data(live, tmp_path):
    user = UserFactory(username="contract")
    token = Token.objects.create(user=user).key
    OperationFactory(owner=user, failed=True)
    headers = {"Authorization": f"Token {token}"}
    schema = requests.get(f"{live.url}/api/v1/schema/?format=json", headers=headers, timeout=10)
    assert schema.status_code == 200
    schema_file = tmp_path / "openapi.json"
    schema_file.write_text(json.dumps(schema.json()))
    report = Path("test-results") / "schemathesis"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", str(schema_file),
         "--url", live.url, "--header", f"Authorization: Token {token}", "--checks", CHECKS,
         "--max-examples", EXAMPLES, "--workers", "1", "--suppress-health-check", "all",
         "--generation-database", str(EXAMPLES_KEPT),
         *([] if SEED == "random" else ["--seed", SEED]),
         "--report", "junit", "--report-dir", str(report), "--no-color"],
        capture_output=True, text=True, timeout=900)
    print(result.stdout[-3000:])  # the seed and what was run, in the test's output
    web_log = (live.log_dir / "web.log").read_text()[-4000:]
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:] + web_log
    assert "operations" in result.stdout.lower()
