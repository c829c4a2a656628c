"""Command-line tasks: `flask --app app make-admin USERNAME` and
`flask --app app images sweep [--min-age SECONDS]`."""
import click
from flask import Flask
from flask.cli import with_appcontext

import item_images
from db import db
from models.user import UserModel


@click.command("make-admin")
@click.argument("username")
@with_appcontext
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
@click.option("--min-age", default=3600, show_default=True, type=click.IntRange(min=0),
              help="Seconds: younger objects are left alone (their upload may not have committed yet).")
@with_appcontext
def sweep(min_age):
    """Delete image objects no item references (left by a crash between an
    upload's write and its commit, or a failed delete)."""
    deleted = item_images.sweep(min_age_seconds=min_age)
    for key in deleted:
        click.echo(f"deleted {key}")
    click.echo(f"Deleted {len(deleted)} orphaned image objects (older than {min_age} s).")


def register_commands(app: Flask):
    app.cli.add_command(make_admin)
    app.cli.add_command(images)
