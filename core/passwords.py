"""Password hashing: argon2id at the configured cost, and timing that does not
tell an unknown user from a wrong password."""

import ctypes
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app


def return_big_buffers_to_the_os():
    """argon2 allocates ARGON2_MEMORY_COST KiB per hash. glibc serves the first
    such block with mmap, then raises its mmap threshold when it is freed, so
    later ones come from the heap and stay in the worker's RSS (+19 MiB per
    worker for good). A fixed threshold keeps big blocks mmapped: returned to
    the OS as soon as they are freed."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc (musl, macOS): nothing to do
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 1024 * 1024)


class Passwords:
    """argon2id hashing with the app's configured cost."""

    def __init__(self, config):
        self.hasher = PasswordHasher(
            time_cost=config["ARGON2_TIME_COST"],
            memory_cost=config["ARGON2_MEMORY_COST"],
            parallelism=config["ARGON2_PARALLELISM"],
        )
        self._dummy_hash = None

    def hash(self, password):
        return self.hasher.hash(password)

    def needs_rehash(self, password_hash):
        """True when the hash was made with other parameters than today's."""
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def verify(self, password_hash, password):
        """True when `password` matches. With no hash (unknown user) it still
        spends one verification, so both failures take the same time."""
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = self.hasher.hash(uuid.uuid4().hex)
            password_hash = self._dummy_hash
            password = ""
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def register_passwords(app):
    """Called by create_app: the app's hasher, and big buffers freed to the OS."""
    return_big_buffers_to_the_os()
    app.extensions["passwords"] = Passwords(app.config)


def passwords():
    return current_app.extensions["passwords"]
