"""Rate limits (core/rate_limits.py), in process: registration per address,
login per address, per (username, address) and per username, and a wrong
current password counted like a failed login. Across uWSGI workers, with
Redis: tests/live/test_reliability.py."""

from tests.support.users import Users


def test_registration_is_limited_per_address_and_taken_names_count(make_app):
    client = make_app(REGISTER_RATE_LIMIT="3 per minute").test_client()
    here = {"REMOTE_ADDR": "10.1.1.1"}

    def register(name):
        return client.post("/register", json={"username": name, "password": "password1"}, environ_base=here).status_code

    assert [register("taken"), register("taken"), register("fresh")] == [201, 409, 201]
    # Probing names costs the same budget as creating accounts.
    refused = client.post("/register", json={"username": "taken", "password": "password1"}, environ_base=here)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    other = client.post(
        "/register", json={"username": "other", "password": "password1"}, environ_base={"REMOTE_ADDR": "10.1.1.2"}
    )
    assert other.status_code == 201


def test_login_limit_has_no_burst_at_the_window_edge(make_app, monkeypatch):
    """A moving window: 3 per minute means 3 in any 60 s, not 3 at 0:59 and 3 more at 1:00."""
    import time as real_time

    now = [1_000_000.0 + 59.0]
    monkeypatch.setattr(real_time, "time", lambda: now[0])
    client = make_app(LOGIN_RATE_LIMIT="3 per minute").test_client()

    def attempt():
        return client.post("/login", json={"username": "x", "password": "p"}).status_code

    assert [attempt() for _ in range(3)] == [401, 401, 401]
    now[0] += 2  # across a fixed window's boundary
    assert [attempt() for _ in range(3)] == [429, 429, 429]
    now[0] += 60
    assert attempt() == 401


def test_login_rate_limit_per_address(make_app):
    client = make_app(LOGIN_RATE_LIMIT="3 per minute").test_client()
    for _ in range(3):
        assert client.post("/login", json={"username": "x" + "y" * _, "password": "p"}).status_code == 401
    response = client.post("/login", json={"username": "another", "password": "p"})
    assert response.status_code == 429
    assert response.get_json()["error"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0


def login_status(client, address, username="Victim", password="guess-guess"):
    return client.post(
        "/login", json={"username": username, "password": password}, environ_base={"REMOTE_ADDR": address}
    ).status_code


def test_login_failures_limited_per_username_and_address(make_app):
    client = make_app(LOGIN_RATE_LIMIT="3 per minute", LOGIN_USERNAME_FAILURE_LIMIT="100 per minute").test_client()
    statuses = [login_status(client, "1.1.1.1", username) for username in ["victim"] * 3 + ["VICTIM"]]
    assert statuses == [401, 401, 401, 429]
    # Per (username, address): another address still gets its own tries.
    assert login_status(client, "2.2.2.2", "victim") == 401


def test_others_failures_never_lock_the_owner_out(make_app):
    """Wrong passwords for `victim` from many addresses push the username over
    its ceiling; addresses that failed are refused, the owner is not."""
    app = make_app(LOGIN_RATE_LIMIT="3 per minute", LOGIN_USERNAME_FAILURE_LIMIT="5 per minute")
    client = app.test_client()
    client.post("/register", json={"username": "victim", "password": "right-password"})
    attacks = [login_status(client, f"10.0.0.{n}") for n in range(1, 11)]
    assert attacks == [401] * 10  # each fresh address: one guess
    assert [login_status(client, f"10.0.0.{n}") for n in (1, 2)] == [429, 429]  # failed before: refused
    assert login_status(client, "192.168.7.7", password="right-password") == 200


def test_wrong_current_password_is_rate_limited_like_login(make_app):
    app = make_app(LOGIN_RATE_LIMIT="3 per minute")
    client = app.test_client()
    user = Users(app, client).create(password="old-password")
    path, wrong = f"/user/{user['id']}/password", {"current_password": "guess-guess", "new_password": "new-password"}
    elsewhere = {"REMOTE_ADDR": "10.0.0.7"}
    statuses = [
        client.put(path, headers=user["headers"], json=wrong, environ_base=elsewhere).status_code for _ in range(5)
    ]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429]
