"""How many costly images are processed at once on one machine.

Decoding a large photo takes a worker's CPU for a few hundred milliseconds.
Two clients uploading such photos back to back would keep both workers of a
small server (make run, a Heroku dyno) busy, and every other request would
wait. So an image whose processing would hold more than IMAGE_HEAVY_BYTES
(images/decoding.py's estimate, from its header) takes one of
IMAGE_PROCESSING_SLOTS slots first: a lock file in the instance folder,
shared by every worker of the machine. When all are taken the upload is
refused at once, 503 `service_unavailable` with Retry-After, and the worker
goes back to other requests; the client sends it again. The lock is the
kernel's (flock): a worker that dies frees its slot.

IMAGE_PROCESSING_SLOTS 0 (the default) means one fewer than the worker
processes, and at least one (uWSGI: 1 of 2 on make run, 3 of 4 behind
Nginx); outside uWSGI (the test client, `flask run`) no limit.
"""

import fcntl
import os
from contextlib import contextmanager, nullcontext

from core.errors import ApiError

RETRY_AFTER_SECONDS = 1


def slot_count(config):
    """How many slots this machine has, or None for no limit."""
    if config["IMAGE_PROCESSING_SLOTS"]:
        return config["IMAGE_PROCESSING_SLOTS"]
    try:
        import uwsgi
    except ImportError:
        return None
    return max(1, uwsgi.numproc - 1)


def processing_slot(config, folder):
    """A context that holds a slot while an image is processed."""
    count = slot_count(config)
    return nullcontext() if count is None else _slot(folder, count)


@contextmanager
def _slot(folder, count):
    os.makedirs(folder, exist_ok=True)
    for number in range(count):
        descriptor = os.open(os.path.join(folder, f"image-slot-{number}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        try:
            yield
        finally:
            os.close(descriptor)  # and with it the lock
        return
    raise ApiError(
        503,
        "service_unavailable",
        "Other images are being processed. Try again in a second.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
