"""Password hashing (core/passwords.py): stored hashes follow the configured cost."""

import sqlalchemy

from db import db
from tests.support.users import Users


def test_older_hashes_are_rehashed_at_login(make_app):
    weak = make_app(ARGON2_TIME_COST=1, ARGON2_MEMORY_COST=64)
    Users(weak, weak.test_client()).create("alice", password="password1")
    strong = make_app(ARGON2_TIME_COST=2, ARGON2_MEMORY_COST=128)

    def stored_hash():
        with strong.app_context():
            return db.session.execute(sqlalchemy.text("SELECT password_hash FROM users")).scalar_one()

    before = stored_hash()
    Users(strong, strong.test_client()).login("alice", "password1")
    after = stored_hash()
    assert "m=64,t=1" in before and "m=128,t=2" in after
    Users(strong, strong.test_client()).login("alice", "password1")
    assert stored_hash() == after  # rehashed once, not at every login
