"""Rate limits on the costly and guessable operations, and nothing else.

Built on the `limits` library's moving window (no burst at a window's edge),
in Redis when `REDIS_URL` is set (shared by every worker and instance), else
in this process's memory (documented: counts per process).

- `/register`: REGISTER_RATE_LIMIT per client address, every attempt counted,
  taken or not (a name check costs the caller as much as a new account).
- `/login` (and a wrong current password in `PUT /user/<id>/password`):
  * LOGIN_RATE_LIMIT attempts per client address;
  * LOGIN_RATE_LIMIT failures per (username, address);
  * LOGIN_USERNAME_FAILURE_LIMIT failures per username from all addresses —
    a looser ceiling that only refuses addresses that have themselves failed
    for that username. The right password from an address that has not
    failed is never refused because others failed: an attacker cannot lock
    the owner out.
"""

import math
import time

from flask import current_app, request
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from core.errors import ApiError


class RateLimits:
    def __init__(self, config):
        prefix = config["REDIS_KEY_PREFIX"] + "limits"
        # Shared by every worker and instance only in Redis.
        self.shared = bool(config.get("REDIS_URL"))
        if self.shared:
            from config import redis_options

            self.storage = storage_from_string(
                config["REDIS_URL"],
                key_prefix=prefix,
                socket_timeout=2,
                socket_connect_timeout=2,
                **redis_options(config),
            )
        else:
            self.storage = storage_from_string("memory://")
        self.window = MovingWindowRateLimiter(self.storage)
        self.register = parse(config["REGISTER_RATE_LIMIT"])
        self.login = parse(config["LOGIN_RATE_LIMIT"])
        self.username_failures = parse(config["LOGIN_USERNAME_FAILURE_LIMIT"])

    def ping(self):
        """Readiness: raise unless the counters' storage answers."""
        if not self.storage.check():
            raise ConnectionError("The rate limits' storage does not answer.")

    def _refuse(self, item, *keys):
        reset = self.window.get_window_stats(item, *keys).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests: limit is {item}. Try again later.",
            headers={"Retry-After": str(retry_after)},
        )

    def _failures(self, item, *keys):
        stats = self.window.get_window_stats(item, *keys)
        return item.amount - stats.remaining

    def hit_register(self):
        if not self.window.hit(self.register, "register", client_address()):
            self._refuse(self.register, "register", client_address())

    def check_login(self, username):
        """Before verifying a password for `username`: 429 when this address
        may not try (see the module docstring)."""
        address = client_address()
        if not self.window.hit(self.login, "login", address):
            self._refuse(self.login, "login", address)
        if not self.window.test(self.login, "login-failed", username, address):
            self._refuse(self.login, "login-failed", username, address)
        if (
            not self.window.test(self.username_failures, "login-failed", username)
            and self._failures(self.login, "login-failed", username, address) > 0
        ):
            self._refuse(self.username_failures, "login-failed", username)

    def login_failed(self, username):
        self.window.hit(self.login, "login-failed", username, client_address())
        self.window.hit(self.username_failures, "login-failed", username)


def client_address():
    return request.remote_addr or "unknown"


def rate_limits():
    return current_app.extensions["rate_limits"]
