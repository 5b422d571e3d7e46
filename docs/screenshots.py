"""Screenshots of the demo for the README: the dashboard mid-retry, a job grid with failed
cells, a batch with a failed phase, a retry history and the metrics page.

    .venv/bin/python docs/screenshots.py            # starts the demo, saves docs/*.png

It runs `manage.py run` on a fresh SQLite database in a temporary folder (the demo user and
its demo data), drives the distribution's Chromium (REBOUND_CHROMIUM, or chromium /
chromium-browser on PATH) and stops everything when done.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def chromium() -> str:
    path = os.environ.get("REBOUND_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not path:
        sys.exit("Chromium not found: install the distribution's chromium package")
    return path


def wait_until_up(url: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    sys.exit("the demo did not start")


def shoot(url: str):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(base_url=url, viewport={"width": 1200, "height": 860})
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill("demo")
        page.get_by_label("Password").fill("rebound-demo")
        page.get_by_role("button", name="Sign in").click()

        # The demo's cells and essays fail in their first seconds (the timeout one after its
        # automatic retries, 1 + 2 + 4 s).
        page.goto("/jobs/")
        page.get_by_role("link", name="Retry questions across regions").click()
        expect(page.locator("#job-summary")).to_contain_text("finished", timeout=60_000)
        page.screenshot(path=OUT / "job-grid.png", full_page=True)
        page.locator("td.cell-timeout a.history-link").first.click()
        page.screenshot(path=OUT / "retry-history.png", full_page=True)

        page.goto("/batches/")
        page.get_by_role("link", name="Essays on retrying safely").click()
        expect(page.locator("#batch-grid")).to_contain_text("failed in AI feedback",
                                                            timeout=60_000)
        page.get_by_label("Reason (optional)").last.fill("The provider is back")
        page.screenshot(path=OUT / "batch-failed-phase.png", full_page=True)

        page.goto("/")
        button = page.locator("#full-pass-banner button.retry")
        expect(button).to_be_visible(timeout=60_000)
        page.screenshot(path=OUT / "dashboard-failed.png", full_page=True)
        # Mid-retry: the network slowed down long enough to see the button at work.
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 1500,
                                                       "downloadThroughput": -1,
                                                       "uploadThroughput": -1})
        button.click()
        expect(button).to_have_text("Retrying…", use_inner_text=True)
        page.screenshot(path=OUT / "dashboard-mid-retry.png", full_page=True)
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                       "downloadThroughput": -1,
                                                       "uploadThroughput": -1})
        expect(page.locator("#full-pass-banner")).to_contain_text("Memory", timeout=30_000)
        page.screenshot(path=OUT / "dashboard-after-retry.png", full_page=True)

        page.goto("/operations/metrics/?by=region")
        page.screenshot(path=OUT / "metrics.png", full_page=True)
        browser.close()


def main():
    port = free_port()
    with tempfile.TemporaryDirectory() as var:
        env = {**os.environ, "REBOUND_VAR_DIR": var, "DATABASE_URL": "", "REDIS_URL": ""}
        run = subprocess.Popen([sys.executable, "manage.py", "run", "--port", str(port),
                                "--inference-port", str(free_port())],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            wait_until_up(f"http://127.0.0.1:{port}")
            shoot(f"http://127.0.0.1:{port}")
        finally:
            run.send_signal(signal.SIGINT)
            run.wait(timeout=30)
    print("saved:", ", ".join(sorted(p.name for p in OUT.glob("*.png"))))


if __name__ == "__main__":
    main()
