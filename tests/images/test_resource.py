"""Item images through the API: PUT / GET / HEAD / DELETE /item/<name>/image.

Every image is a real file made by Pillow (tests/support/image_samples.py), uploaded
through the Flask test client, stored by a real backend (a folder under the
test's tmp_path, or a bucket on moto's S3 server) and read back. The lifecycle
tests run on both backends and, like every test using `app`, on SQLite and
PostgreSQL.
"""

import io
import threading
import time

import pytest
from PIL import Image

from db import db
from images import bookkeeping
from models.item import ItemModel
from tests.support import image_samples as samples
from tests.support.s3 import s3_settings

# ---------------------------------------------------------------- fixtures ---


@pytest.fixture(params=["file", "s3"])
def backend(request, tmp_path):
    """Image storage settings: a local folder, or a fresh bucket on moto's server."""
    if request.param == "file":
        return {"IMAGE_STORAGE": f"file://{tmp_path / 'images'}"}
    bucket = request.getfixturevalue("s3_bucket")
    return s3_settings(request.getfixturevalue("s3_endpoint"), bucket)


@pytest.fixture
def app(make_app, tmp_path):
    """The default app of this module: file storage in the test's own folder."""
    return make_app(IMAGE_STORAGE=f"file://{tmp_path / 'images'}")


@pytest.fixture
def user(owner):
    """The owner of the `store` fixture: they may change its items' images."""
    return owner


@pytest.fixture
def item(client, store, user):
    response = client.post("/item/chair", json={"price": 12.5, "store_id": store["id"]}, headers=user["headers"])
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def objects(app):
    """Every object key in the app's image storage."""
    return sorted(key for key, _ in app.extensions["image_storage"].keys())


def upload(client, name, data, headers, filename="photo.jpg", content_type="image/jpeg"):
    """PUT the bytes as the multipart field `image`, as a browser form does."""
    return client.put(
        f"/item/{name}/image",
        headers=headers,
        content_type="multipart/form-data",
        data={"image": (io.BytesIO(data), filename, content_type)},
    )


def upload_raw(client, name, data, headers, content_type="image/jpeg"):
    return client.put(f"/item/{name}/image", headers=headers, data=data, content_type=content_type)


def opened(response):
    return Image.open(io.BytesIO(response.data))


# ------------------------------------------------------------------ routes ---


def test_item_a_slash_b_image_is_the_image_of_item_a_slash_b(client, store, user):
    assert (
        client.post("/item/a/b", json={"price": 1, "store_id": store["id"]}, headers=user["headers"]).status_code == 201
    )
    response = upload(client, "a/b", samples.jpeg(), user["headers"])
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["name"] == "a/b"
    assert body["image_url"].startswith("/item/a%2Fb/image?v=")
    for path in ("/item/a/b/image", "/item/a%2Fb/image", body["image_url"]):
        got = client.get(path)
        assert (got.status_code, got.mimetype) == (200, "image/jpeg"), path
    # The item itself is still at /item/a/b.
    assert client.get("/item/a/b", headers=user["headers"]).get_json()["image_url"] == body["image_url"]


@pytest.mark.parametrize("method", ["post", "put"])
def test_an_item_name_ending_in_slash_image_is_a_validation_error_on_name(client, store, user, method):
    # "/item/x%2Fimage%20" is no image route (a trailing space), but trims to "x/image".
    response = getattr(client, method)(
        "/item/x%2Fimage%20", json={"price": 1, "store_id": store["id"]}, headers=user["headers"]
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "validation_error"
    assert list(response.get_json()["errors"]) == ["name"]


def test_post_to_an_image_path_creates_no_item(app, client, store, user):
    # The item route never takes a name ending in /image: POST there reads as
    # creating an item named "chair/image", which the contract refuses (400).
    for path in ("/item/chair/image", "/item/chair%2Fimage"):
        response = client.post(path, json={"price": 1, "store_id": store["id"]}, headers=user["headers"])
        assert (response.status_code, response.get_json()["error"]) == (400, "validation_error")
        assert list(response.get_json()["errors"]) == ["name"]
    assert client.get("/items", headers=user["headers"]).get_json()["total"] == 0


def test_items_have_image_url_null_without_an_image(client, item, user, store):
    assert item["image_url"] is None
    assert set(item) == {"id", "name", "price", "store_id", "image_url"}
    assert client.get("/item/chair", headers=user["headers"]).get_json()["image_url"] is None
    assert client.get("/items", headers=user["headers"]).get_json()["items"][0]["image_url"] is None
    assert client.get("/store/shop").get_json()["items"][0]["image_url"] is None


# ------------------------------------------------------- good uploads ------


def test_jpeg_upload_drops_exif_and_gps(client, item, user, app):
    original = samples.jpeg_with_gps()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(samples.GPS_IFD)
    response = upload(client, "chair", original, user["headers"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["image_url"]
    stored = client.get("/item/chair/image")
    image = opened(stored)
    assert image.format == "JPEG"
    assert dict(image.getexif()) == {}
    assert b"Exif" not in stored.data and b"SpyCam" not in stored.data
    assert b"secret comment" not in stored.data
    assert len(objects(app)) == 2  # the image and its thumbnail


def test_png_keeps_its_transparency(client, item, user):
    assert (
        upload(
            client,
            "chair",
            samples.png_with_transparency(),
            user["headers"],
            filename="x.png",
            content_type="image/png",
        ).status_code
        == 200
    )
    image = opened(client.get("/item/chair/image"))
    assert image.format == "PNG" and image.mode == "RGBA"
    assert image.getpixel((10, 10))[3] == 0
    assert image.getpixel((150, 50)) == (0, 200, 0, 255)


def test_webp_is_accepted_and_stays_webp(client, item, user):
    assert upload_raw(client, "chair", samples.webp(), user["headers"], "image/webp").status_code == 200
    response = client.get("/item/chair/image")
    assert response.mimetype == "image/webp"
    assert opened(response).format == "WEBP"


def test_cmyk_jpeg_is_converted_to_rgb(client, item, user):
    assert upload(client, "chair", samples.cmyk_jpeg(), user["headers"]).status_code == 200
    assert opened(client.get("/item/chair/image")).mode == "RGB"


def test_exif_orientation_is_applied(client, item, user):
    assert upload(client, "chair", samples.rotated_jpeg(), user["headers"]).status_code == 200
    image = opened(client.get("/item/chair/image")).convert("RGB")
    assert image.size == (100, 300)
    # Orientation 6: the stored top-left corner is now the top-right one.
    red, green, blue = image.getpixel((95, 5))
    assert red > 200 and blue < 60
    assert dict(image.getexif()) == {}


def test_the_format_is_decided_by_the_bytes_not_the_declared_type(client, item, user):
    response = upload(
        client,
        "chair",
        samples.png_with_transparency(),
        user["headers"],
        filename="innocent.jpg",
        content_type="image/jpeg",
    )
    assert response.status_code == 200
    got = client.get("/item/chair/image")
    assert got.mimetype == "image/png" and opened(got).format == "PNG"


def test_client_file_name_never_reaches_storage(client, item, user, app):
    assert upload(client, "chair", samples.jpeg(), user["headers"], filename="../../etc/passwd.jpg").status_code == 200
    for key in objects(app):
        assert "passwd" not in key and ".." not in key


# ------------------------------------------------------- hostile uploads ----

HOSTILE = [
    ("truncated JPEG", samples.truncated_jpeg, "photo.jpg", 400, "validation_error"),
    ("SVG with a script", samples.svg_with_script, "logo.svg", 415, "unsupported_media_type"),
    ("HTML renamed .jpg", samples.html_named_jpg, "photo.jpg", 415, "unsupported_media_type"),
    ("GIF", samples.gif, "anim.gif", 415, "unsupported_media_type"),
    ("GIF/JavaScript polyglot", samples.gif_javascript_polyglot, "x.jpg", 415, "unsupported_media_type"),
    ("PDF", samples.pdf, "doc.jpg", 415, "unsupported_media_type"),
    ("zero bytes", lambda: b"", "empty.jpg", 400, "validation_error"),
    ("PNG declaring 50000 x 50000 pixels", samples.png_bomb, "bomb.png", 400, "validation_error"),
    ("RIFF file that is not WebP (WAVE)", samples.riff_wave, "sound.webp", 415, "unsupported_media_type"),
    # Under IMAGE_MAX_PIXELS, but too costly to decode (tests/images/test_decoding.py).
    ("lossless WebP of 6320 x 6320 in 34 bytes", samples.webp_lossless_bomb, "bomb.webp", 400, "validation_error"),
    ("animated WebP of 6320 x 6320 in 136 bytes", samples.animated_webp_bomb, "bomb.webp", 400, "validation_error"),
    (
        "palette PNG with transparency, 6320 x 6320",
        samples.transparent_palette_png_bomb,
        "b.png",
        400,
        "validation_error",
    ),
    ("progressive JPEG with 2,000 scans", samples.progressive_jpeg_bomb, "bomb.jpg", 400, "validation_error"),
    ("animated PNG", samples.apng, "anim.png", 400, "validation_error"),
    ("animated WebP", samples.animated_webp, "anim.webp", 400, "validation_error"),
]


@pytest.mark.parametrize("label, make, filename, status, error", HOSTILE, ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("as_multipart", [True, False], ids=["multipart", "raw"])
def test_hostile_files_get_their_answer_and_store_nothing(
    client, item, user, app, label, make, filename, status, error, as_multipart
):
    data = make()
    if as_multipart:
        response = upload(client, "chair", data, user["headers"], filename=filename)
    else:
        response = upload_raw(client, "chair", data, user["headers"], "image/jpeg")
    assert (response.status_code, response.get_json()["error"]) == (status, error), response.get_json()
    assert objects(app) == []
    assert client.get("/item/chair", headers=user["headers"]).get_json()["image_url"] is None


def test_image_uploads_are_limited_per_user(make_app, tmp_path, store, user, users):
    limited = make_app(IMAGE_STORAGE=f"file://{tmp_path / 'limited'}", IMAGE_UPLOAD_RATE_LIMIT="2 per minute")
    http = limited.test_client()
    assert (
        http.post("/item/chair", json={"price": 1, "store_id": store["id"]}, headers=user["headers"]).status_code == 201
    )
    # Refused uploads count too: what they cost is the reading and the checks.
    assert upload(http, "chair", samples.pdf(), user["headers"]).status_code == 415
    assert upload(http, "chair", samples.jpeg(), user["headers"]).status_code == 200
    refused = upload(http, "chair", samples.jpeg(), user["headers"])
    assert (refused.status_code, refused.get_json()["error"]) == (429, "rate_limited")
    assert int(refused.headers["Retry-After"]) > 0
    # Per user, not per address: another user who may change the item (an
    # admin), from the same address, still may.
    admin = users.create("boss", admin=True)
    assert upload(http, "chair", samples.jpeg(), admin["headers"]).status_code == 200


def test_the_pixel_limit_is_checked_before_decoding(client, item, user, make_app, tmp_path):
    small_limit = make_app(IMAGE_STORAGE=f"file://{tmp_path / 'px'}", IMAGE_MAX_PIXELS=1000)
    response = upload(small_limit.test_client(), "chair", samples.jpeg((100, 100)), user["headers"])
    assert response.status_code == 400
    assert "pixels" in response.get_json()["errors"]["image"]


def test_no_file_is_a_validation_error(client, item, user):
    response = client.put(
        "/item/chair/image",
        headers=user["headers"],
        content_type="multipart/form-data",
        data={"picture": (io.BytesIO(samples.jpeg()), "a.jpg")},
    )
    assert response.status_code == 400
    assert response.get_json()["errors"] == {"image": "Send exactly one file in the multipart field 'image'."}


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "image/gif", "application/octet-stream"])
def test_other_body_types_are_unsupported(client, item, user, content_type):
    response = client.put("/item/chair/image", headers=user["headers"], data=samples.jpeg(), content_type=content_type)
    assert (response.status_code, response.get_json()["error"]) == (415, "unsupported_media_type")


def test_over_image_max_bytes_is_413_and_stores_nothing(make_app, tmp_path, store, user, client):
    limited = make_app(IMAGE_STORAGE=f"file://{tmp_path / 'limited'}", IMAGE_MAX_BYTES=100_000)
    http = limited.test_client()
    assert (
        http.post("/item/chair", json={"price": 1, "store_id": store["id"]}, headers=user["headers"]).status_code == 201
    )
    big = samples.noisy_png((200, 200))  # ~120 KB
    assert len(big) > 100_000
    for response in (
        upload(http, "chair", big, user["headers"], content_type="image/png"),
        upload_raw(http, "chair", big, user["headers"], "image/png"),
    ):
        assert (response.status_code, response.get_json()["error"]) == (413, "payload_too_large")
    assert objects(limited) == []
    # Just under the limit is fine, though far over the global MAX_CONTENT_LENGTH (64 KB).
    fits = samples.noisy_png((180, 180))
    assert 65536 < len(fits) <= 100_000
    assert upload_raw(http, "chair", fits, user["headers"], "image/png").status_code == 200


def test_other_routes_keep_the_global_body_limit(client, item, user):
    response = client.put(
        "/item/chair", data=b"{" + b" " * 70_000 + b"}", content_type="application/json", headers=user["headers"]
    )
    assert response.status_code == 413


# ------------------------------------------------------------ serving ------


def test_get_sends_etag_cache_control_and_answers_304(client, item, user):
    body = upload(client, "chair", samples.jpeg(), user["headers"]).get_json()
    versioned = client.get(body["image_url"])
    assert versioned.status_code == 200
    etag = versioned.headers["ETag"]
    assert versioned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    plain = client.get("/item/chair/image")
    assert plain.headers["ETag"] == etag
    assert plain.headers["Cache-Control"] == "public, no-cache"
    again = client.get("/item/chair/image", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    weak = client.get("/item/chair/image", headers={"If-None-Match": f"W/{etag}"})
    assert weak.status_code == 304
    other = client.get("/item/chair/image", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200


def test_head_sends_the_headers_only(client, item, user):
    upload(client, "chair", samples.jpeg(), user["headers"])
    get, head = client.get("/item/chair/image"), client.head("/item/chair/image")
    assert head.status_code == 200 and head.data == b""
    assert head.headers["ETag"] == get.headers["ETag"]
    assert head.headers["Content-Length"] == str(len(get.data))
    assert head.mimetype == "image/jpeg"


def test_thumb_is_at_most_256_px(client, item, user):
    upload(client, "chair", samples.jpeg((1200, 500)), user["headers"])
    full, thumb = client.get("/item/chair/image"), client.get("/item/chair/image?size=thumb")
    assert opened(full).size == (1200, 500)
    assert opened(thumb).size == (256, 107)
    assert thumb.headers["ETag"] != full.headers["ETag"]
    assert client.get("/item/chair/image?size=huge").status_code == 400


def test_get_needs_no_token_and_404s(client, item, user):
    assert client.get("/item/chair/image").status_code == 404  # no image yet
    assert client.get("/item/chair/image").get_json()["error"] == "not_found"
    assert client.get("/item/nothing/image").status_code == 404
    upload(client, "chair", samples.jpeg(), user["headers"])
    assert client.get("/item/chair/image").status_code == 200


def test_behind_nginx_the_file_is_left_to_x_accel_redirect(make_app, tmp_path, store, user):
    accel = make_app(IMAGE_STORAGE=f"file://{tmp_path / 'accel'}", IMAGE_ACCEL_REDIRECT="/_images/")
    http = accel.test_client()
    http.post("/item/chair", json={"price": 1, "store_id": store["id"]}, headers=user["headers"])
    upload(http, "chair", samples.jpeg(), user["headers"])
    response = http.get("/item/chair/image")
    key = http.get("/item/chair", headers=user["headers"]).get_json()["image_url"]
    assert response.status_code == 200 and response.data == b""
    stored = sorted(k for k in objects(accel) if ".thumb." not in k)[0]
    assert response.headers["X-Accel-Redirect"] == f"/_images/{stored[:2]}/{stored}"
    assert response.mimetype == "image/jpeg" and response.headers["ETag"] and key


# --------------------------------------------------------------- auth ------


def test_put_and_delete_need_an_access_token(client, item):
    assert upload(client, "chair", samples.jpeg(), {}).status_code == 401
    assert client.delete("/item/chair/image").status_code == 401


def test_uploading_to_a_missing_item_is_404(client, user):
    assert upload(client, "nothing", samples.jpeg(), user["headers"]).status_code == 404


def test_another_user_may_not_change_the_image(client, item, users):
    other = users.create("stranger")
    response = upload(client, "chair", samples.jpeg(), other["headers"])
    assert (response.status_code, response.get_json()["error"]) == (403, "forbidden")


def test_another_user_may_not_delete_the_image(client, item, user, users):
    upload(client, "chair", samples.jpeg(), user["headers"])
    other = users.create("stranger")
    response = client.delete("/item/chair/image", headers=other["headers"])
    assert (response.status_code, response.get_json()["error"]) == (403, "forbidden")


def test_an_admin_may_change_any_items_image(client, item, users):
    admin = users.create("boss", admin=True)
    assert upload(client, "chair", samples.jpeg(), admin["headers"]).status_code == 200
    assert client.delete("/item/chair/image", headers=admin["headers"]).status_code == 200


# ------------------------------------------------ lifecycle (both backends) --


@pytest.fixture
def stored_app(make_app, backend):
    return make_app(**backend)


@pytest.fixture
def http(stored_app, store, user):
    client = stored_app.test_client()
    assert (
        client.post("/item/chair", json={"price": 1, "store_id": store["id"]}, headers=user["headers"]).status_code
        == 201
    )
    return client


def test_replacing_leaves_only_the_new_image(http, stored_app, user):
    first = upload(http, "chair", samples.jpeg(), user["headers"]).get_json()["image_url"]
    before = objects(stored_app)
    second = upload(http, "chair", samples.webp(), user["headers"]).get_json()["image_url"]
    after = objects(stored_app)
    assert first != second
    assert len(after) == 2 and not set(before) & set(after)
    response = http.get(second)
    assert response.status_code == 200 and response.mimetype == "image/webp"


def test_uploading_the_same_bytes_twice_leaves_one_image(http, stored_app, user):
    data = samples.jpeg()
    first = upload(http, "chair", data, user["headers"]).get_json()["image_url"]
    etag = http.get(first).headers["ETag"]
    second = upload(http, "chair", data, user["headers"]).get_json()["image_url"]
    # Every upload is stored as its own object (images/bookkeeping.py says why), so
    # the URL changes; the content, and so the ETag, does not.
    assert first != second
    assert http.get(second).headers["ETag"] == etag
    assert len(objects(stored_app)) == 2


def test_deleting_the_image_removes_its_objects(http, stored_app, user):
    upload(http, "chair", samples.jpeg(), user["headers"])
    response = http.delete("/item/chair/image", headers=user["headers"])
    assert response.status_code == 200
    assert response.get_json()["image_url"] is None
    assert objects(stored_app) == []
    assert http.get("/item/chair/image").status_code == 404
    # Deleting again: the item still has no image, so that is what it says.
    again = http.delete("/item/chair/image", headers=user["headers"])
    assert again.status_code == 200 and again.get_json()["image_url"] is None


def test_deleting_the_item_deletes_its_image(http, stored_app, user, users):
    upload(http, "chair", samples.jpeg(), user["headers"])
    admin = users.create("admin", admin=True)
    assert http.delete("/item/chair", headers=admin["headers"]).status_code == 200
    assert objects(stored_app) == []


def test_get_streams_the_stored_bytes(http, stored_app, user):
    upload(http, "chair", samples.png_with_transparency(), user["headers"], content_type="image/png")
    response = http.get("/item/chair/image")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert int(response.headers["Content-Length"]) == len(response.data)
    assert opened(response).size == (200, 100)
    head = http.head("/item/chair/image")
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == str(len(response.data))
    assert head.headers["ETag"] == response.headers["ETag"]


def test_interleaved_uploads_leave_one_image_and_no_orphan(http, stored_app, user):
    """Two uploads for one item, in the worst order: both write their objects,
    then commit one after the other. The second commit replaces the first, and
    deletes its objects: one image, nothing orphaned."""
    from images.decoding import process

    with stored_app.app_context():
        item_id = ItemModel.find_by_name("chair").id
        first, second = process(samples.jpeg(), 10**8), process(samples.webp(), 10**8)
        key_a = bookkeeping.write_objects(first)
        key_b = bookkeeping.write_objects(second)
        bookkeeping.discard(bookkeeping.swap(item_id, key_b))
        bookkeeping.discard(bookkeeping.swap(item_id, key_a))
        assert db.session.get(ItemModel, item_id).image_key == key_a
        assert objects(stored_app) == sorted(bookkeeping.object_keys(key_a))


def test_concurrent_uploads_leave_one_image_and_no_orphan(stored_app, http, user):
    """The same race through the API, on threads started together."""
    barrier = threading.Barrier(4)
    results = []

    def put(data):
        client = stored_app.test_client()
        barrier.wait()
        results.append(upload(client, "chair", data, user["headers"]).status_code)

    threads = [
        threading.Thread(target=put, args=(data,))
        for data in (samples.jpeg(), samples.webp(), samples.cmyk_jpeg(), samples.jpeg((64, 64)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(results) <= {200, 409}, results
    assert 200 in results
    with stored_app.app_context():
        key = ItemModel.find_by_name("chair").image_key
    assert objects(stored_app) == sorted(bookkeeping.object_keys(key))


def test_an_upload_for_an_item_deleted_meanwhile_removes_its_objects(http, stored_app, user):
    from images.decoding import process

    with stored_app.app_context():
        item_id = ItemModel.find_by_name("chair").id
        db.session.delete(db.session.get(ItemModel, item_id))
        db.session.commit()
        with pytest.raises(bookkeeping.ItemGone):
            bookkeeping.attach(item_id, process(samples.jpeg(), 10**8))
    assert objects(stored_app) == []


# --------------------------------------------------------------- sweep -----


def test_sweep_removes_only_old_unreferenced_objects(http, stored_app, user):
    from images.decoding import process

    upload(http, "chair", samples.jpeg(), user["headers"])
    with stored_app.app_context():
        kept = bookkeeping.object_keys(ItemModel.find_by_name("chair").image_key)
        orphan = bookkeeping.write_objects(process(samples.webp(), 10**8))  # as if the process died
        assert len(objects(stored_app)) == 4
        # Young orphans stay: their commit may still be on its way.
        assert bookkeeping.sweep(min_age_seconds=3600) == []
        deleted = bookkeeping.sweep(min_age_seconds=3600, now=time.time() + 7200)
    assert sorted(deleted) == sorted(bookkeeping.object_keys(orphan))
    assert objects(stored_app) == sorted(kept)


def test_sweep_command(http, stored_app, user):
    from images.decoding import process

    with stored_app.app_context():
        bookkeeping.write_objects(process(samples.webp(), 10**8))
    runner = stored_app.test_cli_runner()
    young = runner.invoke(args=["images", "sweep"])
    assert young.exit_code == 0, young.output
    assert "Deleted 0 orphaned image objects" in young.output
    result = runner.invoke(args=["images", "sweep", "--min-age", "0"])
    assert result.exit_code == 0, result.output
    assert "Deleted 2 orphaned image objects" in result.output
    assert objects(stored_app) == []
