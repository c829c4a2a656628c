"""The real server: uWSGI with several worker processes, over HTTP.

A token logged out through one request must be refused on every following
request, whichever worker process answers it.
"""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests import services
from tests.live import LiveServer, free_port, worker_requests

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
    live = LiveServer(f"sqlite:///{tmp_path / 'live.db'}", processes=2, redis_url=redis_url,
                      args=["--stats", f"127.0.0.1:{stats_port}"])
    with live:
        live.stats_port = stats_port
        yield live


def test_logout_is_refused_by_every_worker(server):
    url = server.url
    assert requests.post(f"{url}/register", json={"username": "alice", "password": "password1"}).status_code == 201
    tokens = requests.post(f"{url}/login", json={"username": "alice", "password": "password1"}).json()
    access = {"Authorization": f"Bearer {tokens['access_token']}"}
    refresh = {"Authorization": f"Bearer {tokens['refresh_token']}"}
    refreshed = {"Authorization": "Bearer " + requests.post(f"{url}/refresh", headers=refresh).json()["access_token"]}
    assert requests.get(f"{url}/items", headers=access).status_code == 200

    before = settled_worker_requests(server.stats_port)
    assert requests.post(f"{url}/logout", headers=access).status_code == 200
    logout_worker, = [pid for pid, n in served_since(server.stats_port, before, 1).items() if n]

    def attempt(i):
        headers, method, path = [(access, "get", "/items"), (refreshed, "get", "/item/x"),
                                 (refresh, "post", "/refresh")][i % 3]
        response = requests.request(method, url + path, headers=headers)
        return response.status_code, response.json()["error"]

    # Concurrent requests on new connections, in batches until every worker
    # (not only the one that saw the logout) has answered some of them.
    served = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for batch in range(1, 31):
            before = worker_requests(server.stats_port)
            answers = list(pool.map(attempt, range(30)))
            assert answers == [(401, "token_revoked")] * 30
            for pid, n in served_since(server.stats_port, before, 30).items():
                served[pid] = served.get(pid, 0) + n
            if len(served) == 2 and all(served.values()):
                break
    assert len(served) == 2 and all(served.values()), served
    assert served[next(pid for pid in served if pid != logout_worker)] > 0
