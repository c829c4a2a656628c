"""No local back door: the server listens on its public port and on nothing
else a local process could use to speak uWSGI's own protocol.

That protocol carries variables the HTTP side never can (UWSGI_FILE loads a
file as an app; `exec://` runs a command), and uWSGI 2.0 cannot turn them
off. So `uwsgi --ini uwsgi.ini` (make run, Heroku) must open no TCP port but
the public one, and the relay's private socket to its workers must be a
Unix socket only the app's own user may open.
"""

import os
import pwd
import socket
import stat

import pytest

from tests.support.live_server import LiveServer
from tests.support.uwsgi_client import uwsgi_request

pytestmark = pytest.mark.live


def process_group(pgid):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # the field after state and ppid
                pids.append(int(entry))
    return pids


def socket_inodes(pids):
    inodes = set()
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def listening_tcp_ports(inodes):
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[9]) in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def listening_unix_paths(inodes):
    paths = set()
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            # Flags 00010000: __SO_ACCEPTCON, a listening socket.
            if len(fields) >= 8 and int(fields[6]) in inodes and int(fields[3], 16) & 0x10000:
                paths.add(fields[7])
    return paths


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    database = tmp_path_factory.mktemp("sockets") / "sockets.db"
    with LiveServer(f"sqlite:///{database}", processes=2) as live:
        yield live


def connects_as(user, path):
    """Whether `user` may connect to the Unix socket at `path` (tried in a forked child)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.connect(path)
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def test_only_the_public_port_and_a_private_unix_socket(server):
    inodes = socket_inodes(process_group(server.process.pid))
    assert listening_tcp_ports(inodes) == {server.port}
    paths = listening_unix_paths(inodes)
    assert paths, "the relay reaches its workers over a Unix socket"
    for path in paths:
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) & 0o077 == 0, f"{path}: {oct(stat.S_IMODE(mode))}"
        assert os.stat(path).st_uid == os.getuid()
        if os.getuid() == 0:  # as root, also try it as another user
            assert not connects_as(pwd.getpwnam("nobody"), path)


def test_the_public_port_runs_nothing_a_uwsgi_packet_names(server, tmp_path):
    marker = tmp_path / "ran"
    try:
        uwsgi_request(server.port, "GET", "/health", extra_environ={"UWSGI_FILE": f"exec://touch {marker}"}, timeout=5)
    except (ConnectionError, OSError):
        pass  # the relay may drop what is not HTTP; what matters is below
    assert not marker.exists()
    assert server.process.poll() is None
