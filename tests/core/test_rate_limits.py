"""Rate limits (core/rate_limits.py), in process: registration per address,
login per address, per (username, address) and per username, and a wrong
current password counted like a failed login. Across uWSGI workers, with
Redis: tests/live/test_reliability.py."""

from tests.support.users import Users, bearer


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


def test_guesses_without_a_device_token_share_one_budget_per_username(make_app):
    """Many addresses, one guess each: the username's budget, not a guess per address."""
    app = make_app(LOGIN_RATE_LIMIT="3 per minute", LOGIN_USERNAME_FAILURE_LIMIT="5 per minute")
    client = app.test_client()
    client.post("/register", json={"username": "victim", "password": "right-password"})
    attacks = [login_status(client, f"10.0.0.{n}") for n in range(1, 11)]
    assert attacks == [401] * 5 + [429] * 5
    refused = client.post(
        "/login", json={"username": "victim", "password": "right-password"}, environ_base={"REMOTE_ADDR": "192.168.7.7"}
    )
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert login_status(client, "10.0.1.1", username="someone-else") == 401  # other usernames keep theirs


def test_the_owners_device_is_never_locked_out(make_app):
    app = make_app(LOGIN_RATE_LIMIT="3 per minute", LOGIN_USERNAME_FAILURE_LIMIT="5 per minute")
    owner, attacker = app.test_client(), app.test_client()
    attacker.post("/register", json={"username": "victim", "password": "right-password"})
    first = owner.post("/login", json={"username": "victim", "password": "right-password"})
    device_token = first.get_json()["device_token"]
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith(f"device_token={device_token};")
    assert "HttpOnly" in cookie and "Path=/login" in cookie and "SameSite=Strict" in cookie
    assert [login_status(attacker, f"10.0.0.{n}") for n in range(1, 21)].count(429) == 15
    # The cookie (kept by the owner's client) and the header both count.
    assert owner.post("/login", json={"username": "victim", "password": "right-password"}).status_code == 200
    by_header = attacker.post(
        "/login", json={"username": "victim", "password": "right-password"}, headers={"X-Device-Token": device_token}
    )
    assert by_header.status_code == 200


def test_a_device_gets_its_own_few_guesses(make_app):
    """A stolen device token buys LOGIN_RATE_LIMIT guesses, no more."""
    app = make_app(LOGIN_RATE_LIMIT="3 per minute", LOGIN_USERNAME_FAILURE_LIMIT="100 per minute")
    client = app.test_client()
    client.post("/register", json={"username": "victim", "password": "right-password"})
    token = client.post("/login", json={"username": "victim", "password": "right-password"}).get_json()["device_token"]
    client.delete_cookie("device_token", path="/login")
    guesses = [
        client.post(
            "/login", json={"username": "victim", "password": "guess-guess"}, headers={"X-Device-Token": token}
        ).status_code
        for _ in range(4)
    ]
    assert guesses == [401, 401, 401, 429]


def untrusted_after_budget(app, token, username="victim"):
    """With the username's budget spent, is `token` still let in?"""
    client = app.test_client()
    for n in range(3):
        login_status(client, f"10.9.0.{n}", username=username)
    return client.post(
        "/login", json={"username": username, "password": "right-password"}, headers={"X-Device-Token": token}
    ).status_code


def test_device_tokens_that_do_not_count(make_app):
    app = make_app(LOGIN_RATE_LIMIT="100 per minute", LOGIN_USERNAME_FAILURE_LIMIT="3 per minute")
    client = app.test_client()
    users = Users(app, client)
    victim = users.create(username="victim", password="right-password")
    other = users.create(username="other", password="right-password")
    other_token = client.post("/login", json={"username": "other", "password": "right-password"}).get_json()[
        "device_token"
    ]
    token = client.post("/login", json={"username": "victim", "password": "right-password"}).get_json()["device_token"]
    assert untrusted_after_budget(app, other_token) == 429  # another user's
    assert untrusted_after_budget(app, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) == 429  # tampered
    assert untrusted_after_budget(app, victim["access_token"]) == 429  # an access token is not a device token
    # A device token is no access token either.
    assert client.get(f"/user/{victim['id']}", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert untrusted_after_budget(app, token) == 200
    # Ending all sessions ends the device tokens too.
    fresh = client.post("/login", json={"username": "other", "password": "right-password"}).get_json()
    client.delete(f"/user/{other['id']}/sessions", headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert untrusted_after_budget(app, other_token, username="other") == 429


def test_wrong_current_password_is_limited_per_login_session(make_app):
    app = make_app(LOGIN_RATE_LIMIT="3 per minute", LOGIN_USERNAME_FAILURE_LIMIT="5 per minute")
    client = app.test_client()
    user = Users(app, client).create(password="old-password")
    path, wrong = f"/user/{user['id']}/password", {"current_password": "guess-guess", "new_password": "new-password"}
    elsewhere = {"REMOTE_ADDR": "10.0.0.7"}
    statuses = [
        client.put(path, headers=user["headers"], json=wrong, environ_base=elsewhere).status_code for _ in range(5)
    ]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429]
    # Others guessing the login do not stop the account holder's own session.
    attacker = app.test_client()
    for n in range(5):
        login_status(attacker, f"10.1.0.{n}", username=user["username"])
    right = {"current_password": "old-password", "new_password": "new-password"}
    other_session = Users(app, client).login(user["username"], "old-password")
    assert client.put(path, headers=bearer(other_session["access_token"]), json=right).status_code == 200


def test_ipv6_clients_are_counted_by_their_64(make_app):
    """Any VPS has a /64: its addresses are one client, for login and registration alike."""
    client = make_app(LOGIN_RATE_LIMIT="3 per minute", REGISTER_RATE_LIMIT="2 per minute").test_client()
    one_network = [f"2001:db8:1:2::{n:x}" for n in range(1, 6)]
    assert [login_status(client, address, f"user{n}") for n, address in enumerate(one_network)] == [401] * 3 + [429] * 2
    assert login_status(client, "2001:db8:1:3::1", "user9") == 401  # the next /64 is someone else
    assert login_status(client, "::ffff:10.7.7.7", "user9") == 401  # IPv4-mapped: that IPv4 address

    def register(name, address):
        return client.post(
            "/register", json={"username": name, "password": "password1"}, environ_base={"REMOTE_ADDR": address}
        ).status_code

    assert [register(f"v6user{n}", address) for n, address in enumerate(one_network[:3])] == [201, 201, 429]
