"""Command-line tasks: `flask --app app make-admin USERNAME`."""
import click
from flask import Flask
from flask.cli import with_appcontext

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


def register_commands(app: Flask):
    app.cli.add_command(make_admin)
