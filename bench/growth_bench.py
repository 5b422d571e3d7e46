"""History at scale: do the staff surfaces stay flat as history grows?

    .venv/bin/python bench/growth_bench.py                       # 100,000 and 1,000,000 rows
    .venv/bin/python bench/growth_bench.py --sizes 100000,1000000,10000000

For each size, on PostgreSQL (database `rebound_growth`, dropped and recreated): operations are
written with SQL (one attempt each, over 40 days, 50 owners, one of whom owns a tenth of them,
6 kinds, 4 regions; mostly completed, some failed, cancelled, retried or live), counted into
the rollups with `rebuild_metrics`, and each surface is timed in-process through Django's test
client (median of --repeat requests after 2 warm-ups; no network): `/metrics`, the metrics page,
the admin's operation list (all and failed only), the heavy owner's API list (all and failed)
and their operations page. Then a prune with the default 30 days: what it deleted, how long it
took, the table sizes before and after, and whether `/metrics` read the same.
The goal: each median within 150 ms at 1 M rows and within 2× of its time at 100,000.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "rebound_growth"
URL = f"postgres://postgres@127.0.0.1:5432/{DB}"
KINDS = ["executions.answer", "interview.question_generation", "interview.feedback_analysis",
         "batches.ai_feedback", "imports.full_pass", "diagnostics.flaky"]
REGIONS = ["us-east", "eu-west", "asia-pacific", "sa-east"]
SURFACES = [
    ("/metrics (Prometheus scrape)", "staff", "/metrics"),
    ("metrics page, last 24 h", "staff", "/operations/metrics/"),
    ("metrics page, last 30 days by region", "staff", "/operations/metrics/?window=30d&by=region"),
    ("admin operation list", "staff", "/admin/operations/operation/"),
    ("admin operation list, failed only", "staff", "/admin/operations/operation/?status=failed"),
    ("API list of the heavy owner", "heavy", "/api/v1/operations/"),
    ("API list of the heavy owner, failed", "heavy", "/api/v1/operations/?status=failed"),
    ("the heavy owner's operations page", "heavy", "/operations/"),
]


def recreate_database():
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        db.execute(f"CREATE DATABASE {DB}")


FILL = """
INSERT INTO operations_operation (
    id, kind, owner_id, status, input, progress_done, error_code, error_message, error_detail,
    attempt_count, attempts_waived, max_attempts, dependency, next_trigger, enqueued_at,
    lease_holder, followup_due, rolled_up, retry_number, is_retry, channel, retry_reason,
    created_at, updated_at, started_at, finished_at)
SELECT gen_random_uuid(), (%(kinds)s::text[])[1 + i %% 6],
       CASE WHEN i %% 10 = 0 THEN %(heavy)s ELSE (%(owners)s::int[])[1 + i %% 49] END,
       CASE WHEN i %% 100 < 85 THEN 'completed' WHEN i %% 100 < 98 THEN 'failed'
            ELSE 'cancelled' END,
       jsonb_build_object('region', (%(regions)s::text[])[1 + (i / 7) %% 4]), 0,
       CASE WHEN i %% 100 BETWEEN 85 AND 97 THEN 'ai_unavailable' ELSE '' END, '', '',
       1 + (i %% 13 = 0)::int, 0, 4, '', 'first', at, '', false, true,
       (i %% 50 = 0)::int, i %% 50 = 0, CASE WHEN i %% 50 = 0 THEN 'web' ELSE 'auto' END, '',
       at, at, at, at + make_interval(secs => 0.2 + (i %% 97) / 4.0)
FROM (SELECT i, now() - make_interval(secs => 40 * 86400.0 * i / %(total)s) AS at
      FROM generate_series(%(start)s, %(stop)s) AS i) AS rows
"""

ATTEMPTS = """
INSERT INTO operations_attempt (operation_id, number, trigger, started_at, finished_at, outcome,
    error_code, error_message, error_detail, worker, dependency, dependency_down, rolled_up)
SELECT id, 1, 'first', created_at, finished_at,
       CASE status WHEN 'completed' THEN 'succeeded' WHEN 'failed' THEN 'transient'
            ELSE 'permanent' END, error_code, '', '', 'bench:1', '', false, true
FROM operations_operation
"""

LIVE = """
INSERT INTO operations_operation (id, kind, owner_id, status, input, progress_done, error_code,
    error_message, error_detail, attempt_count, attempts_waived, max_attempts, dependency,
    next_trigger, enqueued_at, lease_holder, followup_due, rolled_up, retry_number, is_retry,
    channel, retry_reason, created_at, updated_at, next_attempt_at)
SELECT gen_random_uuid(), 'diagnostics.flaky', %(heavy)s,
       (ARRAY['pending', 'retry_scheduled', 'waiting'])[1 + i %% 3], '{}'::jsonb, 0, '', '', '',
       0, 0, 4, CASE WHEN i %% 3 = 2 THEN 'inference:eu-west' ELSE '' END, 'first', now(), '',
       false, false, 0, false, 'auto', '', now(), now(),
       CASE WHEN i %% 3 = 1 THEN now() + interval '1 hour' END
FROM generate_series(1, 300) AS i
"""


def fill(size: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection

    User = get_user_model()
    staff = User.objects.create_user("staff", password="x", is_staff=True, is_superuser=True)
    heavy = User.objects.create_user("heavy", password="x")
    owners = [User.objects.create_user(f"owner{n}", password="x").pk for n in range(49)]
    started = time.perf_counter()
    step = 1_000_000
    with connection.cursor() as cursor:
        for start in range(1, size + 1, step):
            cursor.execute(FILL, {"kinds": KINDS, "regions": REGIONS, "owners": owners,
                                  "heavy": heavy.pk, "total": size, "start": start,
                                  "stop": min(size, start + step - 1)})
        cursor.execute(ATTEMPTS)
        cursor.execute(LIVE, {"heavy": heavy.pk})
        cursor.execute("VACUUM ANALYZE operations_operation")
        cursor.execute("VACUUM ANALYZE operations_attempt")
    return {"staff": staff, "heavy": heavy, "fill_s": time.perf_counter() - started}


def timed(client, path: str, repeat: int) -> float:
    for _ in range(2):
        assert client.get(path).status_code == 200, path
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, path
    return statistics.median(samples)


def sizes_of(tables) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        return {table: _size(cursor, table) for table in tables}


def _size(cursor, table) -> str:
    cursor.execute("SELECT pg_size_pretty(pg_total_relation_size(%s)), "
                   "(SELECT count(*) FROM " + table + ")", [table])
    pretty, rows = cursor.fetchone()
    return f"{rows:,} rows, {pretty}"


def measure(size: int, repeat: int) -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from operations import retention, rollups

    call_command("migrate", verbosity=0)
    users = fill(size)
    started = time.perf_counter()
    rollups.rebuild()
    rebuild_s = time.perf_counter() - started
    clients = {}
    for name in ("staff", "heavy"):
        clients[name] = Client(HTTP_HOST="127.0.0.1")
        clients[name].force_login(users[name])
    result = {"size": size, "fill_s": users["fill_s"], "rebuild_s": rebuild_s, "times": {}}
    for label, who, path in SURFACES:
        result["times"][label] = timed(clients[who], path, repeat)
    tables = ["operations_operation", "operations_attempt", "operations_rollup"]
    result["before"] = sizes_of(tables)
    scrape = _counters(clients["staff"])
    started = time.perf_counter()
    deleted = retention.prune()
    result["prune_s"] = time.perf_counter() - started
    result["deleted"] = dict(deleted)
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")
    result["after"] = sizes_of(tables)
    result["scrape_same"] = _counters(clients["staff"]) == scrape
    result["metrics_after_prune"] = timed(clients["staff"], "/metrics", repeat)
    return result


def _counters(client) -> list[str]:
    """The counter and histogram lines of a scrape (the live gauges may move)."""
    return [line for line in client.get("/metrics").content.decode().splitlines()
            if line.startswith(("rebound_operations_total", "rebound_attempts_total",
                                "rebound_time_to_success", "rebound_manual_retries"))]


def env() -> dict:
    return {**os.environ, "DATABASE_URL": URL, "DJANGO_SETTINGS_MODULE": "config.settings",
            "REBOUND_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}


def run(size: int, repeat: int) -> dict:
    recreate_database()
    out = subprocess.run([sys.executable, __file__, "--one", str(size), "--repeat", str(repeat)],
                         cwd=ROOT, env=env(), capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"size {size} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def table(results: list[dict]) -> str:
    sizes = [r["size"] for r in results]
    base = results[0]
    head = "| surface (median) | " + " | ".join(f"{s:,} rows" for s in sizes) + \
        f" | × from {sizes[0]:,} to the largest | goal met at 1 M (≤ 150 ms, ≤ 2×) |"
    rows = [head, "|" + "---|" * (len(sizes) + 3)]
    for label, _, _ in SURFACES:
        times = [r["times"][label] for r in results]
        ratio = times[-1] / base["times"][label]
        at_million = next((r["times"][label] for r in results if r["size"] == 1_000_000), None)
        met = "–" if at_million is None else (
            "yes" if at_million <= 0.150 and at_million <= 2 * base["times"][label] else "no")
        rows.append(f"| {label} | " + " | ".join(ms(t) for t in times) + f" | {ratio:.2f}× | {met} |")
    rows.append("| /metrics after the prune | " + " | ".join(ms(r["metrics_after_prune"])
                                                          for r in results) + " | | |")
    lines = ["\n".join(rows), "", "| size | fill (SQL) | rebuild_metrics | prune (30 days) "
             "| deleted | operations before → after | attempts before → after | rollups "
             "| /metrics counters the same after the prune |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        deleted = ", ".join(f"{n:,} {name}" for name, n in sorted(r["deleted"].items()) if n)
        lines.append(
            f"| {r['size']:,} | {r['fill_s']:.0f} s | {r['rebuild_s']:.1f} s | {r['prune_s']:.0f} s "
            f"| {deleted} | {r['before']['operations_operation']} → "
            f"{r['after']['operations_operation']} | {r['before']['operations_attempt']} → "
            f"{r['after']['operations_attempt']} | {r['after']['operations_rollup']} "
            f"| {'yes' if r['scrape_same'] else 'NO'} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.repeat)))
        return
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        results.append(run(size, args.repeat))
        print(f"measured {size:,} rows", file=sys.stderr, flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
