"""front/relay.py over real Unix sockets: a client speaks uwsgi to it as the
router does, and a recording stand-in for the workers sees what reaches them
and when. (tests/live/test_slow_clients.py runs it inside uWSGI.)"""

import os
import socket
import struct
import threading
import time
from contextlib import contextmanager

import pytest

from front.relay import BadChunking, ChunkedDecoder, Relay, Settings, build_packet, parse_variables

LIMIT = 1000  # the largest body any route takes, in these tests


class Workers:
    """A Unix socket that takes one request per connection, records it (the
    variables and the body after them) with the time it came, and answers
    with `answer` (the app: a body over LIMIT is refused unread)."""

    def __init__(self, path, answer=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", limit=LIMIT):
        self.requests = []
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
                conn.sendall(self.answer)


def bind(path):
    """A listening Unix socket at `path`, as uWSGI's master makes the relay's (shared-socket, mode 600)."""
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(previous)
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
def running_relay(tmp_path, settings, polls=None):
    """A relay serving in a thread at tmp_path/relay.sock, in front of
    tmp_path/workers.sock; each time it wakes from epoll, a None is added to
    `polls`."""
    path = str(tmp_path / "relay.sock")
    server = Relay(bind(path), str(tmp_path / "workers.sock"), settings)
    if polls is not None:
        server.poll = CountedPoll(server.poll, polls)
    stopped = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stopped.is_set,), daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stopped.set()
        thread.join(5)


@pytest.fixture
def relay(tmp_path):
    """A relay (body deadline 1 s, plus 1 s per 1,000 bytes), the stand-in
    for its workers, and the relay's socket path."""
    workers = Workers(str(tmp_path / "workers.sock"))
    with running_relay(tmp_path, Settings(1.0, 1000, LIMIT)) as path:
        yield path, workers
    workers.listener.close()


@pytest.fixture
def connect():
    """Opens client connections to the relay, closed after the test."""
    clients = []

    def open_one(path):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        clients.append(client)
        client.settimeout(5)
        client.connect(path)
        return client

    yield open_one
    for client in clients:
        client.close()


def packet(*variables):
    return build_packet((0, 0), [(name.encode(), value.encode()) for name, value in variables])


def answer(client):
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


def test_a_packet_round_trips_through_parse_and_build():
    sent = [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/items"), (b"EMPTY", b"")]
    data = build_packet((5, 7), sent)
    assert data[0] == 5 and data[3] == 7 and struct.unpack("<H", data[1:3])[0] == len(data) - 4
    assert parse_variables(data) == sent


def test_the_workers_see_a_request_only_once_its_body_is_in(relay, connect):
    path, workers = relay
    client = connect(path)
    client.sendall(packet(("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "6")) + b"ab")
    time.sleep(0.3)
    assert workers.requests == []  # a worker would have been waiting for the rest
    sent_at = time.monotonic()
    client.sendall(b"cdef")
    assert answer(client).endswith(b"ok")
    (when, variables, body) = workers.requests[0]
    assert when >= sent_at and body == b"abcdef" and variables[b"REQUEST_METHOD"] == b"POST"


def test_a_chunked_body_arrives_decoded_with_a_length(relay, connect):
    path, workers = relay
    client = connect(path)
    client.sendall(packet(("REQUEST_METHOD", "POST"), ("HTTP_TRANSFER_ENCODING", "chunked")))
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
    path, workers = relay
    client = connect(path)
    framing = ("HTTP_TRANSFER_ENCODING", "chunked") if chunked else ("CONTENT_LENGTH", "100")
    client.sendall(packet(("REQUEST_METHOD", "POST"), framing))
    started = time.monotonic()
    try:
        for _ in range(10):
            client.sendall(b"1\r\nx\r\n" if chunked else b"x")
            time.sleep(0.2)
    except BrokenPipeError:
        pass  # answered and closed
    assert answer(client).endswith(b"ok")
    (when, variables, body) = workers.requests[0]
    assert variables[b"STORES_API_BODY_ERROR"] == b"timeout"
    assert body == b"" and variables[b"CONTENT_LENGTH"] == b"0"
    assert 1.0 <= when - started < 1.5


def test_broken_chunked_framing_is_marked(relay, connect):
    path, workers = relay
    client = connect(path)
    client.sendall(packet(("REQUEST_METHOD", "POST"), ("HTTP_TRANSFER_ENCODING", "chunked")) + b"zz\r\nab\r\n")
    assert answer(client).endswith(b"ok")
    assert workers.requests[0][1][b"STORES_API_BODY_ERROR"] == b"chunking"


def test_a_body_larger_than_any_route_takes_goes_on_at_once_without_it(relay, connect):
    """The app refuses it (413) from its Content-Length: the relay stores none of it."""
    path, workers = relay
    client = connect(path)
    client.sendall(packet(("REQUEST_METHOD", "PUT"), ("CONTENT_LENGTH", str(100 * LIMIT))) + b"x" * 10)
    assert answer(client).endswith(b"ok")  # with 99,990 bytes of the body never sent
    assert workers.requests[0][1][b"CONTENT_LENGTH"] == str(100 * LIMIT).encode()


def test_a_chunked_body_over_the_limit_goes_on_with_its_length_so_far(relay, connect):
    path, workers = relay
    client = connect(path)
    client.sendall(packet(("REQUEST_METHOD", "PUT"), ("HTTP_TRANSFER_ENCODING", "chunked")))
    client.sendall(b"%x\r\n%s\r\n" % (LIMIT + 1, b"y" * (LIMIT + 1)))
    assert answer(client).endswith(b"ok")
    assert int(workers.requests[0][1][b"CONTENT_LENGTH"]) > LIMIT


def test_a_request_without_a_body_goes_on_byte_for_byte(relay, connect):
    path, workers = relay
    client = connect(path)
    sent = packet(("REQUEST_METHOD", "GET"), ("PATH_INFO", "/items"), ("HTTP_X_ODD", "CONTENT_LENGTH"))
    client.sendall(sent)
    assert answer(client).endswith(b"ok")
    variables = workers.requests[0][1]
    assert list(variables.items()) == parse_variables(sent)


@pytest.mark.parametrize("size", [400_000, 3_000_000])
def test_a_large_answer_reaches_a_slow_reader_whole(tmp_path, connect, size):
    """An answer larger than the sockets' buffers, read slowly: the relay
    waits for the reader instead of dropping bytes. (400 kB: the worker has
    sent it all and closed while the relay still waits for the reader.)"""
    big = b"x" * size
    Workers(str(tmp_path / "workers.sock"), answer=b"HTTP/1.1 200 OK\r\n\r\n" + big)
    polls = []
    with running_relay(tmp_path, Settings(1.0, 1000, LIMIT), polls) as path:
        client = connect(path)
        client.sendall(packet(("REQUEST_METHOD", "GET")))
        time.sleep(0.5)  # the answer piles up in front of a reader that has not started
        waited = len(polls)
        assert answer(client) == b"HTTP/1.1 200 OK\r\n\r\n" + big
    # Meanwhile it slept in epoll (a wake-up a tick, 0.05 s), not spun on the
    # worker's hang-up: that was hundreds of thousands of wake-ups a second.
    assert waited < 100, waited


def test_a_large_body_sent_in_small_pieces_arrives_whole(tmp_path, connect):
    """3 MB in 4 KiB pieces (the router's buffer): whole, in order, once."""
    body = bytes(range(256)) * (3 * 4096)
    workers = Workers(str(tmp_path / "workers.sock"), limit=len(body))
    with running_relay(tmp_path, Settings(30.0, 1000, len(body))) as path:
        client = connect(path)
        client.sendall(packet(("REQUEST_METHOD", "PUT"), ("CONTENT_LENGTH", str(len(body)))))
        for start in range(0, len(body), 4096):
            client.sendall(body[start : start + 4096])
        assert answer(client).endswith(b"ok")
    assert workers.requests[0][2] == body


@pytest.mark.parametrize("framing", [b"1x\r\n", b"1\r\nabX\r\n", b"f" * 17 + b"\r\n", b"1" * 2000])
def test_the_chunked_decoder_refuses_what_is_not_framing(framing):
    with pytest.raises(BadChunking):
        ChunkedDecoder().feed(framing)


def test_a_chunk_declaring_more_than_any_route_takes_goes_on_at_once(relay, connect):
    """Not held while its bytes arrive (they would fill the relay's memory)."""
    path, workers = relay
    client = connect(path)
    client.sendall(packet(("REQUEST_METHOD", "PUT"), ("HTTP_TRANSFER_ENCODING", "chunked")) + b"ffffffff\r\nxx")
    assert answer(client).endswith(b"ok")
    assert int(workers.requests[0][1][b"CONTENT_LENGTH"]) > LIMIT


@pytest.mark.parametrize(("sent", "seen"), [("5 ", b"5"), ("\t5", b"5")])
def test_a_content_length_with_spaces_is_read_as_its_number(relay, connect, sent, seen):
    path, workers = relay
    client = connect(path)
    client.sendall(packet(("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", sent)) + b"hello")
    assert answer(client).endswith(b"ok")
    (_, variables, body) = workers.requests[0]
    assert variables[b"CONTENT_LENGTH"] == seen and body == b"hello"


@pytest.mark.parametrize("sent", ["5x", "-1", "", "0x10"])
def test_a_content_length_that_is_no_number_is_marked(relay, connect, sent):
    path, workers = relay
    client = connect(path)
    client.sendall(packet(("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", sent)) + b"hello")
    assert answer(client).endswith(b"ok")
    (_, variables, body) = workers.requests[0]
    assert variables[b"STORES_API_BODY_ERROR"] == b"framing" and body == b""


def test_an_answer_sent_before_the_body_is_read_reaches_the_client(tmp_path, connect):
    """A worker may answer (401, 413, 429) without reading a large body, and
    close: the relay's next send fails, but the answer is still delivered."""
    body = b"x" * 2_000_000
    Workers(str(tmp_path / "workers.sock"), answer=b"HTTP/1.1 401 UNAUTHORIZED\r\nContent-Length: 2\r\n\r\nno", limit=0)
    with running_relay(tmp_path, Settings(30.0, 1000, len(body))) as path:
        client = connect(path)
        client.sendall(packet(("REQUEST_METHOD", "PUT"), ("CONTENT_LENGTH", str(len(body)))) + body)
        assert answer(client).endswith(b"no")


def test_a_request_the_workers_cannot_take_does_not_stop_the_relay(tmp_path, connect):
    """No worker socket yet (a restart): a late body's request is dropped
    (the router answers 502), and the relay goes on serving."""
    with running_relay(tmp_path, Settings(0.3, 1000, LIMIT)) as path:
        client = connect(path)
        client.sendall(packet(("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "100")) + b"x")
        assert answer(client) == b""  # dropped at its deadline
        workers = Workers(str(tmp_path / "workers.sock"))
        later = connect(path)
        later.sendall(packet(("REQUEST_METHOD", "GET")))
        assert answer(later).endswith(b"ok")
    workers.listener.close()


@pytest.mark.parametrize(
    "framing",
    [
        [("HTTP_TRANSFER_ENCODING", "xchunked")],
        [("HTTP_TRANSFER_ENCODING", "gzip, chunked")],
        [("HTTP_TRANSFER_ENCODING", "chunked"), ("CONTENT_LENGTH", "3")],
        [("CONTENT_LENGTH", "0"), ("HTTP_TRANSFER_ENCODING", "chunked")],
    ],
)
def test_framing_that_cannot_be_trusted_is_marked_at_once(relay, connect, framing):
    """Not waited for (the router sends no body for an encoding it does not
    know), and never both headers (a way to smuggle a request)."""
    path, workers = relay
    client = connect(path)
    client.sendall(packet(("REQUEST_METHOD", "POST"), *framing) + b"3\r\nabc\r\n0\r\n\r\n")
    assert answer(client).endswith(b"ok")
    (_, variables, body) = workers.requests[0]
    assert variables[b"STORES_API_BODY_ERROR"] == b"framing" and body == b""


def test_a_chunked_body_of_mostly_framing_is_refused(relay, connect):
    """Chunk extensions cost the relay's CPU and carry no body: past six
    times the largest body on the wire, the body is refused."""
    path, workers = relay
    client = connect(path)
    client.sendall(packet(("REQUEST_METHOD", "POST"), ("HTTP_TRANSFER_ENCODING", "chunked")))
    try:
        for _ in range(20):
            client.sendall(b"1;" + b"e" * 900 + b"\r\nx\r\n")
    except BrokenPipeError:
        pass  # answered and closed
    assert answer(client).endswith(b"ok")
    assert workers.requests[0][1][b"STORES_API_BODY_ERROR"] == b"chunking"
