"""The deployment as users run it: Nginx -> two uWSGI instances -> PostgreSQL + Redis.

- The Postman collection, run by newman through Nginx (HTTPS, the production
  config), passes every assertion, twice in a row on the same database.
- A logout made through Nginx is honoured by both instances, each asked
  directly over its own uwsgi socket: the access token, the refresh token and
  a token refreshed from them are all refused with 401 token_revoked.
- With one instance down, Nginx keeps serving from the other.
"""

import json
import time

import pytest

from tests.live.conftest import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    COLLECTION,
    flask_cli,
    run_newman,
)
from tests.support.uwsgi_client import uwsgi_request

pytestmark = pytest.mark.live


def count_requests(collection: dict) -> int:
    """Requests in a Postman collection, folders included."""
    return sum(count_requests(item) if "item" in item else 1 for item in collection["item"])


def test_postman_collection_passes_through_nginx(deployment, newman_bin, tmp_path):
    http = deployment.session()
    # The admin the collection expects, made the only way there is: the CLI.
    response = http.post(f"{deployment.url}/register", json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
    assert response.status_code == 201, response.text
    made = flask_cli(deployment.env, "make-admin", ADMIN_USERNAME)
    assert ADMIN_USERNAME in made.stdout

    # Twice over, on the same database: each run makes its own names.
    stats = run_newman(
        newman_bin,
        COLLECTION,
        tmp_path,
        "through Nginx",
        {"base_url": deployment.url, "admin_username": ADMIN_USERNAME, "admin_password": ADMIN_PASSWORD},
        "--ssl-extra-ca-certs",
        str(deployment.nginx.cert),
        "--iteration-count",
        "2",
    )
    assert stats["requests"]["failed"] == 0
    assert stats["iterations"]["total"] == 2
    assert stats["requests"]["total"] == 2 * count_requests(json.loads(COLLECTION.read_text()))
    assert stats["assertions"]["failed"] == 0
    # Every request has tests, and the collection-level checks run on each.
    assert stats["assertions"]["total"] >= 2 * stats["requests"]["total"]
    # Nginx spread the run over both instances.
    assert all(instance.served() > 0 for instance in deployment.instances)


def test_logout_through_nginx_is_refused_by_both_instances(deployment):
    http = deployment.session()
    url = deployment.url
    credentials = {"username": "scale_out_user", "password": "scale-out-password"}
    assert http.post(f"{url}/register", json=credentials).status_code == 201
    tokens = http.post(f"{url}/login", json=credentials).json()
    access = {"Authorization": f"Bearer {tokens['access_token']}"}
    refresh = {"Authorization": f"Bearer {tokens['refresh_token']}"}

    # Before the logout both instances, asked directly, accept the tokens
    # (so a refusal afterwards can only be the revocation).
    refreshed = {}
    for instance in deployment.instances:
        assert uwsgi_request(instance.port, "GET", "/items", headers=access).status == 200
        answer = uwsgi_request(instance.port, "POST", "/refresh", headers=refresh)
        assert answer.status == 200, answer.body
        refreshed[instance.port] = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    assert http.post(f"{url}/logout", headers=access).status_code == 200

    for instance in deployment.instances:
        for method, path, headers in [
            ("GET", "/items", access),
            ("POST", "/refresh", refresh),
            *[("GET", "/items", h) for h in refreshed.values()],
        ]:
            answer = uwsgi_request(instance.port, method, path, headers=headers)
            assert (answer.status, answer.json()["error"]) == (401, "token_revoked"), (
                f"{method} {path} on instance {instance.port}: {answer.status} {answer.body!r}"
            )

    # And through Nginx, whichever instance answers.
    served_before = [instance.served() for instance in deployment.instances]
    for _ in range(6):
        answer = http.get(f"{url}/items", headers=access)
        assert (answer.status_code, answer.json()["error"]) == (401, "token_revoked")
    served_after = [instance.served() for instance in deployment.instances]
    assert all(after > before for before, after in zip(served_before, served_after, strict=True)), (
        served_before,
        served_after,
    )


def test_nginx_serves_from_the_other_instance_when_one_is_down(deployment):
    http = deployment.session()
    first, second = deployment.instances
    first.stop()
    try:
        before = second.served()
        answers = [http.get(f"{deployment.url}/health/ready").status_code for _ in range(6)]
        assert answers == [200] * 6
        # uWSGI counts a request just after sending its response: allow a moment.
        deadline = time.monotonic() + 3
        while second.served() - before < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.served() - before == 6
    finally:
        first.start()
    assert http.get(f"{deployment.url}/health").status_code == 200


def test_docs_with_a_trailing_slash_through_nginx(deployment):
    """`/docs/` (as typed, or as some proxies add) leads to the page, not a 404."""
    http = deployment.session()
    response = http.get(f"{deployment.url}/docs/", allow_redirects=False, timeout=10)
    assert response.status_code == 308
    assert response.headers["Location"] in ("/docs", f"{deployment.url}/docs")
    page = http.get(f"{deployment.url}/docs/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
