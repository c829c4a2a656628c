"""PostgreSQL connections on the hot path: what a read costs in round trips
besides its own statement.

- No ping on every checkout. `pool_pre_ping` costs a `SELECT 1` round trip
  per request. A connection the server has closed (a restart, an idle
  timeout, `pg_terminate_backend`) is readable: the server's goodbye (or
  EOF) waits on its socket. `drop_closed_connections` looks at the socket
  without a round trip and hands such a connection back to the pool, which
  opens a new one; a connection idle longer than PING_AFTER_IDLE seconds
  (a firewall may have dropped it without a word) still gets the real ping.
- No BEGIN and ROLLBACK around a read. psycopg2 opens a transaction with a
  round trip of its own before a connection's first statement, and the
  request's end rolls it back with another. A plain SELECT in a GET or HEAD
  request runs in autocommit instead (`autocommit_reads`): under READ
  COMMITTED, PostgreSQL's default, every statement sees its own snapshot
  whether or not a transaction is open, so the answer is the same. Any other
  statement in such a request (a write, `SELECT ... FOR UPDATE`) turns
  autocommit off first, so it and what follows run in a transaction as
  before. Writes (POST, PUT, PATCH, DELETE) are not touched.
"""

import select
import sys
import time

from flask import has_request_context, request
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

from blacklist import READ_METHODS

# A connection idle longer than this is pinged for real before use.
PING_AFTER_IDLE = 30.0
LOCKING = (" FOR UPDATE", " FOR NO KEY UPDATE", " FOR SHARE", " FOR KEY SHARE")


def _is_psycopg2(dbapi_connection):
    # Not imported here: an app on SQLite never loads psycopg2.
    extensions = sys.modules.get("psycopg2.extensions")
    return extensions is not None and isinstance(dbapi_connection, extensions.connection)


def drop_closed_connections(dbapi_connection, connection_record, connection_proxy):
    """Pool checkout: refuse a connection the server has closed (see above)."""
    if not _is_psycopg2(dbapi_connection):
        return
    if dbapi_connection.closed:
        raise exc.DisconnectionError("connection closed")
    # Nothing may arrive on an idle connection but the server's goodbye.
    readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    if readable:
        raise exc.DisconnectionError("the server closed the connection")
    idle = time.monotonic() - connection_record.info.get("checked_in_at", time.monotonic())
    if idle > PING_AFTER_IDLE:
        # In autocommit: the ping alone, no BEGIN and ROLLBACK around it.
        in_transactions = not dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as e:
            raise exc.DisconnectionError("ping failed") from e
        finally:
            if in_transactions and not dbapi_connection.closed:
                dbapi_connection.autocommit = False


def note_checkin(dbapi_connection, connection_record):
    """Pool checkin: when it went idle; and transactions again for whoever is next."""
    connection_record.info["checked_in_at"] = time.monotonic()
    if connection_record.record_info.pop("autocommit_read", False):
        dbapi_connection.autocommit = False


def autocommit_reads(conn, cursor, statement, parameters, context, executemany):
    """before_cursor_execute: a read's plain SELECT runs without BEGIN (see above)."""
    raw = cursor.connection
    if not _is_psycopg2(raw) or not has_request_context() or request.method not in READ_METHODS:
        return
    plain_select = statement.lstrip().upper().startswith("SELECT") and not any(
        clause in statement.upper() for clause in LOCKING
    )
    if plain_select and not raw.autocommit and raw.info.transaction_status == 0:  # idle: no transaction open
        raw.autocommit = True
        conn.connection.record_info["autocommit_read"] = True
    elif not plain_select and raw.autocommit and conn.connection.record_info.get("autocommit_read"):
        raw.autocommit = False  # psycopg2 opens a transaction before this statement


def register_connections():
    """Once per process, for every engine (create_app calls it)."""
    for target, name, listener in (
        (Pool, "checkout", drop_closed_connections),
        (Pool, "checkin", note_checkin),
        (Engine, "before_cursor_execute", autocommit_reads),
    ):
        if not event.contains(target, name, listener):
            event.listen(target, name, listener)
