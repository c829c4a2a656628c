"""images/slots.py: a costly image is processed only in a free slot, and a
request that finds none is refused at once (503), while cheap images go on."""

import fcntl
import os
from contextlib import contextmanager

import pytest

from images.decoding import open_checked
from tests.support import image_samples as samples

COSTLY = samples.jpeg((3000, 2000))  # about 6 megapixels
CHEAP = samples.jpeg((320, 200))


@pytest.fixture
def app(make_app, tmp_path):
    return make_app(IMAGE_STORAGE=f"file://{tmp_path / 'images'}", IMAGE_PROCESSING_SLOTS=1)


@pytest.fixture
def item(client, store, owner):
    response = client.post("/item/chair", json={"price": 12.5, "store_id": store["id"]}, headers=owner["headers"])
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@contextmanager
def slot_taken(app):
    """Another worker of the machine holds the slot (the same lock file)."""
    os.makedirs(app.instance_path, exist_ok=True)
    descriptor = os.open(os.path.join(app.instance_path, "image-slot-0.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield
    finally:
        os.close(descriptor)


def put_image(client, headers, data):
    return client.put("/item/chair/image", headers=headers, data=data, content_type="image/jpeg")


def test_the_samples_are_on_either_side_of_the_threshold(app):
    heavy = app.config["IMAGE_HEAVY_BYTES"]
    assert open_checked(COSTLY, "JPEG", 40_000_000)[1] > heavy > open_checked(CHEAP, "JPEG", 40_000_000)[1]


def test_a_costly_image_without_a_free_slot_is_refused_at_once(app, client, item, owner):
    with slot_taken(app):
        refused = put_image(client, owner["headers"], COSTLY)
        cheap = put_image(client, owner["headers"], CHEAP)
    assert refused.status_code == 503, refused.get_json()
    assert refused.get_json()["error"] == "service_unavailable"
    assert refused.headers["Retry-After"] == "1"
    assert cheap.status_code == 200, cheap.get_json()
    assert client.get("/item/chair", headers=owner["headers"]).get_json()["image_url"] == cheap.get_json()["image_url"]
    # The slot free again: the same upload goes through, and leaves the slot free behind it.
    for _ in range(2):
        assert put_image(client, owner["headers"], COSTLY).status_code == 200


def test_without_a_limit_no_slot_is_taken(make_app, tmp_path, client, item, owner):
    """Outside uWSGI with IMAGE_PROCESSING_SLOTS 0 (the test client, flask run): no limit."""
    app = make_app(IMAGE_STORAGE=f"file://{tmp_path / 'images'}", IMAGE_PROCESSING_SLOTS=0)
    with slot_taken(app):
        assert put_image(app.test_client(), owner["headers"], COSTLY).status_code == 200
