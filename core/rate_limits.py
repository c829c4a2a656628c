"""Rate limits on the costly and guessable operations, and nothing else.

Built on the `limits` library's moving window (no burst at a window's edge),
in Redis when `REDIS_URL` is set (shared by every worker and instance); else,
under uWSGI, in its shared cache (shared by the instance's workers:
core/worker_counters.py); else (the test client, `flask run`) in this
process's memory.

- `/register`: REGISTER_RATE_LIMIT per client address, every attempt counted,
  taken or not (a name check costs the caller as much as a new account).
- `/login` without a device token (core/tokens.py) valid for that username:
  * LOGIN_RATE_LIMIT attempts per client address;
  * LOGIN_RATE_LIMIT failures per (username, address);
  * LOGIN_USERNAME_FAILURE_LIMIT failures per username from all addresses
    together: once it is spent, every such attempt gets 429, from whatever
    address. An attacker with a million addresses gets this budget, not a
    million guesses.
- `/login` with a valid device token for that username (the owner, on a
  device that has logged in before): only LOGIN_RATE_LIMIT failures per
  device. Nobody else's failures refuse it: the owner is never locked out.
- A wrong current password in `PUT /user/<id>/password` is a failure of the
  caller's login session, limited like a device's.
- `PUT /item/<name>/image`: IMAGE_UPLOAD_RATE_LIMIT per user id, every
  attempt counted (decoding an image is the costliest thing a user can ask).
"""

import ipaddress
import math
import time

from flask import current_app, request
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from core import worker_counters
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
        elif worker_counters.available():
            # Shared by this instance's workers (uWSGI's cache).
            self.storage = worker_counters.WorkerSharedStorage()
        else:
            self.storage = storage_from_string("memory://")
        self.window = MovingWindowRateLimiter(self.storage)
        self.register = parse(config["REGISTER_RATE_LIMIT"])
        self.login = parse(config["LOGIN_RATE_LIMIT"])
        self.username_failures = parse(config["LOGIN_USERNAME_FAILURE_LIMIT"])
        self.image_uploads = parse(config["IMAGE_UPLOAD_RATE_LIMIT"])

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

    def hit_register(self):
        if not self.window.hit(self.register, "register", client_address()):
            self._refuse(self.register, "register", client_address())

    def hit_image_upload(self, user_id):
        """Every `PUT /item/<name>/image` of this user counts, whatever its answer."""
        if not self.window.hit(self.image_uploads, "image-upload", str(user_id)):
            self._refuse(self.image_uploads, "image-upload", str(user_id))

    def check_login(self, username, device=None):
        """Before verifying a password for `username`: 429 when this attempt
        may not be made (see the module docstring). `device` names the
        trusted device or session the attempt comes from, if any."""
        if device is not None:
            if not self.window.test(self.login, "device-failed", device):
                self._refuse(self.login, "device-failed", device)
            return
        address = client_address()
        if not self.window.hit(self.login, "login", address):
            self._refuse(self.login, "login", address)
        if not self.window.test(self.login, "login-failed", username, address):
            self._refuse(self.login, "login-failed", username, address)
        if not self.window.test(self.username_failures, "login-failed", username):
            self._refuse(self.username_failures, "login-failed", username)

    def login_failed(self, username, device=None):
        if device is not None:
            self.window.hit(self.login, "device-failed", device)
            return
        self.window.hit(self.login, "login-failed", username, client_address())
        self.window.hit(self.username_failures, "login-failed", username)


def client_address():
    """The key of the client's address: an IPv4 address as it is, an IPv6
    address by its /64 (one customer's network: any VPS may pick from it)."""
    address = request.remote_addr or "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


def rate_limits():
    return current_app.extensions["rate_limits"]
