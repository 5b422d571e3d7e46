"""The engine's hot path on PostgreSQL, in as few round trips as the database allows: a new
operation's INSERT, a claim and its Attempt row in one statement, a completion and its
Attempt in one, and — for a worker draining the queue — a completion and the next claim in
one. Each is the same conditional write as the model methods (`Operation.claim_next`,
`Operation.complete`), which it uses on other databases: the row count decides, and a row
another claim holds is skipped (SKIP LOCKED), never waited for.

These statements run prepared (`operations.prepared`): planning them (a few CTEs over a table
with many indexes) cost more than running them."""
import uuid

from operations import gates, prepared
from operations.models import Operation, Status, lease_seconds

_FIELDS = [field for field in Operation._meta.concrete_fields]
_COLUMNS = ", ".join(f"o.{field.column}" for field in _FIELDS)
_ATTNAMES = [field.attname for field in _FIELDS]
_JSON = [i for i, field in enumerate(_FIELDS) if field.get_internal_type() == "JSONField"]

# Lock the candidate (or skip it if another claim holds it), move it to processing with a fresh
# lease from the database clock, count the attempt, insert its Attempt row.
_CLAIM = """
candidate AS (
    SELECT id FROM operations_operation WHERE status = 'pending'
      AND (dependency <> ALL(%(blocked)s) OR id = ANY(%(probes)s)) {which}
    LIMIT 1 FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE operations_operation AS o SET
        status = 'processing', lease_token = %(token)s, lease_holder = %(holder)s,
        lease_expires_at = statement_timestamp() + %(lease)s * interval '1 second',
        attempt_count = o.attempt_count + 1, next_attempt_at = NULL,
        started_at = COALESCE(o.started_at, statement_timestamp()),
        updated_at = statement_timestamp(), error_code = '', error_message = '',
        error_detail = ''
    FROM candidate WHERE o.id = candidate.id
    RETURNING {columns}
), attempt AS (
    INSERT INTO operations_attempt (operation_id, number, trigger, started_at, worker,
                                    error_code, error_message, error_detail, dependency,
                                    dependency_down)
    SELECT id, attempt_count, next_trigger, statement_timestamp(), %(holder)s, '', '', '',
           dependency, false
    FROM claimed
    RETURNING operation_id
)"""

# The fenced completion; its Attempt is closed only if it won. The Attempt is named by its
# unique key (operation, number), not through `finished`: a prepared statement keeps its
# generic plan for the connection's life, and one made while the table was small scanned it
# whole on every completion once it had grown.
_COMPLETE = """
finished AS (
    UPDATE operations_operation SET
        status = 'completed', result = %(result)s, error_code = '', error_message = '',
        error_detail = '', finished_at = statement_timestamp(), followup_due = %(followup)s,
        lease_token = NULL, lease_holder = '', lease_expires_at = NULL,
        updated_at = statement_timestamp()
    WHERE id = %(done)s AND status = 'processing' AND lease_token = %(done_token)s
    RETURNING id
), closed AS (
    UPDATE operations_attempt SET
        outcome = 'succeeded', finished_at = statement_timestamp(), delay_seconds = NULL,
        error_code = '', error_message = '', error_detail = ''
    WHERE operation_id = %(done)s AND number = %(number)s AND outcome IS NULL
      AND EXISTS (SELECT FROM finished)
    RETURNING 1
)"""

_QUEUE_ORDER = "ORDER BY started_at, enqueued_at, created_at"  # models.QUEUE_ORDER (NULLs last), indexed
_CLAIM_ONE = "WITH" + _CLAIM.format(which="AND id = %(pk)s", columns=_COLUMNS) + \
    "\nSELECT claimed.* FROM claimed, attempt"
_CLAIM_OLDEST = "WITH" + _CLAIM.format(which=_QUEUE_ORDER, columns=_COLUMNS) + \
    "\nSELECT claimed.* FROM claimed, attempt"
_COMPLETE_ONLY = "WITH" + _COMPLETE + "\nSELECT (SELECT count(*) FROM finished)"
_COMPLETE_AND_CLAIM = "WITH" + _COMPLETE + "," + _CLAIM.format(
    which=_QUEUE_ORDER, columns=_COLUMNS) + """
SELECT (SELECT count(*) FROM finished), claimed.*
FROM (SELECT 1) AS one LEFT JOIN claimed ON true"""
_CLAIM_ONE, _CLAIM_OLDEST, _COMPLETE_ONLY, _COMPLETE_AND_CLAIM = (
    sql.encode() for sql in (_CLAIM_ONE, _CLAIM_OLDEST, _COMPLETE_ONLY, _COMPLETE_AND_CLAIM))


# A new operation, bound on the server: Django's inserts render every value into the statement
# text on the client, which cost a producer more than the INSERT itself.
_INSERTED = [field for field in _FIELDS if field.attname != "enqueued_at"]
_INSERT = "INSERT INTO operations_operation ({}, enqueued_at) VALUES ({}, {}) RETURNING {}".format(
    ", ".join(field.column for field in _INSERTED), ", ".join(["%s"] * len(_INSERTED)),
    # enqueued_at: Now() as Django renders it, or NULL.
    "CASE WHEN %s THEN statement_timestamp() END", "enqueued_at").encode()


def create(**fields) -> Operation:
    """`Operation.objects.create(**fields)`, as one prepared INSERT on PostgreSQL; a field
    `enqueued_at` may be `Now()` (or None). Raises IntegrityError as `create` does."""
    enqueued, db = fields.pop("enqueued_at", None), prepared.db()
    if db.vendor != "postgresql":
        return Operation.objects.create(**fields, enqueued_at=enqueued)
    operation = Operation(**fields)
    values = [field.get_db_prep_save(field.pre_save(operation, True), db) for field in _INSERTED]
    operation.enqueued_at = prepared.fetchone(_INSERT, [*values, enqueued is not None])[0]
    operation._state.adding, operation._state.db = False, db.alias
    return operation


def _operation(row) -> Operation:
    values, db = list(row), prepared.db()
    for i in _JSON:
        values[i] = _FIELDS[i].from_db_value(values[i], None, db)
    return Operation.from_db(db.alias, _ATTNAMES, values)


def _claim_params(holder: str) -> dict:
    blocked, probes = gates.blocked()
    return {"token": uuid.uuid4(), "holder": holder, "lease": lease_seconds(),
            "blocked": list(blocked), "probes": [uuid.UUID(str(p)) for p in probes]}


def claim_next(holder: str, pk=None) -> Operation | None:
    """Claim operation `pk`, or the first pending one in the queue's order; None if there is
    none to claim. Operations whose dependency's gate is not closed are not claimed (but for
    each half-open gate's one probe)."""
    if not prepared.on_postgres():
        blocked, probes = gates.blocked()
        return Operation.claim_next(holder, pk, blocked=blocked, probes=probes)
    if pk is None:
        row = prepared.fetchone(_CLAIM_OLDEST, _claim_params(holder))
    else:
        row = prepared.fetchone(_CLAIM_ONE, {**_claim_params(holder), "pk": str(pk)})
    return _operation(row) if row else None


def complete(operation: Operation, token, number: int, result, *, also=None,
             then_claim_for: str | None = None) -> tuple[bool, Operation | None, bool]:
    """Complete `operation` (fenced by `token`; `also` as for `Operation.complete`); with
    `then_claim_for`, also claim the next pending operation for that holder in the same
    round trip where the database allows (elsewhere the caller claims it next). Returns
    (won, the operation claimed or None, whether the queue was looked at)."""
    db = prepared.db()
    if also is not None or db.vendor != "postgresql" or not db.get_autocommit():
        return operation.complete(token, number, result, also=also), None, False
    params = {"done": operation.pk, "done_token": token, "number": number,
              "followup": operation.has_followups(Status.COMPLETED),
              "result": Operation._meta.get_field("result").get_db_prep_save(result, db)}
    if then_claim_for is None:
        return prepared.fetchone(_COMPLETE_ONLY, params)[0] == 1, None, False
    row = prepared.fetchone(_COMPLETE_AND_CLAIM, {**params, **_claim_params(then_claim_for)})
    following = _operation(row[1:]) if row[1] is not None else None
    return row[0] == 1, following, True
