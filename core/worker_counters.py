"""The rate limits' counters in uWSGI's shared cache, for an instance with no
Redis: one count for all of its worker processes, so a limit of N is N
whatever WEB_CONCURRENCY is (per process, N workers would allow N times it).

uwsgi.ini declares the cache (`cache2 = name=stores-limits,...`). A limit's
key (which holds a username of up to 200 characters) is stored by its SHA-1,
so every key fits the cache's fixed key size. Each holds the moving window's
timestamps, packed as doubles; a read-modify-write runs under uWSGI's user
lock, shared by the instance's processes. A key keeps at most MAX_ENTRIES
timestamps, so a limit above that many per window is not enforced (no limit
this API ships comes near it). When the cache is full its least recently
used keys go first.

Several instances (machines) still count apart: set REDIS_URL for that.
"""

import hashlib
import struct
import time

from limits.storage import MovingWindowSupport, Storage

try:  # only importable inside a uWSGI process
    import uwsgi
except ImportError:  # pragma: no cover - outside uWSGI
    uwsgi = None

CACHE = "stores-limits"
MAX_ENTRIES = 512  # 4 KiB of doubles: uwsgi.ini's blocksize


def cache_key(key):
    return hashlib.sha1(key.encode()).hexdigest()


def available():
    """Whether this process runs under a uWSGI that declares the cache."""
    if uwsgi is None:
        return False
    declared = uwsgi.opt.get("cache2", [])
    declared = declared if isinstance(declared, list) else [declared]
    return any(f"name={CACHE},".encode() in option for option in declared)


class WorkerSharedStorage(Storage, MovingWindowSupport):
    """A `limits` storage for the moving window only (what core/rate_limits.py uses)."""

    STORAGE_SCHEME = ["uwsgi-cache"]

    @property
    def base_exceptions(self):
        return (OSError,)

    def _entries(self, key, now, expiry):
        raw = uwsgi.cache_get(cache_key(key), CACHE) or b""
        return [t for t in struct.unpack(f"{len(raw) // 8}d", raw) if t > now - expiry]

    def acquire_entry(self, key, limit, expiry, amount=1):
        if amount > limit:
            return False
        now = time.time()
        uwsgi.lock()
        try:
            entries = self._entries(key, now, expiry)
            if len(entries) + amount > limit:
                return False
            entries = (entries + [now] * amount)[-MAX_ENTRIES:]
            uwsgi.cache_update(cache_key(key), struct.pack(f"{len(entries)}d", *entries), int(expiry) + 1, CACHE)
            return True
        finally:
            uwsgi.unlock()

    def get_moving_window(self, key, limit, expiry):
        now = time.time()
        entries = self._entries(key, now, expiry)
        return (min(entries) if entries else now), len(entries)

    # The fixed-window half of the interface, which the moving window never calls.
    def incr(self, key, expiry, amount=1):
        raise NotImplementedError

    def get(self, key):
        raise NotImplementedError

    def get_expiry(self, key):
        raise NotImplementedError

    def check(self):
        return True

    def reset(self):
        uwsgi.cache_clear(CACHE)

    def clear(self, key):
        uwsgi.cache_del(cache_key(key), CACHE)
