"""The real server: uWSGI with several worker processes, over HTTP.

A session ended through one request (logout, a password change, "end all
sessions") must be refused on every following request, whichever worker
process answers it.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import services
from tests.support.live_server import LiveServer, free_port, worker_requests

pytestmark = pytest.mark.live


def settled_worker_requests(stats_port):
    """Per-worker counts once earlier requests have all been counted."""
    previous = worker_requests(stats_port)
    while True:
        time.sleep(0.1)
        current = worker_requests(stats_port)
        if current == previous:
            return current
        previous = current


def served_since(stats_port, before, expected):
    """Per-worker requests since `before`, once all `expected` are counted
    (a worker counts a request just after answering it)."""
    deadline = time.monotonic() + 5
    while True:
        now = worker_requests(stats_port)
        served = {pid: now[pid] - before[pid] for pid in now}
        if sum(served.values()) >= expected or time.monotonic() > deadline:
            return served
        time.sleep(0.05)


@pytest.fixture(params=["database", "redis"])
def server(request, tmp_path):
    redis_url = None
    if request.param == "redis":
        services.fresh_redis()
        redis_url = services.REDIS_URL
    stats_port = free_port()
    live = LiveServer(
        f"sqlite:///{tmp_path / 'live.db'}",
        processes=2,
        redis_url=redis_url,
        args=["--stats", f"127.0.0.1:{stats_port}"],
    )
    with live:
        live.stats_port = stats_port
        yield live


def end_sessions(url, how, user_id, access):
    """End the session (logout) or all sessions of the user; True on success."""
    if how == "logout":
        response = requests.post(f"{url}/logout", headers=access)
    elif how == "password":
        response = requests.put(
            f"{url}/user/{user_id}/password",
            headers=access,
            json={"current_password": "password1", "new_password": "password2"},
        )
    else:
        response = requests.delete(f"{url}/user/{user_id}/sessions", headers=access)
    return response.status_code == 200


@pytest.mark.parametrize("how", ["logout", "password", "sessions"])
def test_ended_sessions_are_refused_by_every_worker(server, how):
    url = server.url
    registered = requests.post(f"{url}/register", json={"username": "alice", "password": "password1"})
    assert registered.status_code == 201
    user_id = registered.json()["id"]

    def log_in():
        return requests.post(f"{url}/login", json={"username": "alice", "password": "password1"}).json()

    tokens, other_session = log_in(), log_in()
    access = {"Authorization": f"Bearer {tokens['access_token']}"}
    refresh = {"Authorization": f"Bearer {tokens['refresh_token']}"}
    refreshed = {"Authorization": "Bearer " + requests.post(f"{url}/refresh", headers=refresh).json()["access_token"]}
    other = {"Authorization": f"Bearer {other_session['access_token']}"}
    assert requests.get(f"{url}/items", headers=access).status_code == 200

    before = settled_worker_requests(server.stats_port)
    assert end_sessions(url, how, user_id, access)
    (ending_worker,) = [pid for pid, n in served_since(server.stats_port, before, 1).items() if n]

    refused = [(access, "get", "/items"), (refreshed, "get", "/item/x"), (refresh, "post", "/refresh")]
    if how != "logout":
        refused.append((other, "get", "/items"))  # every session of the user
    else:
        assert requests.get(f"{url}/items", headers=other).status_code == 200

    def attempt(i):
        headers, method, path = refused[i % len(refused)]
        response = requests.request(method, url + path, headers=headers)
        return response.status_code, response.json()["error"]

    # Concurrent requests on new connections, in batches until every worker
    # (not only the one that ended the session) has answered some of them.
    served = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _batch in range(1, 31):
            before = worker_requests(server.stats_port)
            answers = list(pool.map(attempt, range(30)))
            assert answers == [(401, "token_revoked")] * 30
            for pid, n in served_since(server.stats_port, before, 30).items():
                served[pid] = served.get(pid, 0) + n
            if len(served) == 2 and all(served.values()):
                break
    assert len(served) == 2 and all(served.values()), served
    assert served[next(pid for pid in served if pid != ending_worker)] > 0
