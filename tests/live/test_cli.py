"""`flask --app app <command>` on a server, the way an operator types it.

Run without the service's environment, or before `flask db upgrade`, a
command must stop with one line that says what to do, exit non-zero, and
leave nothing behind (no empty SQLite file), instead of a traceback.
"""

import subprocess

import pytest

from tests.live.conftest import BIN, ROOT, app_env

pytestmark = pytest.mark.live


def flask(env, *args):
    return subprocess.run(
        [str(BIN / "flask"), "--app", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_sqlite_database_is_one_line_and_not_created(tmp_path):
    path = tmp_path / "stores.db"
    result = flask(app_env(f"sqlite:///{path}", APP_ENV="development"), "make-admin", "alice")
    assert_one_line_error(result, f"sqlite:///{path}", "flask --app app db upgrade", "DATABASE_URL")
    assert not path.exists()


def test_unmigrated_postgres_is_one_line(empty_database):
    result = flask(app_env(empty_database), "make-admin", "alice")
    assert_one_line_error(result, "has no tables", "flask --app app db upgrade")


def test_unreachable_database_is_one_line_without_the_password(tmp_path):
    url = "postgresql://stores_api:hunter2secret@127.0.0.1:9/stores_api"
    result = flask(app_env(url), "make-admin", "alice")
    assert_one_line_error(result, "Cannot reach the database", "DATABASE_URL")
    assert "hunter2secret" not in result.stderr


def test_migrated_database_runs_the_command(empty_database):
    env = app_env(empty_database)
    assert flask(env, "db", "upgrade").returncode == 0
    result = flask(env, "make-admin", "alice")
    assert_one_line_error(result, "No user named 'alice'.")
