"""Web users under load, as a browser drives Rebound: open the dashboard and a job grid, poll the grid's changed cells every few seconds (htmx), click Retry on a failed cell, and
now and then upload a small export. Run by bench/web_load.py, which prepares the accounts
(LOAD_ACCOUNTS: a JSON file of {"username", "session", "job"}: signed in already) and the server."""
import io
import itertools
import json
import os
import random
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from locust import HttpUser, between, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.export_generator import write_export  # noqa: E402

ACCOUNTS = itertools.cycle(json.loads(Path(os.environ["LOAD_ACCOUNTS"]).read_text()))
RETRY_FORM = re.compile(r'action="(/jobs/\d+/cells/\d+/retry)"')


def small_export(seed: int) -> bytes:
    out = io.BytesIO()
    write_export(out, count=5, seed=seed, turn_bytes=200)
    return out.getvalue()


class WebUser(HttpUser):
    wait_time = between(1, 3)

    def on_start(self):
        account = next(ACCOUNTS)
        self.job = account["job"]
        self.client.cookies.set("sessionid", account["session"])
        self.client.get("/", name="open the dashboard")  # and receive the CSRF cookie
        self.since = ""

    def htmx(self) -> dict:
        return {"HX-Request": "true", "X-CSRFToken": self.client.cookies.get("csrftoken", "")}

    @task(10)
    def poll_grid(self):
        polled = datetime.now(timezone.utc).isoformat()
        self.client.get(f"/jobs/{self.job}/cells", params={"since": self.since},
                        headers=self.htmx(), name="poll the job grid (htmx)")
        self.since = polled

    @task(3)
    def open_job(self):
        self.client.get(f"/jobs/{self.job}/", name="open the job grid")

    @task(2)
    def dashboard(self):
        self.client.get("/", name="open the dashboard")

    @task(2)
    def retry_a_failed_cell(self):
        page = self.client.get(f"/jobs/{self.job}/", name="open the job grid")
        failed = RETRY_FORM.findall(page.text)
        if failed:
            self.client.post(random.choice(failed), headers=self.htmx(),
                             name="click Retry on a cell (htmx)")

    @task(1)
    def upload(self):
        self.client.post("/imports/upload", name="upload a small export",
                         data={"csrfmiddlewaretoken": self.client.cookies["csrftoken"]},
                         files={"file": ("conversations.json",
                                         small_export(random.randrange(10**6)))})
