"""Command-line tasks: `flask --app app make-admin USERNAME` and
`flask --app app images sweep [--min-age SECONDS]`.

Every command here needs the service's migrated database. Run on a server
without the service's environment (no DATABASE_URL), Flask falls back to the
development SQLite file; so each command first checks, without creating
anything, that the database is there and migrated, and otherwise stops with
one line saying what to do.
"""

import functools
from pathlib import Path

import click
import sqlalchemy
from flask import Flask, current_app
from flask.cli import with_appcontext

from db import db
from images import bookkeeping
from models.user import UserModel


def _database_problem() -> str | None:
    """Why the configured database cannot serve a command, or None if it can."""
    url = sqlalchemy.engine.make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    shown = url.render_as_string(hide_password=True)
    upgrade = "run `flask --app app db upgrade` (or check DATABASE_URL)."
    # SQLite creates a missing file on connect: look before connecting.
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).exists():
            return f"The database at {shown} does not exist; {upgrade}"
    try:
        tables = sqlalchemy.inspect(db.engine).get_table_names()
    except sqlalchemy.exc.OperationalError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else "connection failed"
        return f"Cannot reach the database at {shown} ({reason}); check DATABASE_URL."
    if UserModel.__tablename__ not in tables:
        return f"The database at {shown} has no tables; {upgrade}"
    return None


def needs_migrated_database(command):
    """Run `command` only once the database is there and migrated."""

    @functools.wraps(command)
    def checked(*args, **kwargs):
        problem = _database_problem()
        if problem:
            raise click.ClickException(problem)
        return command(*args, **kwargs)

    return checked


@click.command("make-admin")
@click.argument("username")
@with_appcontext
@needs_migrated_database
def make_admin(username):
    """Give USERNAME admin rights (effective at the user's next login)."""
    user = UserModel.find_by_username(username)
    if user is None:
        raise click.ClickException(f"No user named '{username}'.")
    user.is_admin = True
    db.session.commit()
    click.echo(f"User '{user.username}' is now an admin; the claim applies from their next login.")


@click.group("images")
def images():
    """Item image storage tasks."""


@images.command("sweep")
@click.option(
    "--min-age",
    default=3600,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seconds: younger objects are left alone (their upload may not have committed yet).",
)
@with_appcontext
@needs_migrated_database
def sweep(min_age):
    """Delete image objects no item references (left by a crash between an
    upload's write and its commit, or a failed delete)."""
    deleted = bookkeeping.sweep(min_age_seconds=min_age)
    for key in deleted:
        click.echo(f"deleted {key}")
    click.echo(f"Deleted {len(deleted)} orphaned image objects (older than {min_age} s).")


def register_commands(app: Flask):
    app.cli.add_command(make_admin)
    app.cli.add_command(images)
