"""The README's ten-line receiver, run as written: it accepts what Rebound signs and refuses
what it did not."""
import re
import subprocess
import sys

import pytest
import requests

from operations import runner
from operations.models import Operation
from tests.processes import ROOT, kill_group, wait_for
from tests.stack import free_port
from webhooks import services

pytestmark = pytest.mark.django_db


def readme_receiver() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"<!-- webhook-receiver -->\n```python\n(.*?)```", text, re.S).group(1)


def test_the_readme_receiver_verifies_rebound_deliveries(user, settings, tmp_path):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": ["127.0.0.1/32"]}
    port = free_port()
    endpoint = services.create_endpoint(user, url=f"http://127.0.0.1:{port}/",
                                        event_types=["operation.failed"])
    (tmp_path / "receiver.py").write_text(readme_receiver())
    out = open(tmp_path / "out.txt", "w")
    process = subprocess.Popen([sys.executable, "receiver.py", endpoint.secret, str(port)],
                               cwd=tmp_path, stdout=out, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        def up():
            try:
                return requests.post(f"http://127.0.0.1:{port}/", data=b"{}",
                                     timeout=1).status_code
            except requests.ConnectionError:
                return None

        assert wait_for(up, 20, what="the README receiver") == 400  # unsigned: refused
        delivery = services.send_test(endpoint)
        runner.run(delivery.operation_id)
        assert Operation.objects.get(pk=delivery.operation_id).status == "completed"
        wait_for(lambda: delivery.event.webhook_id in (tmp_path / "out.txt").read_text(), 10,
                 what="the receiver's line")
        assert "webhook.test" in (tmp_path / "out.txt").read_text()
    finally:
        kill_group(process)
        out.close()
