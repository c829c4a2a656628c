"""Whole requests for the workers: a relay between uWSGI's HTTP router and them.

    uwsgi --ini uwsgi.ini     runs this file as __main__ in a uWSGI mule

The router (`http =`) reads a request's headers, turns them into one uwsgi
packet, then passes the body on as the client sends it. The relay takes
packet and body on a private Unix socket (uwsgi.ini's `http-to`), and only
once the body is all in does it connect to the workers (`socket`) and send
them the whole request; their answer goes back to the router untouched.
One process waits on every socket at once (epoll), so a client trickling
its body costs a socket here, never a worker. A request without a body (no
Content-Length, not chunked) is sent on as it came, unparsed.

On the way it:
- decodes a body sent with `Transfer-Encoding: chunked` and sends it on
  with a Content-Length;
- gives a body REQUEST_BODY_TIMEOUT seconds, plus one for every
  REQUEST_BODY_MIN_RATE bytes it holds (a chunked body, whose length is not
  known, for those that arrived so far). A body late by then, or
  with broken chunked framing, is not read further: the request goes on
  without it, marked STORES_API_BODY_ERROR (`timeout`, `chunking`), and
  wsgi.py answers 408 or 400, closing the connection. So is a request whose
  framing cannot be trusted (`framing`): a Content-Length that is no
  number, a Transfer-Encoding other than `chunked`, or both headers;
- holds no body larger than any route takes (the image upload's), nor a
  chunked one once it declares more: such a request goes on at once
  without its body, and the app answers 413 from its Content-Length
  without reading one.

The packet is uWSGI's: a 4-byte header (modifier1, the variables' size as
a little-endian u16, modifier2), then each variable as a u16 length and the
bytes of its name, the same for its value.
"""

import logging
import os
import select
import signal
import socket
import struct
import time

log = logging.getLogger("stores_api.front")
READ, WRITE = select.EPOLLIN, select.EPOLLOUT
# A chunk-size line longer than this is not HTTP framing.
LONGEST_CHUNK_LINE = 1024
# A chunked body may bring this many times the largest body in all (chunks of
# 1 byte are 6 bytes on the wire); past it, it is refused as bad framing.
FRAMING_ALLOWANCE = 6
# The router sends a packet at once; a connection that does not is dropped.
PACKET_TIMEOUT = 10
# How often deadlines are checked, and a busy worker socket is tried again.
TICK = 0.05
# How long an answered connection waits for the router to close it.
LINGER = 5
RECEIVE = 262144


class BadChunking(Exception):
    pass


def parse_variables(packet):
    """The packet's variables, as a list of (name, value) bytes pairs."""
    variables = []
    position, end = 4, len(packet)
    while position < end:
        (size,) = struct.unpack_from("<H", packet, position)
        name = bytes(packet[position + 2 : position + 2 + size])
        position += 2 + size
        (size,) = struct.unpack_from("<H", packet, position)
        value = bytes(packet[position + 2 : position + 2 + size])
        position += 2 + size
        variables.append((name, value))
    return variables


def build_packet(modifiers, variables):
    body = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in variables)
    return bytes((modifiers[0],)) + struct.pack("<H", len(body)) + bytes((modifiers[1],)) + body


class ChunkedDecoder:
    """A chunked body fed in pieces; `done` once the last chunk and the
    trailers are in. `body` holds the decoded bytes."""

    def __init__(self):
        self.body = bytearray()
        self.pending = bytearray()
        self.left = None  # bytes still due of the current chunk
        self.trailers = False
        self.done = False

    def held(self):
        """The bytes the body holds or has declared so far."""
        return len(self.body) + len(self.pending) + (self.left or 0)

    def feed(self, data):
        self.pending += data
        while not self.done:
            if self.left is not None:
                if len(self.pending) < self.left + 2:
                    return
                if self.pending[self.left : self.left + 2] != b"\r\n":
                    raise BadChunking
                self.body += self.pending[: self.left]
                del self.pending[: self.left + 2]
                self.left = None
                continue
            end = self.pending.find(b"\r\n")
            if end < 0:
                if len(self.pending) > LONGEST_CHUNK_LINE:
                    raise BadChunking
                return
            line = bytes(self.pending[:end])
            del self.pending[: end + 2]
            if self.trailers:
                self.done = not line
                continue
            size = line.split(b";", 1)[0].strip()
            if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                raise BadChunking
            self.left = int(size, 16) or None
            self.trailers = self.left is None


class Settings:
    """What the relay needs of the app's settings."""

    def __init__(self, body_timeout, body_min_rate, largest_body):
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate
        self.largest_body = largest_body

    def allowed(self, length):
        """Seconds a body of `length` bytes may take to arrive."""
        return self.body_timeout + length / self.body_min_rate


class Request:
    """One request from the router: its packet, its body, then the answer back."""

    __slots__ = (
        "relay", "client", "received", "packet", "packet_size", "variables", "length", "decoder", "arrived",
        "started", "deadline", "worker", "to_worker", "to_client", "paused", "forwarded", "changed", "lingering",
    )  # fmt: skip

    def __init__(self, relay, client):
        self.relay, self.client = relay, client
        self.received = bytearray()
        self.packet_size = None
        self.variables = None
        self.length = 0
        self.decoder = None
        self.started = time.monotonic()
        self.deadline = self.started + PACKET_TIMEOUT
        self.worker = None
        self.to_worker = None  # the request, as far as the worker has not taken it
        self.to_client = b""  # the answer, as far as the router has not taken it
        self.paused = False  # the worker is not read while the router lags
        self.forwarded = False
        self.lingering = False  # answered, waiting for the router to close

    # -- the router's side ------------------------------------------------------
    def client_event(self, events):
        if events & WRITE:
            self.client_writable()
        if events & READ and self.client is not None:
            self.client_readable()

    def client_readable(self):
        try:
            data = self.client.recv(RECEIVE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
        elif not self.forwarded:
            self.take(data)
        # else: the rest of a body the app will not read, dropped (left
        # unread, it would reset the connection and could lose the answer)

    def take(self, data):
        self.received += data
        if self.variables is None:
            if self.packet_size is None and len(self.received) >= 4:
                self.packet_size = 4 + int.from_bytes(self.received[1:3], "little")
            if self.packet_size is None or len(self.received) < self.packet_size:
                return
            self.read_packet()
            if self.forwarded:
                return
        if self.decoder is not None:
            settings = self.relay.settings
            arrived, self.received = self.received, bytearray()
            self.arrived += len(arrived)
            if self.arrived > FRAMING_ALLOWANCE * settings.largest_body + LONGEST_CHUNK_LINE:
                self.fail(b"chunking")  # mostly framing: extensions, trailers, tiny chunks
                return
            self.deadline = self.started + settings.allowed(min(self.arrived, settings.largest_body))
            try:
                self.decoder.feed(arrived)
            except BadChunking:
                self.fail(b"chunking")
                return
            if self.decoder.held() > settings.largest_body:
                # Too large for any route: the app answers 413 from the length.
                self.forward(b"", length=settings.largest_body + 1)
            elif self.decoder.done:
                self.forward(bytes(self.decoder.body))
        elif len(self.received) >= self.length:
            self.forward(bytes(self.received[: self.length]))

    def read_packet(self):
        packet = self.packet = bytes(self.received[: self.packet_size])
        del self.received[: self.packet_size]
        self.variables = ()
        self.changed = False
        if b"CONTENT_LENGTH" not in packet and b"TRANSFER_ENCODING" not in packet:
            self.forward(b"")  # no body: the most common request, sent on as it came
            return
        self.variables = parse_variables(packet)
        framing = dict(self.variables)  # uWSGI's router joins repeated header lines into one
        length = framing.get(b"CONTENT_LENGTH")
        encoding = framing.get(b"HTTP_TRANSFER_ENCODING")
        if length is not None:
            digits = length.strip(b" \t")
            if not digits.isdigit() or encoding is not None:
                # What the worker would read is anyone's guess (and, with both,
                # a way to smuggle a second request past a proxy): refused.
                self.fail(b"framing")
                return
            self.length = int(digits)
            self.changed = digits != length  # the worker gets the plain number
        elif encoding is not None and encoding.strip(b" \t").lower() != b"chunked":
            self.fail(b"framing")  # gzip, chunked; a misspelling: the router sends no body for them
            return
        settings = self.relay.settings
        if encoding is not None:
            self.decoder = ChunkedDecoder()
            self.arrived = 0
            self.deadline = self.started + settings.allowed(0)
        elif self.length > settings.largest_body:
            self.forward(b"", length=self.length)  # the app refuses it (413) without reading a byte
        elif self.length:
            self.deadline = self.started + settings.allowed(self.length)
        else:
            self.forward(b"")

    def fail(self, reason):
        """The body will not be read: the app answers for it (wsgi.py)."""
        self.variables = [*self.variables, (b"STORES_API_BODY_ERROR", reason)]
        self.changed = True
        self.forward(b"")

    def expire(self, now):
        """Past its deadline: a packet never whole or an answered connection
        the router keeps open is closed; a late body goes on without it."""
        if now < self.deadline:
            return
        if self.lingering or self.variables is None:
            self.close()
        else:
            self.fail(b"timeout")

    # -- the workers' side ------------------------------------------------------
    def forward(self, body, length=None):
        """Send the request on, with `body`, saying it is `length` bytes long
        (by default, as long as `body`: only a body the app refuses unread
        is sent shorter than its length)."""
        self.forwarded = True
        self.relay.pending.discard(self)
        if self.decoder is not None or self.changed:
            framing = (b"CONTENT_LENGTH", b"HTTP_TRANSFER_ENCODING")
            variables = [v for v in self.variables if v[0] not in framing]
            variables.append((b"CONTENT_LENGTH", str(len(body) if length is None else length).encode()))
            self.to_worker = memoryview(build_packet((self.packet[0], self.packet[3]), variables) + body)
        else:
            self.to_worker = memoryview(self.packet + body)
        self.connect()

    def connect(self):
        worker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        worker.setblocking(False)
        try:
            worker.connect(self.relay.workers_path)
        except (BlockingIOError, InterruptedError):
            worker.close()  # the workers' backlog is full: try again shortly
            self.relay.waiting.add(self)
            return
        except OSError:
            worker.close()
            self.close()  # no workers: the router answers 502
            return
        self.worker = worker
        self.relay.register(worker, READ, self.worker_event)
        self.worker_writable(registered=READ)

    def worker_event(self, events):
        # Events of one poll may outlive a request closed earlier in it. The
        # answer first: a worker may answer (401, 413...) before reading a body.
        if events & (READ | select.EPOLLHUP | select.EPOLLERR) and self.worker is not None and not self.paused:
            self.worker_readable()
        if events & WRITE and self.worker is not None and self.to_worker:
            self.worker_writable(registered=READ | WRITE)

    def worker_writable(self, registered=READ | WRITE):
        try:
            sent = self.worker.send(self.to_worker)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # The worker answered without reading all of the request, and
            # closed: what it answered is still there to read.
            sent = len(self.to_worker)
        self.to_worker = self.to_worker[sent:]
        wanted = READ | WRITE if self.to_worker else READ
        if wanted != registered:
            self.relay.modify(self.worker, wanted)

    def worker_readable(self):
        try:
            data = self.worker.recv(RECEIVE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.finish()  # the answer is all sent: the worker is not read while the router lags
            return
        self.to_client = data
        self.client_writable()

    def client_writable(self):
        try:
            sent = self.client.send(self.to_client)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        self.to_client = self.to_client[sent:]
        if self.to_client and not self.paused:
            # The router is slower than the worker: wait for it, reading no more
            # (out of epoll altogether: a closed socket's hang-up would wake it).
            self.paused = True
            self.relay.unregister(self.worker)
            self.relay.modify(self.client, WRITE)
        elif not self.to_client and self.paused:
            self.paused = False
            self.relay.modify(self.client, READ)
            self.relay.register(self.worker, READ | (WRITE if self.to_worker else 0), self.worker_event)

    def finish(self):
        """The answer is all sent: end it (EOF to the router), and read and
        drop what is left of the request until the router closes, or LINGER
        seconds. Closing with the request's bytes unread would reset the
        connection, and the router could lose the answer."""
        self.relay.unregister(self.worker)
        self.worker.close()
        self.worker = None
        try:
            self.client.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.lingering = True
        self.deadline = time.monotonic() + LINGER
        self.relay.pending.add(self)

    def close(self):
        self.forwarded = True
        self.relay.active.discard(self)
        self.relay.pending.discard(self)
        self.relay.waiting.discard(self)
        for sock in (self.client, self.worker):
            if sock is not None:
                self.relay.unregister(sock)
                sock.close()
        self.client = self.worker = None


class Relay:
    def __init__(self, listener, workers_path, settings):
        self.workers_path = workers_path
        self.settings = settings
        self.poll = select.epoll()
        self.handlers = {}  # file descriptor -> what handles its events
        self.active = set()  # requests not yet closed
        self.pending = set()  # requests with a deadline running: still arriving, or answered and lingering
        self.waiting = set()  # requests waiting for room in the workers' backlog
        self.stopping = False
        self.listener = listener
        self.listener.setblocking(False)
        self.register(listener, READ, self.accept)

    def register(self, sock, events, handler):
        self.handlers[sock.fileno()] = handler
        self.poll.register(sock, events)

    def modify(self, sock, events):
        self.poll.modify(sock, events)

    def unregister(self, sock):
        fd = sock.fileno()
        if self.handlers.pop(fd, None) is not None:
            self.poll.unregister(fd)

    def stop(self, *_):
        """Take no more requests; finish those in hand (a graceful stop)."""
        self.stopping = True

    def accept(self, events):
        while True:
            try:
                client, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            client.setblocking(False)
            request = Request(self, client)
            self.active.add(request)
            self.pending.add(request)
            self.register(client, READ, request.client_event)

    def serve(self, stop=lambda: False):
        next_tick = time.monotonic() + TICK
        handlers = self.handlers
        while not stop():
            if self.stopping:
                if self.listener is not None:
                    self.unregister(self.listener)
                    self.listener.close()
                    self.listener = None
                if not self.active:
                    return
            for fd, events in self.poll.poll(TICK):
                handler = handlers.get(fd)
                if handler is None:
                    continue  # closed earlier in this poll
                request = getattr(handler, "__self__", None)
                if isinstance(request, Request):
                    self.guarded(request, handler, events)
                else:
                    handler(events)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + TICK
                self.tick(now)

    def tick(self, now):
        """Deadlines, and requests waiting for room at the workers."""
        for request in list(self.pending):
            self.guarded(request, request.expire, now)
        waiting, self.waiting = self.waiting, set()
        for request in waiting:
            self.guarded(request, request.connect)

    @staticmethod
    def guarded(request, step, *args):
        try:
            step(*args)
        except Exception:  # one request's fault must not stop every other
            log.exception("relay: dropping a connection")
            request.close()


def settings_from_environment():
    """The relay's settings, read as create_app reads them (with .env)."""
    from dotenv import find_dotenv, load_dotenv

    from config import config_class, from_environment, largest_upload_body

    load_dotenv(find_dotenv(usecwd=True))
    settings = config_class()
    values = {name: getattr(settings, name) for name in dir(settings) if name.isupper()}
    values.update(from_environment(settings))
    largest = max(values["MAX_CONTENT_LENGTH"] or 0, largest_upload_body(values))
    return Settings(values["REQUEST_BODY_TIMEOUT"], values["REQUEST_BODY_MIN_RATE"], largest)


def inherited(path):
    """The listening socket uWSGI's master made at `path` (uwsgi.ini's
    shared-socket, there before the router takes its first request)."""
    for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
        try:
            copy = os.dup(fd)
        except OSError:
            continue
        try:
            candidate = socket.socket(fileno=copy)
        except OSError:
            os.close(copy)  # not a socket
            continue
        if candidate.family == socket.AF_UNIX and candidate.getsockname() == path:
            return candidate
        candidate.close()
    raise RuntimeError(f"no inherited socket at {path}")


def uwsgi_option(name):
    import uwsgi

    value = uwsgi.opt[name]
    return (value[0] if isinstance(value, list) else value).decode()


if __name__ == "__main__":
    relay = Relay(inherited(uwsgi_option("http-to")), uwsgi_option("socket"), settings_from_environment())
    # uWSGI asks a mule to stop with SIGHUP (graceful stop and reload); Ctrl-C, SIGTERM alike.
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, relay.stop)
    relay.serve()
