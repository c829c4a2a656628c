"""The two image storage backends (images/storage.py) against real servers: a folder
on disk, and moto's standalone S3 server reached by the real boto3 client.

Each test runs on both: they must behave the same, since images/bookkeeping.py
only ever talks to the interface.
"""

import time

import pytest

from images.storage import FileStorage, S3Storage, StorageUnavailable, check_key, make_storage, parse_location
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, s3_settings

KEY = "a" * 64 + "-0123456789abcdef.jpg"
THUMB = "a" * 64 + "-0123456789abcdef.thumb.jpg"


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return FileStorage(tmp_path / "images")
    endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
    return make_storage(s3_settings(endpoint, bucket, prefix="some/prefix"), str(tmp_path))


def test_put_stream_exists_delete(store):
    assert not store.exists(KEY)
    store.put(KEY, b"\xff\xd8\xff" + b"x" * 200_000, "image/jpeg")
    assert store.exists(KEY)
    chunks, length = store.stream(KEY)
    data = b"".join(chunks)
    assert length == len(data) == 200_003 and data.startswith(b"\xff\xd8\xff")
    store.delete(KEY)
    assert not store.exists(KEY)
    store.delete(KEY)  # deleting what is gone is not an error


def test_keys_lists_every_object_with_its_age(store):
    before = time.time() - 60
    store.put(KEY, b"1", "image/jpeg")
    store.put(THUMB, b"2", "image/jpeg")
    listed = dict(store.keys())
    assert set(listed) == {KEY, THUMB}
    assert all(before <= modified <= time.time() + 60 for modified in listed.values())


def test_put_replaces_whole(store):
    store.put(KEY, b"old" * 1000, "image/jpeg")
    store.put(KEY, b"new", "image/jpeg")
    chunks, _ = store.stream(KEY)
    assert b"".join(chunks) == b"new"


def test_stream_of_a_missing_object_is_file_not_found(store):
    with pytest.raises(FileNotFoundError):
        chunks, _ = store.stream(KEY)
        b"".join(chunks)


@pytest.mark.parametrize(
    "bad",
    ["../../etc/passwd", "x.jpg", "A" * 64 + "-0123456789abcdef.jpg", KEY + "/../x", KEY.replace(".jpg", ".svg"), ""],
)
def test_only_server_made_keys_are_accepted(store, bad):
    with pytest.raises(ValueError):
        store.put(bad, b"x", "image/jpeg")


def test_file_layout_is_two_levels_and_readable_by_nginx(tmp_path):
    store = FileStorage(tmp_path)
    store.put(KEY, b"x", "image/jpeg")
    path = tmp_path / "aa" / KEY
    assert path.read_bytes() == b"x"
    assert path.stat().st_mode & 0o044 == 0o044
    assert store.relative_path(KEY) == f"aa/{KEY}"
    assert [p.name for p in path.parent.iterdir()] == [KEY]  # no temporary file left


def test_s3_objects_live_under_the_prefix(s3_endpoint, s3_bucket, tmp_path):
    store = make_storage(s3_settings(s3_endpoint, s3_bucket, prefix="/shop/images/"), str(tmp_path))
    assert isinstance(store, S3Storage)
    store.put(KEY, b"x", "image/jpeg")
    listed = store.client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [entry["Key"] for entry in listed] == [f"shop/images/{KEY}"]
    head = store.client.head_object(Bucket=s3_bucket, Key=f"shop/images/{KEY}")
    assert head["ContentType"] == "image/jpeg"


def test_an_unreachable_s3_is_503(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = make_storage(
        {
            "IMAGE_STORAGE": "s3://nowhere/x",
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        },
        str(tmp_path),
    )
    with pytest.raises(StorageUnavailable) as caught:
        store.put(KEY, b"x", "image/jpeg")
    assert caught.value.status == 503


def test_an_unreachable_s3_answers_503_through_the_api(make_app, tmp_path, users):
    import io
    import socket

    from tests.support import image_samples as samples

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = make_app(
        IMAGE_STORAGE="s3://nowhere/x",
        S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
    )
    client = app.test_client()
    users.client = client
    user = users.create("s3user")
    store_id = client.post("/store/shop", headers=user["headers"]).get_json()["id"]
    client.post("/item/chair", json={"price": 1, "store_id": store_id}, headers=user["headers"])
    response = client.put(
        "/item/chair/image",
        headers=user["headers"],
        content_type="multipart/form-data",
        data={"image": (io.BytesIO(samples.jpeg()), "a.jpg")},
    )
    assert (response.status_code, response.get_json()["error"]) == (503, "service_unavailable")
    assert response.headers["Retry-After"] == "5"
    assert client.get("/item/chair", headers=user["headers"]).get_json()["image_url"] is None


@pytest.mark.parametrize(
    "location, expected",
    [
        (None, ("file", "/inst/images")),
        ("file:///srv/images", ("file", "/srv/images")),
        ("s3://bucket", ("s3", ("bucket", ""))),
        ("s3://bucket/pre/fix", ("s3", ("bucket", "/pre/fix"))),
    ],
)
def test_image_storage_setting(location, expected):
    assert parse_location(location, "/inst") == expected


@pytest.mark.parametrize("location", ["images/", "file://relative/x", "http://bucket", "s3:///nobucket"])
def test_a_wrong_image_storage_setting_refuses_to_start(location):
    with pytest.raises(RuntimeError):
        parse_location(location, "/inst")


def test_check_key():
    assert check_key(KEY) == KEY
    assert check_key(THUMB) == THUMB
