"""Fixtures of the webhook tests."""

import pytest


@pytest.fixture
def admin(users):
    return users.create("admin", admin=True)
