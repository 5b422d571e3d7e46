"""Statements run prepared on Django's PostgreSQL connection: parsed and planned once per
connection, their values bound on the server. Django's own queries render every value into
the statement's text on the client and are planned at each call; for the few statements run
once per operation (`fastpath`, the producer's count in `delivery`) that cost more than
running them."""
import psycopg
from django.db import DEFAULT_DB_ALIAS, connections


def db():
    """Django's default connection itself: its proxy (`django.db.connection`) costs a lookup
    per attribute, and the hot path reads dozens."""
    return connections[DEFAULT_DB_ALIAS]


def on_postgres() -> bool:
    return db().vendor == "postgresql"


def fetchone(sql: bytes, params):
    """The first row of `sql` (bytes: psycopg would encode and hash a text statement again at
    each call), run prepared on Django's connection, in its transaction, with its errors.
    Django's queries are never prepared: a threshold no count reaches leaves preparing to the
    statements run here."""
    connection = db()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = 2**31
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()
