"""front/relay.py over real sockets: a client speaks HTTP to it, and a
recording stand-in for the workers (a Unix socket) sees what reaches them
and when. (tests/live/test_slow_clients.py runs it inside uWSGI.)"""

import fcntl
import socket
import struct
import termios
import threading
import time
from contextlib import contextmanager

import pytest

from front.relay import (
    HEAD_LIMIT,
    READ,
    RECEIVE,
    BadChunking,
    ChunkedDecoder,
    Connection,
    Relay,
    Settings,
    build_packet,
    decode_path,
    parse_variables,
)

LIMIT = 1000  # the largest body any route takes, in these tests


class Workers:
    """A Unix socket that takes one request per connection, records it (the
    variables and the body after them) with the time it came, and answers
    with `answer` (the app: a body over LIMIT is refused unread); when the
    relay hangs up before the whole answer is sent, the time is in `cut_off`."""

    def __init__(self, path, answer=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", limit=LIMIT):
        self.requests = []
        self.cut_off = []
        self.answered = []  # when each whole answer had been sent
        self.answer = answer
        self.limit = limit
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.handle(conn)

    def handle(self, conn):
        self.take(conn)

    def take(self, conn):
        with conn:
            data = conn.recv(4)
            size = 4 + struct.unpack("<H", data[1:3])[0]
            while len(data) < size:
                data += conn.recv(65536)
            variables = dict(parse_variables(data[:size]))
            length = int(variables.get(b"CONTENT_LENGTH") or 0)
            body = data[size:]
            while len(body) < length <= self.limit:
                body += conn.recv(65536)
            self.requests.append((time.monotonic(), variables, body))
            try:
                self.reply(conn, variables)
                self.answered.append(time.monotonic())
            except OSError:
                self.cut_off.append(time.monotonic())

    def reply(self, conn, variables):
        conn.sendall(self.answer)


def listen():
    """A listening TCP socket on a free loopback port, as uWSGI's master makes the public one."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    return listener


class CountedPoll:
    """An epoll object that counts its polls."""

    def __init__(self, poll, polls):
        self.epoll, self.polls = poll, polls

    def poll(self, timeout):
        self.polls.append(None)
        return self.epoll.poll(timeout)

    def __getattr__(self, name):
        return getattr(self.epoll, name)


@contextmanager
def running_relay(tmp_path, settings, polls=None, relays=None):
    """A relay serving in a thread on a loopback port (yielded as an
    address), in front of tmp_path/workers.sock; each time it wakes from
    epoll, a None is added to `polls`; the Relay itself to `relays`."""
    listener = listen()
    server = Relay(listener, str(tmp_path / "workers.sock"), settings)
    if relays is not None:
        relays.append(server)
    if polls is not None:
        server.poll = CountedPoll(server.poll, polls)
    stopped = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stopped.is_set,), daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        stopped.set()
        thread.join(5)


@pytest.fixture
def relay(tmp_path):
    """A relay (body deadline 1 s, plus 1 s per 1,000 bytes), the stand-in
    for its workers, and the relay's address."""
    workers = Workers(str(tmp_path / "workers.sock"))
    with running_relay(tmp_path, Settings(1.0, 1000, LIMIT)) as address:
        yield address, workers
    workers.listener.close()


@pytest.fixture
def connect():
    """Opens client connections to the relay, closed after the test."""
    clients = []

    def open_one(address):
        client = socket.create_connection(address, timeout=5)
        clients.append(client)
        return client

    yield open_one
    for client in clients:
        client.close()


def head(method="GET", *headers, target="/", version="HTTP/1.1"):
    lines = [f"{method} {target} {version}", "Host: test", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(client):
    """One answer: up to its Content-Length, or (without one) until the relay closes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            return data
        data += chunk
    head_end = data.index(b"\r\n\r\n") + 4
    for line in data[:head_end].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
            while len(data) < head_end + length:
                data += client.recv(65536)
            return data
    while chunk := client.recv(65536):
        data += chunk
    return data


def closed(client):
    """Whether the relay has ended the connection (EOF, nothing more sent)."""
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_packet_round_trips_through_parse_and_build():
    sent = [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/items"), (b"EMPTY", b"")]
    data = build_packet(sent)
    assert data[0] == 0 and data[3] == 0 and struct.unpack("<H", data[1:3])[0] == len(data) - 4
    assert parse_variables(data) == sent


def test_a_request_reaches_the_workers_as_the_router_would_send_it(relay, connect):
    """uWSGI's HTTP router's variables, in its order (PATH_INFO decoded)."""
    address, workers = relay
    client = connect(address)
    headers = [("X-Odd", "CONTENT_LENGTH"), ("Accept", "a"), ("accept", "b")]
    client.sendall(head("GET", *headers, target="/items/a%20b?x=1"))
    assert answer(client).endswith(b"ok")
    variables = workers.requests[0][1]
    port = str(client.getsockname()[1]).encode()
    assert list(variables.items()) == [
        (b"REQUEST_METHOD", b"GET"),
        (b"PATH_INFO", b"/items/a b"),
        (b"REQUEST_URI", b"/items/a%20b?x=1"),
        (b"QUERY_STRING", b"x=1"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"SCRIPT_NAME", b""),
        (b"SERVER_NAME", socket.gethostname().encode()),
        (b"SERVER_PORT", str(address[1]).encode()),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", port),
        (b"HTTP_HOST", b"test"),
        (b"HTTP_X_ODD", b"CONTENT_LENGTH"),
        (b"HTTP_ACCEPT", b"a, b"),  # repeated lines joined, as the router joins them
    ]


# What uWSGI 2.0.31's HTTP router gives as PATH_INFO for each path (asked of it:
# an app echoing PATH_INFO behind `uwsgi --http`).
ROUTER_PATHS = [
    (b"/a/b", b"/a/b"), (b"/a%20b", b"/a b"), (b"/a//b", b"/a//b"), (b"/a/./b", b"/a/b"), (b"/a/../b", b"/b"),
    (b"/a/%2E%2E/b", b"/a/../b"), (b"/items/a%2Fb", b"/items/a/b"), (b"/x#frag", b"/x"), (b"/%zz", b"/\0"),
    (b"/%4", b"/"), (b"/%", b"/"), (b"/a/..", b"/"), (b"/a/.", b"/a/"), (b"/..", b""), (b"/../a", b"/a"),
    (b"//a", b"//a"), (b"a/b", b"a/b"), (b"/a/..b", b"/a/..b"), (b"/a/.b/", b"/a/.b/"), (b"/a%%b", b"/a%b"),
    (b"/a/b/../../..", b""), (b"/./", b"/"), (b"/item/%C3%A9t%C3%A9", "/item/été".encode()), (b"/a/...", b"/a/..."),
    (b"/a%2F..%2Fb", b"/a/../b"), (b"/%g1", b"/\0"), (b"/%1g", b"/\0"), (b"*", b"*"), (b"/.%2e/x", b"/../x"),
    (b"http://h/a/../b", b"http://h/b"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "path_info"), ROUTER_PATHS)
def test_paths_are_decoded_as_the_router_decodes_them(raw, path_info):
    assert decode_path(raw) == path_info


def test_the_workers_see_a_request_only_once_its_body_is_in(relay, connect):
    address, workers = relay
    client = connect(address)
    client.sendall(head("POST", ("Content-Length", "6")) + b"ab")
    time.sleep(0.3)
    assert workers.requests == []  # a worker would have been waiting for the rest
    sent_at = time.monotonic()
    client.sendall(b"cdef")
    assert answer(client).endswith(b"ok")
    (when, variables, body) = workers.requests[0]
    assert when >= sent_at and body == b"abcdef" and variables[b"REQUEST_METHOD"] == b"POST"


def test_a_chunked_body_arrives_decoded_with_a_length(relay, connect):
    address, workers = relay
    client = connect(address)
    client.sendall(head("POST", ("Transfer-Encoding", "chunked")))
    for piece in (b"3;ext=1\r\nabc\r\n", b"2\r\nde", b"\r\n0\r\nTrailer: x\r\n", b"\r\n"):
        client.sendall(piece)
        time.sleep(0.05)
    assert answer(client).endswith(b"ok")
    (_, variables, body) = workers.requests[0]
    assert body == b"abcde" and variables[b"CONTENT_LENGTH"] == b"5"
    assert b"HTTP_TRANSFER_ENCODING" not in variables


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_late_past_its_deadline_goes_on_empty_and_marked(relay, connect, chunked):
    """1 s + 1 s per 1,000 bytes: a 100-byte body trickled a byte every 0.2 s is late."""
    address, workers = relay
    client = connect(address)
    framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", "100")
    client.sendall(head("POST", framing))
    started = time.monotonic()
    try:
        for _ in range(10):
            client.sendall(b"1\r\nx\r\n" if chunked else b"x")
            time.sleep(0.2)
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered and closed
    assert answer(client).endswith(b"ok")
    (when, variables, body) = workers.requests[0]
    assert variables[b"STORES_API_REQUEST_ERROR"] == b"timeout"
    assert body == b"" and variables[b"CONTENT_LENGTH"] == b"0"
    assert 1.0 <= when - started < 1.5


def test_broken_chunked_framing_is_marked(relay, connect):
    address, workers = relay
    client = connect(address)
    client.sendall(head("POST", ("Transfer-Encoding", "chunked")) + b"zz\r\nab\r\n")
    assert answer(client).endswith(b"ok")
    assert workers.requests[0][1][b"STORES_API_REQUEST_ERROR"] == b"chunking"
    assert closed(client)  # the rest of the request was never read


def test_a_body_larger_than_any_route_takes_goes_on_at_once_without_it(relay, connect):
    """The app refuses it (413) from its Content-Length: the relay stores none of it."""
    address, workers = relay
    client = connect(address)
    client.sendall(head("PUT", ("Content-Length", str(100 * LIMIT))) + b"x" * 10)
    assert answer(client).endswith(b"ok")  # with 99,990 bytes of the body never sent
    assert workers.requests[0][1][b"CONTENT_LENGTH"] == str(100 * LIMIT).encode()
    assert closed(client)


def test_a_chunked_body_over_the_limit_goes_on_with_its_length_so_far(relay, connect):
    address, workers = relay
    client = connect(address)
    client.sendall(head("PUT", ("Transfer-Encoding", "chunked")))
    client.sendall(b"%x\r\n%s\r\n" % (LIMIT + 1, b"y" * (LIMIT + 1)))
    assert answer(client).endswith(b"ok")
    assert int(workers.requests[0][1][b"CONTENT_LENGTH"]) > LIMIT


@pytest.mark.parametrize("size", [400_000, 3_000_000])
def test_a_large_answer_reaches_a_slow_reader_whole(tmp_path, connect, size):
    """An answer larger than the sockets' buffers, read slowly: the relay
    waits for the reader instead of dropping bytes. (400 kB: the worker has
    sent it all and closed while the relay still waits for the reader.)"""
    big = b"x" * size
    Workers(str(tmp_path / "workers.sock"), answer=b"HTTP/1.1 200 OK\r\n\r\n" + big)
    polls = []
    with running_relay(tmp_path, Settings(1.0, 1000, LIMIT), polls) as address:
        client = connect(address)
        client.sendall(head())
        time.sleep(0.5)  # the answer piles up in front of a reader that has not started
        waited = len(polls)
        assert answer(client) == b"HTTP/1.1 200 OK\r\n\r\n" + big  # then closed: it has no length
    # Meanwhile it slept in epoll (a wake-up a tick, 0.05 s), not spun on the
    # worker's hang-up: that was hundreds of thousands of wake-ups a second.
    assert waited < 100, waited


def test_a_client_that_stops_reading_its_answer_frees_its_worker(tmp_path, connect, monkeypatch):
    """No part of the answer taken for ANSWER_TIMEOUT: the relay hangs up on
    the worker and the client (more than the sockets' buffers can hold)."""
    monkeypatch.setattr("front.relay.ANSWER_TIMEOUT", 0.3)
    monkeypatch.setattr("front.relay.ANSWERS_SPOOLED_LIMIT", 0)  # nowhere to keep it but the sockets
    workers = Workers(str(tmp_path / "workers.sock"), answer=b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 30_000_000)
    with running_relay(tmp_path, Settings(1.0, 1000, LIMIT)) as address:
        client = connect(address)
        client.sendall(head())
        time.sleep(1.5)
        assert workers.cut_off, "the worker is still held"
        assert workers.cut_off[0] - workers.requests[0][0] < 1.0


def test_a_large_body_sent_in_small_pieces_arrives_whole(tmp_path, connect):
    """3 MB in 4 KiB pieces: whole, in order, once."""
    body = bytes(range(256)) * (3 * 4096)
    workers = Workers(str(tmp_path / "workers.sock"), limit=len(body))
    with running_relay(tmp_path, Settings(30.0, 1000, len(body))) as address:
        client = connect(address)
        client.sendall(head("PUT", ("Content-Length", str(len(body)))))
        for start in range(0, len(body), 4096):
            client.sendall(body[start : start + 4096])
        assert answer(client).endswith(b"ok")
    assert workers.requests[0][2] == body


@pytest.mark.parametrize(
    "framing", [b"1x\r\n", b"1\r\nabX\r\n", b"f" * 17 + b"\r\n", b"1" * 2000, b"1\r\nx\r\n" * 10_001]
)
def test_the_chunked_decoder_refuses_what_is_not_framing(framing):
    with pytest.raises(BadChunking):
        ChunkedDecoder().feed(framing)


def test_a_chunk_declaring_more_than_any_route_takes_goes_on_at_once(relay, connect):
    """Not held while its bytes arrive (they would fill the relay's memory)."""
    address, workers = relay
    client = connect(address)
    client.sendall(head("PUT", ("Transfer-Encoding", "chunked")) + b"ffffffff\r\nxx")
    assert answer(client).endswith(b"ok")
    assert int(workers.requests[0][1][b"CONTENT_LENGTH"]) > LIMIT


@pytest.mark.parametrize(("sent", "seen"), [("5 ", b"5"), ("\t5", b"5")])
def test_a_content_length_with_spaces_is_read_as_its_number(relay, connect, sent, seen):
    address, workers = relay
    client = connect(address)
    client.sendall(head("POST", ("Content-Length", sent)) + b"hello")
    assert answer(client).endswith(b"ok")
    (_, variables, body) = workers.requests[0]
    assert variables[b"CONTENT_LENGTH"] == seen and body == b"hello"


@pytest.mark.parametrize("sent", ["5x", "-1", "", "0x10", "5, 5", "9" * 5000])
def test_a_content_length_that_is_no_number_is_marked(relay, connect, sent):
    address, workers = relay
    client = connect(address)
    client.sendall(head("POST", ("Content-Length", sent)) + b"hello")
    assert answer(client).endswith(b"ok")
    (_, variables, body) = workers.requests[0]
    assert variables[b"STORES_API_REQUEST_ERROR"] == b"framing" and body == b""


def test_an_answer_sent_before_the_body_is_read_reaches_the_client(tmp_path, connect):
    """A worker may answer (401, 413, 429) without reading a large body, and
    close: the relay's next send fails, but the answer is still delivered."""
    body = b"x" * 2_000_000
    Workers(str(tmp_path / "workers.sock"), answer=b"HTTP/1.1 401 UNAUTHORIZED\r\nContent-Length: 2\r\n\r\nno", limit=0)
    with running_relay(tmp_path, Settings(30.0, 1000, len(body))) as address:
        client = connect(address)
        client.sendall(head("PUT", ("Content-Length", str(len(body)))) + body)
        assert answer(client).endswith(b"no")


def test_without_workers_the_relay_answers_503_and_goes_on(tmp_path, connect):
    """No worker socket yet (a restart): 503 with Retry-After, at once or at
    a late body's deadline; once the workers are there, they answer."""
    with running_relay(tmp_path, Settings(0.3, 1000, LIMIT)) as address:
        client = connect(address)
        client.sendall(head())
        first = answer(client)
        assert first.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in first
        assert b'"error": "service_unavailable"' in first and b"\r\nX-Request-ID: " in first and closed(client)
        late = connect(address)
        late.sendall(head("POST", ("Content-Length", "100")) + b"x")
        assert answer(late).startswith(b"HTTP/1.1 503 ")
        workers = Workers(str(tmp_path / "workers.sock"))
        later = connect(address)
        later.sendall(head())
        assert answer(later).endswith(b"ok")
    workers.listener.close()


@pytest.mark.parametrize(
    "framing",
    [
        [("Transfer-Encoding", "xchunked")],
        [("Transfer-Encoding", "gzip, chunked")],
        [("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
        [("Content-Length", "0"), ("Transfer-Encoding", "chunked")],
        [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
    ],
)
def test_framing_that_cannot_be_trusted_is_marked_at_once(relay, connect, framing):
    """Not waited for, and never both headers (a way to smuggle a request)."""
    address, workers = relay
    client = connect(address)
    client.sendall(head("POST", *framing) + b"3\r\nabc\r\n0\r\n\r\n")
    assert answer(client).endswith(b"ok")
    (_, variables, body) = workers.requests[0]
    assert variables[b"STORES_API_REQUEST_ERROR"] == b"framing" and body == b""


def test_a_chunked_body_of_mostly_framing_is_refused(relay, connect):
    """Chunk extensions cost the relay's CPU and carry no body: past six
    times the largest body on the wire, the body is refused."""
    address, workers = relay
    client = connect(address)
    client.sendall(head("POST", ("Transfer-Encoding", "chunked")))
    try:
        for _ in range(20):
            client.sendall(b"1;" + b"e" * 900 + b"\r\nx\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered and closed
    assert answer(client).endswith(b"ok")
    assert workers.requests[0][1][b"STORES_API_REQUEST_ERROR"] == b"chunking"


# -- connections ----------------------------------------------------------------
def test_a_connection_serves_request_after_request(relay, connect):
    """Keep-alive, also after a request with a body."""
    address, workers = relay
    client = connect(address)
    client.sendall(head("POST", ("Content-Length", "3")) + b"abc")
    assert answer(client).endswith(b"ok")
    client.sendall(head("GET", target="/second"))
    assert answer(client).endswith(b"ok")
    assert [r[1][b"PATH_INFO"] for r in workers.requests] == [b"/", b"/second"]
    assert workers.requests[0][2] == b"abc"


def test_pipelined_requests_are_answered_in_order(relay, connect):
    address, workers = relay
    client = connect(address)
    client.sendall(
        head(target="/1") + head("POST", ("Transfer-Encoding", "chunked"), target="/2") + b"1\r\nx\r\n0\r\n\r\n"
        + head("POST", ("Content-Length", "2"), target="/3") + b"yz" + head(target="/4")
    )  # fmt: skip
    answers = b""
    while answers.count(b"\r\n\r\nok") < 4:
        answers += client.recv(65536)
    assert answers == 4 * b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert [(r[1][b"PATH_INFO"], r[2]) for r in workers.requests] == [
        (b"/1", b""), (b"/2", b"x"), (b"/3", b"yz"), (b"/4", b"")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("request_head", "worker_answer"),
    [
        (head("GET", ("Connection", "close")), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        (head(version="HTTP/1.0"), b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        (head(), b"HTTP/1.1 200 OK\r\n\r\nok"),  # no length: the close is its end
        (head(), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok"),  # short of its length
        (head(), b"HTTP/1.1 400 BAD REQUEST\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
        (head(), b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok"),
        (head("HEAD"), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),  # a HEAD answer with a body
    ],
)
def test_a_connection_ends_when_an_answer_says_so_or_cannot_tell_its_end(
    tmp_path, connect, request_head, worker_answer
):
    Workers(str(tmp_path / "workers.sock"), answer=worker_answer)
    with running_relay(tmp_path, Settings(1.0, 1000, LIMIT)) as address:
        client = connect(address)
        client.sendall(request_head)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        assert received == worker_answer


def test_an_idle_connection_and_a_late_head_end(relay, connect, monkeypatch):
    monkeypatch.setattr("front.relay.HEAD_TIMEOUT", 0.3)
    address, workers = relay
    idle = connect(address)
    idle.sendall(head())
    assert answer(idle).endswith(b"ok")
    trickler = connect(address)
    trickler.sendall(b"GET / HTTP/1.1\r\n")
    started = time.monotonic()
    assert closed(idle) and closed(trickler)
    assert time.monotonic() - started < 1.0
    assert len(workers.requests) == 1


def test_expect_100_continue_is_answered_before_the_body(relay, connect):
    address, workers = relay
    client = connect(address)
    client.sendall(head("PUT", ("Content-Length", "3"), ("Expect", "100-continue")))
    assert client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.sendall(b"abc")
    assert answer(client).endswith(b"ok")
    assert workers.requests[0][2] == b"abc"


def test_expect_100_continue_from_an_http_1_0_client_is_ignored(relay, connect):
    """RFC 9110, 10.1.1: such a client may not know what a 100 is."""
    address, workers = relay
    client = connect(address)
    client.sendall(head("PUT", ("Content-Length", "3"), ("Expect", "100-continue"), version="HTTP/1.0"))
    time.sleep(0.2)
    client.sendall(b"abc")
    assert answer(client) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert workers.requests[0][2] == b"abc"


@pytest.mark.parametrize(
    "bad_head",
    [
        b"GET /\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
        b"GET /a\rb HTTP/1.1\r\nHost: t\r\nX-A: 1\nX-B: 2\r\n\r\n",  # as many CR as LF, yet bare ones
        b"GET / HTTP/1.1\r\nX-A: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"a: b\r\n" * 101 + b"\r\n",  # each line costs the relay's CPU
    ],
)
def test_a_head_that_is_no_http_is_marked(relay, connect, bad_head):
    """The app answers it 400 (wsgi.py), and the connection ends."""
    address, workers = relay
    client = connect(address)
    client.sendall(bad_head)
    assert answer(client).endswith(b"ok")
    variables = workers.requests[0][1]
    assert variables[b"STORES_API_REQUEST_ERROR"] == b"head" and variables[b"PATH_INFO"] == b"/"
    assert closed(client)


def test_a_head_larger_than_a_packet_holds_is_marked(relay, connect):
    """Under HEAD_LIMIT, but with the path twice over uWSGI's 64 KiB packet."""
    address, workers = relay
    client = connect(address)
    client.sendall(head(target="/" + "a" * 40000))
    assert answer(client).endswith(b"ok")
    assert workers.requests[0][1][b"STORES_API_REQUEST_ERROR"] == b"head"


def test_a_header_name_with_an_underscore_is_dropped(relay, connect):
    """As Nginx drops it: X_Forwarded_For would pass for X-Forwarded-For."""
    address, workers = relay
    client = connect(address)
    client.sendall(head("GET", ("X_Forwarded_For", "6.6.6.6"), ("X-Forwarded-For", "1.2.3.4")))
    assert answer(client).endswith(b"ok")
    assert workers.requests[0][1][b"HTTP_X_FORWARDED_FOR"] == b"1.2.3.4"


@pytest.mark.parametrize("trusted", [0, 1])
def test_two_x_forwarded_for_lines_behind_a_trusted_proxy_are_marked(tmp_path, connect, trusted):
    """The proxy may have appended the client's address to either line."""
    workers = Workers(str(tmp_path / "workers.sock"))
    with running_relay(tmp_path, Settings(1.0, 1000, LIMIT, trusted_proxies=trusted)) as address:
        one = connect(address)
        one.sendall(head("GET", ("X-Forwarded-For", "6.6.6.6, 1.2.3.4")))
        assert answer(one).endswith(b"ok")
        two = connect(address)
        two.sendall(head("GET", ("X-Forwarded-For", "6.6.6.6, 1.2.3.4"), ("X-Forwarded-For", "7.7.7.7")))
        assert answer(two).endswith(b"ok")
    (_, single, _), (_, double, _) = workers.requests
    assert b"STORES_API_REQUEST_ERROR" not in single
    if trusted:
        assert double[b"STORES_API_REQUEST_ERROR"] == b"forwarded"
    else:  # the header means nothing to the app then: joined, as the router joined it
        assert double[b"HTTP_X_FORWARDED_FOR"] == b"6.6.6.6, 1.2.3.4, 7.7.7.7"
    workers.listener.close()


def test_a_chunked_body_whose_chunk_arrives_in_pieces_is_whole(relay, connect):
    """A 600-byte chunk (of at most 1,000) half in: counted once, not as
    600 declared plus the 450 held."""
    address, workers = relay
    client = connect(address)
    client.sendall(head("POST", ("Transfer-Encoding", "chunked")) + b"258\r\n" + b"a" * 450)
    time.sleep(0.1)
    client.sendall(b"b" * 150 + b"\r\n0\r\n\r\n" + head("POST", ("Content-Length", "500"), target="/next") + b"c" * 500)
    assert answer(client).endswith(b"ok") and answer(client).endswith(b"ok")
    (_, first, body), (_, second, next_body) = workers.requests
    assert body == b"a" * 450 + b"b" * 150 and next_body == b"c" * 500
    assert b"STORES_API_REQUEST_ERROR" not in first and second[b"PATH_INFO"] == b"/next"


def test_a_body_deadline_starts_with_its_request_not_the_idle_connection(relay, connect):
    """Idle 1.5 s on a kept-alive connection, then a body within the 1 s it
    is given: not late."""
    address, workers = relay
    client = connect(address)
    client.sendall(head())
    assert answer(client).endswith(b"ok")
    time.sleep(1.5)
    client.sendall(head("PUT", ("Content-Length", "3")))
    time.sleep(0.1)
    client.sendall(b"abc")
    assert answer(client).endswith(b"ok")
    assert workers.requests[1][2] == b"abc"


def test_a_client_that_half_closes_gets_every_pipelined_answer(relay, connect):
    address, workers = relay
    client = connect(address)
    client.sendall(head(target="/1") + head(target="/2"))
    client.shutdown(socket.SHUT_WR)
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    assert received.count(b"\r\n\r\nok") == 2 and len(workers.requests) == 2


def test_a_worker_that_ends_without_answering_gets_a_500(tmp_path, connect):
    Workers(str(tmp_path / "workers.sock"), answer=b"")
    with running_relay(tmp_path, Settings(1.0, 1000, LIMIT)) as address:
        client = connect(address)
        client.sendall(head())
        received = answer(client)
        assert received.startswith(b"HTTP/1.1 500 ") and b'"error": "internal_error"' in received
        assert b'"request_id": ' in received and b"\r\nX-Request-ID: " in received
        assert closed(client)


def small_send_buffer(relays):
    """The relay's socket to its (first) client gets a small send buffer, as
    over a network (on loopback it grows to megabytes)."""
    while not relays[0].active:
        time.sleep(0.01)
    next(iter(relays[0].active)).client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)


@contextmanager
def slow_reader(address, relays):
    """A client with a 4 KiB receive buffer, which has asked for / and reads
    nothing yet (and the relay's socket to it a small send buffer)."""
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(address)
        small_send_buffer(relays)
        client.sendall(head())
        yield client


# 900 kB: more than the sockets between a worker and a slow reader can hold.
LARGE_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 900000\r\n\r\n" + bytes(range(256)) * 3515 + b"x" * 160


@contextmanager
def answered_to_a_slow_reader(tmp_path, body):
    """A worker that answers `body`, the relay, and a slow_reader that asked
    for it: (the workers, the list holding the relay, the client)."""
    workers = Workers(str(tmp_path / "workers.sock"), answer=body)
    relays = []
    with (
        running_relay(tmp_path, Settings(1.0, 1000, LIMIT), relays=relays) as address,
        slow_reader(address, relays) as client,
    ):
        yield workers, relays, client


def test_an_early_answer_to_a_client_not_reading_does_not_spin(tmp_path):
    """A worker answers without reading the body and closes, while the
    client reads nothing: the relay waits in epoll, not on the worker."""
    body = b"x" * 1_500_000
    Workers(str(tmp_path / "workers.sock"), answer=b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * 180_000, limit=0)
    polls, relays = [], []
    with running_relay(tmp_path, Settings(30.0, 1000, len(body)), polls, relays) as address, socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(address)
        small_send_buffer(relays)
        client.sendall(head("POST", ("Content-Length", str(len(body)))) + body)
        time.sleep(0.3)
        before = len(polls)
        time.sleep(0.5)
        assert len(polls) - before < 100, len(polls) - before


def test_requests_sent_ahead_are_held_up_to_the_head_limit(tmp_path, connect):
    """A client sending megabytes while it reads its (large) answer slowly:
    the relay keeps at most about HEAD_LIMIT of them."""
    size = 2_000_000
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"y" * size
    Workers(str(tmp_path / "workers.sock"), answer=answer)
    relays = []
    with running_relay(tmp_path, Settings(1.0, 1000, LIMIT), relays=relays) as address:
        client = connect(address)
        small_send_buffer(relays)
        client.sendall(head())
        stop = threading.Event()

        def flood():
            while not stop.is_set():
                try:
                    client.send(b"z" * 65536)
                except TimeoutError:
                    pass
                except OSError:
                    return

        threading.Thread(target=flood, daemon=True).start()
        (connection,) = relays[0].active
        received, held = 0, 0
        while received < size:
            received += len(client.recv(8192))
            held = max(held, len(connection.received))
            time.sleep(0.002)
        stop.set()
        assert held <= 65536 + 262144, held


def test_a_read_bringing_a_head_and_more_than_the_head_limit_after_it_is_the_last(tmp_path):
    """The read that brings a request's head may bring more than HEAD_LIMIT of
    the requests sent after it: once that request is forwarded, the relay
    reads nothing more from its client (each read could add RECEIVE more).
    The relay's loop is played by hand, with the client's bytes all waiting."""
    workers = Workers(str(tmp_path / "workers.sock"))
    relay = Relay(listen(), str(tmp_path / "workers.sock"), Settings(1.0, 1000, LIMIT))
    client, served = socket.socketpair()
    served.setblocking(False)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * RECEIVE)
    request = head()

    def send():
        try:
            client.sendall(request + b"z" * 4 * RECEIVE)
        except OSError:
            pass  # the test is over: what did not fit is not needed

    threading.Thread(target=send, daemon=True).start()
    waited_for = time.monotonic() + 5
    # More than one read's worth, so that a second read would be seen.
    while struct.unpack("i", fcntl.ioctl(served, termios.FIONREAD, b"\0" * 4))[0] <= RECEIVE + len(request):
        assert time.monotonic() < waited_for, "the client's bytes did not all arrive"
        time.sleep(0.01)
    connection = Connection(relay, served, (b"127.0.0.1", b"1"))
    for _ in range(4):
        if connection.client_mask & READ:
            connection.client_readable()
    assert len(connection.received) > HEAD_LIMIT  # sent ahead, held
    assert len(connection.received) < RECEIVE
    connection.close()
    client.close()
    relay.listener.close()
    relay.poll.close()
    workers.listener.close()


@pytest.mark.parametrize("chunked", [False, True])
def test_bodies_past_the_relays_limit_for_all_of_them_are_not_read(tmp_path, connect, chunked):
    """1,500 bytes for all bodies at once: a first body of 1,000 still
    arriving leaves no room for a second; once it has gone on, there is."""
    workers = Workers(str(tmp_path / "workers.sock"))
    with running_relay(tmp_path, Settings(5.0, 1000, LIMIT, bodies_limit=1500)) as address:
        first = connect(address)
        first.sendall(head("POST", ("Content-Length", "1000"), target="/first") + b"a" * 10)
        time.sleep(0.1)
        second = connect(address)
        if chunked:
            second.sendall(head("POST", ("Transfer-Encoding", "chunked"), target="/second") + b"258\r\n" + b"b" * 600)
        else:
            second.sendall(head("POST", ("Content-Length", "600"), target="/second"))
        assert answer(second).endswith(b"ok") and closed(second)
        first.sendall(b"a" * 990)
        assert answer(first).endswith(b"ok")
        third = connect(address)
        third.sendall(head("POST", ("Content-Length", "600"), target="/third") + b"c" * 600)
        assert answer(third).endswith(b"ok")
    seen = {r[1][b"PATH_INFO"]: r for r in workers.requests}
    assert seen[b"/second"][1][b"STORES_API_REQUEST_ERROR"] == b"busy"
    assert seen[b"/first"][2] == b"a" * 1000 and seen[b"/third"][2] == b"c" * 600
    assert b"STORES_API_REQUEST_ERROR" not in seen[b"/third"][1]
    workers.listener.close()


def test_a_slow_reader_does_not_hold_its_worker(tmp_path):
    """An answer of 900 kB (more than the sockets between can hold) to a
    client that reads nothing for a second: the worker is done with it at
    once; the client then gets it whole."""
    body = LARGE_ANSWER
    with answered_to_a_slow_reader(tmp_path, body) as (workers, relays, client):
        time.sleep(1.0)
        assert workers.answered, "the worker still waits for the client"
        assert workers.answered[0] - workers.requests[0][0] < 0.5
        client.settimeout(5)
        assert answer(client) == body
    assert relays[0].answers_held == 0


def test_answers_held_for_slow_readers_are_bounded_for_all_clients(tmp_path, monkeypatch):
    """Past ANSWERS_HELD_LIMIT and ANSWERS_SPOOLED_LIMIT the relay reads no
    more of the answer: the client's slowness is its worker's again, as it
    must be, not the relay's memory or disk."""
    monkeypatch.setattr("front.relay.ANSWERS_HELD_LIMIT", 100_000)
    monkeypatch.setattr("front.relay.ANSWERS_SPOOLED_LIMIT", 100_000)
    body = b"HTTP/1.1 200 OK\r\nContent-Length: 900000\r\n\r\n" + b"y" * 900_000
    with answered_to_a_slow_reader(tmp_path, body) as (workers, relays, client):
        time.sleep(1.0)
        assert not workers.answered
        assert relays[0].answers_held < 100_000 + 262144
        client.settimeout(5)
        assert answer(client) == body


def test_an_answer_past_the_memory_buffer_waits_in_a_file(tmp_path, monkeypatch):
    """100 kB in memory, the rest of 900 kB in a temporary file: the worker
    is done at once, the client that reads nothing for a second then gets it
    whole, and nothing is left held."""
    monkeypatch.setattr("front.relay.ANSWER_BUFFER", 100_000)
    body = LARGE_ANSWER
    with answered_to_a_slow_reader(tmp_path, body) as (workers, relays, client):
        time.sleep(1.0)
        assert workers.answered and workers.answered[0] - workers.requests[0][0] < 0.5
        assert relays[0].answers_spooled > 0
        client.settimeout(5)
        assert answer(client) == body
        client.sendall(head())  # the connection goes on
        assert answer(client) == body
    assert relays[0].answers_held == 0 and relays[0].answers_spooled == 0


class ThreadedWorkers(Workers):
    """Workers answering each connection in its own thread: answers[PATH_INFO]
    = (seconds to wait first, the answer, or a list of its pieces to send 5 ms
    apart)."""

    def __init__(self, path, answers):
        self.answers = answers
        super().__init__(path)

    def handle(self, conn):
        threading.Thread(target=self.take, args=(conn,), daemon=True).start()

    def reply(self, conn, variables):
        delay, reply = self.answers[variables[b"PATH_INFO"]]
        time.sleep(delay)
        for piece in reply if isinstance(reply, list) else [reply]:
            conn.sendall(piece)
            time.sleep(0.005 if isinstance(reply, list) else 0)


BIG = b"HTTP/1.1 200 OK\r\nContent-Length: 900000\r\n\r\n" + b"y" * 900_000
SMALL = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def little_room(monkeypatch):
    """100 kB for all answers in memory, as much in files, and a 1 s answer timeout."""
    monkeypatch.setattr("front.relay.ANSWERS_HELD_LIMIT", 100_000)
    monkeypatch.setattr("front.relay.ANSWERS_SPOOLED_LIMIT", 100_000)
    monkeypatch.setattr("front.relay.ANSWER_TIMEOUT", 1.0)


def test_an_answer_waiting_for_room_is_read_once_there_is_some(tmp_path, connect, little_room):
    """A slow reader fills the room for answers; a request forwarded then
    gets its answer once that reader is gone."""
    ThreadedWorkers(str(tmp_path / "workers.sock"), {b"/": (0, BIG), b"/a": (0, SMALL)})
    relays = []
    with running_relay(tmp_path, Settings(1.0, 1000, LIMIT), relays=relays) as address:
        with slow_reader(address, relays):
            time.sleep(0.5)
            other = connect(address)
            other.sendall(head(target="/a"))
            time.sleep(0.5)
        assert answer(other) == SMALL


def test_an_answer_waiting_for_room_does_not_spin(tmp_path, connect, little_room):
    ThreadedWorkers(str(tmp_path / "workers.sock"), {b"/": (0, BIG), b"/a": (0.5, SMALL)})
    relays, polls = [], []
    with running_relay(tmp_path, Settings(1.0, 1000, LIMIT), polls, relays) as address:
        with slow_reader(address, relays):
            other = connect(address)
            other.sendall(head(target="/a"))  # forwarded while there is room; answered once there is none
            time.sleep(0.8)
            before = len(polls)
            time.sleep(0.5)
            assert len(polls) - before < 100, len(polls) - before
        assert answer(other) == SMALL


def test_the_file_limit_holds_while_the_client_reads_a_little(tmp_path, monkeypatch):
    monkeypatch.setattr("front.relay.ANSWER_BUFFER", 100_000)
    monkeypatch.setattr("front.relay.ANSWERS_SPOOLED_LIMIT", 200_000)
    size = 5_000_000
    pieces = [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size] + [b"y" * 50_000] * (size // 50_000)
    reply = b"".join(pieces)
    ThreadedWorkers(str(tmp_path / "workers.sock"), {b"/": (0, pieces)})  # about 10 MB/s
    relays = []
    with running_relay(tmp_path, Settings(1.0, 1000, LIMIT), relays=relays) as address:
        with slow_reader(address, relays) as client:
            client.settimeout(5)
            received, peak = 0, 0
            while received < len(reply):
                received += len(client.recv(4096))
                peak = max(peak, relays[0].answers_spooled)
                time.sleep(0.002)
        assert peak <= 200_000 + 262144, peak
