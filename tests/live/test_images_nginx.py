"""Item images through the production Nginx config (deploy/nginx.conf):
Nginx -> uWSGI (uwsgi.ini:nginx) -> PostgreSQL, images on the local disk.

- Uploads: a file of exactly IMAGE_MAX_BYTES is accepted, one byte more is
  413 from the app, and a body over the route's client_max_body_size is 413
  from Nginx itself; every answer in the JSON envelope.
- A versioned image URL (image_url, ?v=<object key>) is sent by Nginx from
  the images folder without asking uWSGI, with the app's ETag and a year of
  Cache-Control; a conditional request goes to the app (304).
- An unversioned GET is sent by Nginx via X-Accel-Redirect: the app's answer
  over its own socket has an empty body, Nginx's has the bytes, with the
  app's ETag (not Nginx's) and Cache-Control; If-None-Match gives 304; HEAD
  works. Once deleted, both URLs are 404.
- The Postman collection postman/images.postman_collection.json (a real
  JPEG uploaded as a multipart file) passes through Nginx with newman.
"""

import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image

from tests.live.conftest import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    ROOT,
    UwsgiInstance,
    app_env,
    flask_cli,
    run_newman,
)
from tests.support import image_samples as samples
from tests.support import services
from tests.support.nginx_harness import NginxServer
from tests.support.uwsgi_client import uwsgi_request

pytestmark = pytest.mark.live

IMAGE_MAX_BYTES = 5242880
IMAGES_COLLECTION = ROOT / "postman" / "images.postman_collection.json"


class ImageDeployment:
    def __init__(self, env, instance, nginx, images_dir):
        self.env, self.instance, self.nginx, self.images_dir = env, instance, nginx, images_dir

    @property
    def url(self):
        return self.nginx.base_url

    def session(self):
        import requests

        s = requests.Session()
        s.trust_env = False
        s.verify = str(self.nginx.cert)
        return s


@pytest.fixture(scope="module")
def image_deployment(tmp_path_factory, nginx_bin):
    """One uWSGI instance behind Nginx, images in a folder Nginx's workers
    (another user when the master is root) can read: not under pytest's
    0700 tmp folders."""
    database_url = services.scratch_database("images_e2e")
    services.fresh_redis(services.REDIS_URL)
    shared = Path(tempfile.mkdtemp(prefix="stores-api-images-"))
    os.chmod(shared, 0o755)
    images_dir = shared / "images"
    env = app_env(
        database_url, services.REDIS_URL, IMAGE_STORAGE=f"file://{images_dir}", IMAGE_ACCEL_REDIRECT="/_images/"
    )
    flask_cli(env, "db", "upgrade")
    logs = tmp_path_factory.mktemp("images-deployment")
    instance = UwsgiInstance(env, logs, "uwsgi-images")
    nginx = NginxServer([f"127.0.0.1:{instance.port}"], prefix=shared / "nginx", images_dir=images_dir)
    try:
        instance.start()
        nginx.start()
        yield ImageDeployment(env, instance, nginx, images_dir)
    finally:
        nginx.stop()
        instance.stop()
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="module")
def item_path(image_deployment):
    """An item named "deploy/lamp" in a new store, and an access token for it."""
    http = image_deployment.session()
    url = image_deployment.url
    credentials = {"username": "image_uploader", "password": "image-uploader-password"}
    assert http.post(f"{url}/register", json=credentials).status_code == 201
    token = http.post(f"{url}/login", json=credentials).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    store = http.post(f"{url}/store/image_shop", headers=headers).json()
    response = http.post(f"{url}/item/deploy%2Flamp", json={"price": 3, "store_id": store["id"]}, headers=headers)
    assert response.status_code == 201, response.text
    return "deploy%2Flamp", headers


def padded_jpeg(total):
    """A real JPEG, padded after its end marker to exactly `total` bytes
    (decoders stop at the marker, so it is still the same valid image)."""
    data = samples.jpeg((640, 480))
    assert len(data) <= total
    return data + b"\0" * (total - len(data))


def test_upload_at_the_limit_is_accepted_and_one_byte_more_is_413(image_deployment, item_path):
    http, url = image_deployment.session(), image_deployment.url
    path, headers = item_path
    at_limit = padded_jpeg(IMAGE_MAX_BYTES)
    response = http.put(
        f"{url}/item/{path}/image", headers=headers, files={"image": ("lamp.jpg", at_limit, "image/jpeg")}
    )
    assert response.status_code == 200, response.text
    assert response.json()["image_url"]

    over = padded_jpeg(IMAGE_MAX_BYTES + 1)
    for kwargs in (
        {"files": {"image": ("lamp.jpg", over, "image/jpeg")}},
        {"data": over, "headers": {**headers, "Content-Type": "image/jpeg"}},
    ):
        kwargs.setdefault("headers", headers)
        answer = http.put(f"{url}/item/{path}/image", **kwargs)
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"] == "payload_too_large"
        assert "5242880" in answer.json()["message"]


def test_body_over_the_routes_nginx_limit_is_413_json_from_nginx(image_deployment, item_path):
    http, url = image_deployment.session(), image_deployment.url
    path, headers = item_path
    served_before = image_deployment.instance.served()
    answer = http.put(
        f"{url}/item/{path}/image", data=b"\0" * (6 * 1024 * 1024), headers={**headers, "Content-Type": "image/jpeg"}
    )
    assert answer.status_code == 413
    assert answer.json() == {"error": "payload_too_large", "message": "The image is larger than 5242880 bytes."}
    assert image_deployment.instance.served() == served_before  # never reached uWSGI


def test_other_routes_keep_the_64k_limit_through_nginx(image_deployment, item_path):
    http, url = image_deployment.session(), image_deployment.url
    path, headers = item_path
    answer = http.put(
        f"{url}/item/{path}", data=b"{" + b" " * 70000 + b"}", headers={**headers, "Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"] == "payload_too_large"


def test_versioned_url_is_sent_by_nginx_without_the_app(image_deployment, item_path):
    http, url = image_deployment.session(), image_deployment.url
    path, headers = item_path
    body = http.put(
        f"{url}/item/{path}/image", headers=headers, files={"image": ("x.jpg", samples.jpeg((900, 600)), "image/jpeg")}
    ).json()
    image_url, key = body["image_url"], body["image_url"].split("?v=")[1]
    stored = (image_deployment.images_dir / key[:2] / key).read_bytes()
    from_app = http.get(f"{url}/item/{path}/image")  # unversioned: the app answers

    served = image_deployment.instance.served()
    direct = http.get(f"{url}{image_url}")
    thumb = http.get(f"{url}{image_url}&size=thumb")
    head = http.head(f"{url}{image_url}")
    assert image_deployment.instance.served() == served  # uWSGI was not asked
    assert direct.status_code == 200 and direct.content == stored
    assert direct.headers["Content-Type"] == "image/jpeg"
    assert direct.headers["ETag"] == from_app.headers["ETag"] == f'"{key[:64]}"'
    assert direct.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert thumb.status_code == 200 and thumb.headers["ETag"] == f'"{key[:64]}-thumb"'
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 256
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(stored))

    # A conditional request goes to the app, which answers 304.
    again = http.get(f"{url}{image_url}", headers={"If-None-Match": direct.headers["ETag"]})
    assert again.status_code == 304
    # uWSGI counts a request just after sending its response: allow a moment.
    deadline = time.monotonic() + 3
    while image_deployment.instance.served() == served and time.monotonic() < deadline:
        time.sleep(0.05)
    assert image_deployment.instance.served() == served + 1

    # Only the server's own key form is ever turned into a path.
    for bad in ("../../../etc/passwd", key.replace(".jpg", ".txt"), key[:-5] + "/.jpg"):
        answer = http.get(f"{url}/item/{path}/image", params={"v": bad})
        assert answer.status_code == 200 and answer.content == stored  # the app's answer
        assert answer.headers["Cache-Control"] == "public, no-cache"


def test_unversioned_get_is_sent_by_nginx_via_x_accel_redirect_with_etag_and_304(image_deployment, item_path):
    http, url = image_deployment.session(), image_deployment.url
    path, headers = item_path
    http.put(
        f"{url}/item/{path}/image",
        headers=headers,
        files={"image": ("x.png", samples.png_with_transparency(), "image/png")},
    )
    plain = f"/item/{path}/image"

    # The app itself, asked over its socket, hands the file to Nginx.
    # (uwsgi_request puts the path into PATH_INFO as is: decode it, as Nginx does.)
    direct = uwsgi_request(image_deployment.instance.port, "GET", unquote(plain))
    assert direct.status == 200 and direct.body == b""
    accel = direct.headers["x-accel-redirect"]
    assert accel.startswith("/_images/")
    stored = (image_deployment.images_dir / accel.removeprefix("/_images/")).read_bytes()

    through_nginx = http.get(f"{url}{plain}")
    assert through_nginx.status_code == 200
    assert through_nginx.content == stored
    assert through_nginx.headers["Content-Type"] == "image/png"
    assert through_nginx.headers["ETag"] == direct.headers["etag"]
    assert through_nginx.headers["Cache-Control"] == "public, no-cache"
    assert "X-Accel-Redirect" not in through_nginx.headers
    assert Image.open(io.BytesIO(through_nginx.content)).mode == "RGBA"

    again = http.get(f"{url}{plain}", headers={"If-None-Match": through_nginx.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers["ETag"] == through_nginx.headers["ETag"]

    head = http.head(f"{url}{plain}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(stored))

    # The internal location cannot be asked for directly.
    assert http.get(f"{url}{accel}").status_code == 404


def test_a_deleted_image_is_404_on_both_urls(image_deployment, item_path):
    http, url = image_deployment.session(), image_deployment.url
    path, headers = item_path
    image_url = http.put(
        f"{url}/item/{path}/image", headers=headers, files={"image": ("x.webp", samples.webp(), "image/webp")}
    ).json()["image_url"]
    assert http.get(f"{url}{image_url}").headers["Content-Type"] == "image/webp"
    assert http.delete(f"{url}/item/{path}/image", headers=headers).status_code == 200
    for target in (f"/item/{path}/image", image_url):
        gone = http.get(f"{url}{target}")
        assert gone.status_code == 404 and gone.json()["error"] == "not_found", target


def test_images_postman_collection_passes_through_nginx(image_deployment, newman_bin, tmp_path):
    http = image_deployment.session()
    response = http.post(
        f"{image_deployment.url}/register", json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 201, response.text
    flask_cli(image_deployment.env, "make-admin", ADMIN_USERNAME)

    env_vars = {"base_url": image_deployment.url, "admin_username": ADMIN_USERNAME, "admin_password": ADMIN_PASSWORD}
    stats = run_newman(
        newman_bin,
        IMAGES_COLLECTION,
        tmp_path,
        "images, through Nginx",
        env_vars,
        "--working-dir",
        str(ROOT / "postman"),
        "--ssl-extra-ca-certs",
        str(image_deployment.nginx.cert),
    )
    assert stats["requests"]["total"] == len(json.loads(IMAGES_COLLECTION.read_text())["item"])
    assert stats["assertions"]["failed"] == 0
