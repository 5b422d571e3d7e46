"""Full-pass benchmark: time and peak memory of the worker for large exports, beside a bare
ijson streaming parse and json.load of the same file, and the cost of a retry after a failure
at 90 %.

    .venv/bin/python bench/import_bench.py [--sizes 50,300]

Needs PostgreSQL at 127.0.0.1:5432 (database `rebound_bench` is dropped and recreated).
Exports are generated into bench/out/ (kept between runs). Each measured step runs in a fresh
process, so its peak RSS is its own.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.engine_bench import ROOT, broker_env, recreate_database  # noqa: E402

OUT = ROOT / "bench" / "out"


def peak_rss_mb() -> float:
    """This process's own peak RSS. Linux carries ru_maxrss over from the parent across fork
    and exec, so the high-water mark of this process's memory (VmHWM) is read where it exists."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_export(path):
    """The conversations.json itself, or streamed out of its ZIP."""
    if str(path).endswith(".zip"):
        return zipfile.ZipFile(path).open("conversations.json")
    return open(path, "rb")


def bare_parse(path):
    import ijson

    count = 0
    for _ in ijson.get_backend("yajl2_c").items(open_export(path), "item", use_float=True):
        count += 1
    return {"count": count}


def json_load(path):
    with open_export(path) as f:
        return {"count": len(json.load(f))}


def run_operation(operation_id):
    import django

    django.setup()
    from operations import runner
    from operations.models import Operation

    started = time.perf_counter()  # the operation's own time, after Django has loaded
    outcome = runner.run(operation_id)
    elapsed = time.perf_counter() - started
    operation = Operation.objects.get(pk=operation_id)
    return {"outcome": outcome, "result": operation.result if outcome == "completed" else None,
            "op_seconds": elapsed}


def measured(step, arg) -> dict:
    """Run one step in a fresh process: its wall time and peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--step", step, arg], cwd=ROOT,
                         env=os.environ, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{step} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare(path, fault_at=None):
    """Upload the export (validation + storage), run the quick pass; return the full pass id."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files import File

    from imports.passes import accept_upload
    from operations import runner

    user, _ = get_user_model().objects.get_or_create(username=f"bench-{time.time_ns()}")
    fault = {"at": fault_at, "error": "permanent", "retry_numbers": [0]} if fault_at else None
    with open(path, "rb") as f:
        profile = accept_upload(user, File(f, name=Path(path).name), fault=fault)
    runner.run(profile.quick_pass_operation_id)
    return str(profile.full_pass_operation_id), profile


def median_run(run, repeat: int) -> dict:
    results = sorted((run() for _ in range(repeat)), key=lambda r: r["seconds"])
    return results[len(results) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,300", help="export sizes in MB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (median)")
    parser.add_argument("--s3", action="store_true",
                        help="store the exports as ZIPs in S3 (a SeaweedFS started here)")
    parser.add_argument("--step", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        step, arg = args.step
        started = time.perf_counter()
        result = {"bare": bare_parse, "load": json_load, "op": run_operation}[step](arg)
        elapsed = result.pop("op_seconds", time.perf_counter() - started)
        print(json.dumps({**result, "seconds": elapsed, "rss_mb": peak_rss_mb()}))
        return

    # One operation per run (no draining), so each step runs and measures exactly its own.
    env = {**broker_env("orm"), "REBOUND_STORAGE_DIR": str(OUT / "storage"),
           "REBOUND_DRAIN_SECONDS": "0"}
    os.environ.update(env)
    with object_storage() if args.s3 else nullcontext():
        rows = measure_sizes(args)
    storage = "ZIP exports in S3 (SeaweedFS, ranged GETs)" if args.s3 else "exports on local disk"
    print_table(rows, args, storage)


def measure_sizes(args) -> list:
    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from operations.services import retry_operation

    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for mb in [int(x) for x in args.sizes.split(",")]:
        path = OUT / f"export-{mb}mb.{'zip' if args.s3 else 'json'}"
        if not path.exists():
            subprocess.run([sys.executable, str(ROOT / "bench" / "export_generator.py"), str(path),
                            "--mb", str(mb), *(["--zip"] if args.s3 else [])], check=True)
        # The machine is shared by two cores' worth of everything: take the median of three.
        bare = median_run(lambda: measured("bare", str(path)), args.repeat)
        load = measured("load", str(path))
        full = median_run(lambda: measured("op", prepare(path)[0]), args.repeat)
        failing_id, profile = prepare(path, fault_at=int(bare["count"] * 0.9))
        failed = measured("op", failing_id)
        child = retry_operation(failing_id, by=profile.user, channel="api")
        retry = measured("op", str(child.pk))
        assert full["outcome"] == "completed" and failed["outcome"] == "failed", (full, failed)
        assert retry["outcome"] == "completed" and retry["result"]["resumed_by"] == "offset"
        rows.append((mb, bare["count"], bare, load, full, failed, retry))
    return rows


def object_storage():
    """A SeaweedFS for the run, and the settings that put uploads in its bucket."""
    from contextlib import contextmanager

    from tests.seaweed import client, seaweedfs

    @contextmanager
    def running():
        data = OUT / "seaweed"
        shutil.rmtree(data, ignore_errors=True)  # a fresh bucket each run
        data.mkdir(parents=True)
        with seaweedfs(data) as endpoint:
            client(endpoint).create_bucket(Bucket="rebound-bench")
            os.environ.update({"REBOUND_S3_BUCKET": "rebound-bench",
                               "REBOUND_S3_ENDPOINT": endpoint, "REBOUND_S3_ACCESS_KEY": "rebound",
                               "REBOUND_S3_SECRET_KEY": "rebound-secret"})
            yield

    return running()


def print_table(rows, args, storage):
    print(f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; PostgreSQL; {storage}; "
          "synthetic ChatGPT exports (bench/export_generator.py); each step a fresh process; "
          f"bare parse and full pass: median of {args.repeat}")
    print("| export | conversations | bare ijson parse | json.load | full pass | full ÷ parse "
          "(≤ 3×) | full pass peak RSS (≤ 150 MB) | fail at 90 % then retry | retry ÷ full (≤ 20 %) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mb, count, bare, load, full, failed, retry in rows:
        print(f"| {mb} MB | {count} | {bare['seconds']:.1f} s, {bare['rss_mb']:.0f} MB | "
              f"{load['seconds']:.1f} s, {load['rss_mb']:.0f} MB | {full['seconds']:.1f} s | "
              f"{full['seconds'] / bare['seconds']:.2f}× | {full['rss_mb']:.0f} MB | "
              f"{failed['seconds']:.1f} s, then {retry['seconds']:.1f} s "
              f"(peak {retry['rss_mb']:.0f} MB) | {retry['seconds'] / full['seconds']:.0%} |")


if __name__ == "__main__":
    main()
