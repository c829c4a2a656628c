"""The HTTP front of `uwsgi --ini uwsgi.ini`: whole requests for the workers.

    uwsgi --ini uwsgi.ini     runs this file as __main__ in a uWSGI mule

uWSGI's master opens the public port (uwsgi.ini's `shared-socket`). This one
process takes every connection on it and waits on all of them at once
(epoll): it reads each request's head and body, and only once the request
is whole does it connect to the workers (`socket`, a private Unix socket)
and send it to them as uWSGI's packet and the body. The answer goes back to
the client as it comes. A client trickling its head or its body costs a
socket here, never a worker.

A connection serves one request after another (HTTP/1.1 keep-alive, also
after a request with a body; pipelined requests are answered in order). It
ends after an answer the client could not tell the end of (no
Content-Length), after `Connection: close` from either side, after an
HTTP/1.0 request, and once idle for HEAD_TIMEOUT seconds.

On the way it:
- builds the packet as uWSGI's own HTTP router does (the same variables;
  PATH_INFO decoded and its dot segments removed by the same rules, see
  `decode_path`), except that a header whose name holds `_` is dropped, as
  Nginx drops it: `X_Forwarded_For` would otherwise pass for
  `X-Forwarded-For`;
- answers an HTTP/1.1 client's `Expect: 100-continue` at once, so it sends its body now;
- decodes a body sent with `Transfer-Encoding: chunked` and sends it on
  with a Content-Length;
- gives a head HEAD_TIMEOUT seconds and a body REQUEST_BODY_TIMEOUT, plus
  one for every REQUEST_BODY_MIN_RATE bytes it holds (a chunked body, whose
  length is not known, for those that arrived so far). A head late by then
  ends the connection. A body late by then is not read further: the request
  goes on without it, marked STORES_API_REQUEST_ERROR (`timeout`), and
  wsgi.py answers 408, closing the connection. So it is, answered 400, for a
  head that is no HTTP/1.x or larger than HEAD_LIMIT (`head`), broken
  chunked framing (`chunking`), framing that cannot be trusted
  (`framing`: a Content-Length that is no number, a Transfer-Encoding other
  than `chunked`, or both headers) and, when TRUSTED_PROXY_COUNT is set, more
  than one X-Forwarded-For line (`forwarded`: the proxy may have appended
  the client's address to any of them, and the others are the client's);
- holds no body larger than any route takes (the image upload's), nor a
  chunked one once it declares more: such a request goes on at once
  without its body, and the app answers 413 from its Content-Length
  without reading one;
- holds at most REQUEST_BODIES_HELD_LIMIT bytes of bodies for all
  connections together: a body that would take more is not read (`busy`, 503 with
  Retry-After), and takes at most MOST_HEADER_LINES header lines and
  MOST_CHUNK_LINES chunk-size and trailer lines per request (400): each
  line costs this one process some CPU;
- holds an answer for a client slower than its worker (in memory, then in
  a temporary file), so that no worker waits on a slow reader.

The packet: a 4-byte header (modifier1 0, the variables' size as a
little-endian u16, modifier2 0), then each variable as a u16 length and the
bytes of its name, the same for its value.
"""

import errno
import json
import logging
import os
import re
import resource
import select
import signal
import socket
import struct
import tempfile
import time

log = logging.getLogger("stores_api.front")
READ, WRITE = select.EPOLLIN, select.EPOLLOUT
# A request's head (request line and headers) may be this large, and must be
# in within HEAD_TIMEOUT seconds of the connection opening or of its previous
# answer (so an idle kept-alive connection closes after as long).
HEAD_LIMIT = 65536
HEAD_TIMEOUT = 10
# A client that takes no part of its answer for this long is dropped.
ANSWER_TIMEOUT = 30
# While a client is slower than its worker, its answer waits here: in memory
# up to ANSWER_BUFFER per connection (ANSWERS_HELD_LIMIT for all), the rest
# in a temporary file (ANSWERS_SPOOLED_LIMIT for all), as Nginx buffers a
# proxied answer. So the worker is free once its answer is out, however
# slowly the client reads it.
ANSWER_BUFFER = 1024 * 1024
ANSWERS_HELD_LIMIT = 64 * 1024 * 1024
ANSWERS_SPOOLED_LIMIT = 1024 * 1024 * 1024
# At most this many header lines (each costs the relay's CPU).
MOST_HEADER_LINES = 100
# A chunk-size line longer than this is not HTTP framing, and a body of more
# chunk-size and trailer lines than this costs the relay too much CPU.
LONGEST_CHUNK_LINE = 1024
MOST_CHUNK_LINES = 10_000
# A chunked body may bring this many times the largest body in all (chunks of
# 1 byte are 6 bytes on the wire); past it, it is refused as bad framing.
FRAMING_ALLOWANCE = 6
# How often deadlines are checked, and a busy worker socket is tried again.
TICK = 0.05
# How long an ended connection waits for the client to close it.
LINGER = 5
RECEIVE = 262144
# What a connection is doing.
HEAD, BODY, FORWARDED, LINGERING = range(4)

# Besides the CRLF ending each line, a head holds no control character but tab.
CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
HTTP_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# The answers the app cannot give, as it gives its errors (wsgi.py, core/errors.py).
NO_WORKERS = (b"503 Service Unavailable", "service_unavailable", "The service is restarting: try again in a moment.")
NO_ANSWER = (b"500 Internal Server Error", "internal_error", "The request ended without an answer.")


def own_answer(status, error, message):
    """An answer given here: the error envelope, an X-Request-ID (repeated in
    a 500's body, as the app does), Retry-After with a 503; it ends the connection."""
    request_id = os.urandom(16).hex()
    body = {"error": error, "message": message, **({"request_id": request_id} if status[:3] == b"500" else {})}
    body = json.dumps(body).encode()
    retry = b"Retry-After: 1\r\n" if status[:3] == b"503" else b""
    return (
        b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nX-Request-ID: %s\r\n%sConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (status, request_id.encode(), retry, len(body), body)
    )


class BadChunking(Exception):
    pass


class BadHead(Exception):
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


def build_packet(variables):
    pack = struct.Struct("<H").pack
    try:
        body = b"".join(b"".join((pack(len(k)), k, pack(len(v)), v)) for k, v in variables)
        size = pack(len(body))
    except struct.error:
        raise BadHead("the packet would be larger than uWSGI takes") from None
    return b"\0" + size + b"\0" + body


# Header names as variables: CONTENT_TYPE, or HTTP_ and the name in capitals
# with `-` as `_`. Kept for the names seen, up to a bound (clients choose them).
VARIABLE_NAMES = {}


def variable_name(name):
    known = VARIABLE_NAMES.get(name)
    if known is None:
        known = name.upper().replace(b"-", b"_")
        if known not in (b"CONTENT_LENGTH", b"CONTENT_TYPE"):
            known = b"HTTP_" + known
        if len(VARIABLE_NAMES) < 1024:
            VARIABLE_NAMES[name] = known
    return known


def decode_path(raw):
    """PATH_INFO from the request's path, as uWSGI 2.0's HTTP router makes it
    (core/utils.c, http_url_decode): %XX decoded (a non-hex digit gives a zero
    byte), runs of `/` made one, `.` and `..` segments of the raw path removed
    (not those written %2E), nothing from `#` on."""
    if raw[:1] == b"/" and b"%" not in raw and b"/." not in raw and b"//" not in raw and b"#" not in raw:
        return raw  # nothing to decode: nearly every request
    zero, percent1, percent2, slash, dot, dotdot = range(6)
    out = bytearray()
    no_slash = raw[:1] not in (b"/", b"")
    status = slash if no_slash else zero
    first = 0
    for i, c in enumerate(raw):
        if c == 0x23:  # '#'
            break
        if status == zero:
            if c == 0x25:
                status = percent1
            elif c == 0x2F:
                status = slash
            else:
                out.append(c)
        elif status == percent1:
            if c == 0x25:
                out.append(c)
                status = zero
            else:
                first, status = c, percent2
        elif status == percent2:
            out.append(hex_pair(first, c))
            status = zero
        elif status == slash:
            if c == 0x2E:
                status = dot
                continue
            if i > 0 or not no_slash:
                out.append(0x2F)
            status = percent1 if c == 0x25 else slash if c == 0x2F else zero
            if status == zero:
                out.append(c)
        elif status == dot:
            if c == 0x2E:
                status = dotdot
                continue
            if c == 0x2F:
                status = slash
                continue
            if i > 1:
                out.append(0x2F)
            out.append(0x2E)
            status = percent1 if c == 0x25 else zero
            if status == zero:
                out.append(c)
        else:  # dotdot
            if c == 0x2F:
                cut = out.rfind(b"/")
                del out[max(cut, 0) :]
                status = slash
                continue
            if i > 2:
                out.append(0x2F)
            out += b".."
            status = percent1 if c == 0x25 else zero
            if status == zero:
                out.append(c)
    if status in (slash, dot):
        out.append(0x2F)
    elif status == dotdot:
        del out[out.rfind(b"/") + 1 :]
    return bytes(out)


def hex_pair(high, low):
    """uWSGI's hex2num: the byte two hex digits write, or 0 if either is none."""
    digits = b"0123456789abcdef"
    high, low = digits.find(bytes((high,)).lower()), digits.find(bytes((low,)).lower())
    return 0 if high < 0 or low < 0 else (high << 4) + low


class ChunkedDecoder:
    """A chunked body fed in pieces; `done` once the last chunk and the
    trailers are in. `body` holds the decoded bytes, and `pending` what
    came after the body (the next request on the connection)."""

    def __init__(self):
        self.body = bytearray()
        self.pending = bytearray()
        self.left = None  # bytes still due of the current chunk
        self.trailers = False
        self.done = False
        self.lines = 0

    def held(self):
        """The bytes the body holds or has declared so far."""
        return len(self.body) + (self.left or 0)

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
            self.lines += 1
            if self.lines > MOST_CHUNK_LINES:
                raise BadChunking
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

    def __init__(self, body_timeout, body_min_rate, largest_body, trusted_proxies=0, bodies_limit=128 << 20):
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate
        self.largest_body = largest_body
        self.trusted_proxies = trusted_proxies
        self.bodies_limit = bodies_limit  # the bytes all bodies together may hold

    def allowed(self, length):
        """Seconds a body of `length` bytes may take to arrive."""
        return self.body_timeout + length / self.body_min_rate


class Connection:
    """One client's connection: its requests, one at a time, each read
    whole, sent to a worker, and its answer sent back."""

    __slots__ = (
        "relay", "client", "address", "client_mask", "received", "state", "deadline", "started", "method",
        "variables", "keep_alive", "length", "decoder", "arrived", "discard", "worker", "worker_mask",
        "to_worker", "to_client", "answer_head", "answer_size", "paused", "client_eof", "reserved", "spool",
        "spool_read", "spool_size", "expects_continue",
    )  # fmt: skip

    def __init__(self, relay, client, address):
        self.relay, self.client = relay, client
        self.address = address  # REMOTE_ADDR, REMOTE_PORT
        self.client_mask = 0
        self.received = bytearray()
        self.worker = None
        self.worker_mask = 0
        self.client_eof = False  # the client sent all it will (it may still read)
        self.reserved = 0  # of the bodies' limit (Settings), for this body
        self.spool = None  # the temporary file holding the rest of the answer, if any
        self.spool_read = self.spool_size = 0
        self.next_request()

    def next_request(self):
        self.state = HEAD
        self.started = time.monotonic()
        self.deadline = self.started + HEAD_TIMEOUT
        self.relay.pending.add(self)
        self.method = self.variables = self.decoder = None
        self.keep_alive = False
        self.length = 0
        self.discard = self.paused = False
        self.to_worker = None  # the request, as far as the worker has not taken it
        self.to_client = bytearray()  # the answer, as far as the client has not taken it
        self.answer_head = bytearray()
        self.answer_size = 0
        self.watch_client(self.client_reading())

    def client_reading(self):
        """READ while the client's bytes are wanted: not after its EOF, nor
        past HEAD_LIMIT of requests sent ahead of their turn."""
        ahead = self.state == FORWARDED and not self.discard and len(self.received) > HEAD_LIMIT
        return 0 if self.client_eof or ahead else READ

    def watch_client(self, mask):
        self.client_mask = self.relay.watch(self.client, self.client_mask, mask, self.client_event)

    def watch_worker(self, mask):
        self.worker_mask = self.relay.watch(self.worker, self.worker_mask, mask, self.worker_event)
        if mask & READ:
            self.relay.starved.discard(self)
        else:
            self.relay.starved.add(self)  # its answer is read again once there is room (Relay.tick)

    # -- the client's side -----------------------------------------------------
    def client_event(self, events):
        if events & WRITE:
            self.client_writable()
        if events & (READ | select.EPOLLHUP | select.EPOLLERR) and self.client is not None and not self.paused:
            self.client_readable()

    def client_readable(self):
        try:
            data = self.client.recv(RECEIVE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            if self.state == FORWARDED:
                self.client_eof = True  # its answers (pipelined ones too) still go out
                self.watch_client(0)
            else:
                self.close()
        elif self.state in (HEAD, BODY):
            self.received += data
            self.advance()
        elif self.state == FORWARDED and not self.discard:
            # The next request, sent before this one's answer: kept for later.
            self.received += data
            self.watch_client(self.client_reading())
        # else: the rest of a body the app will not read, or a request after
        # the last answer: dropped (left unread, they would reset the
        # connection, and the client could lose its answer)

    def advance(self):
        if self.state == HEAD:
            if self.received[:2] == b"\r\n":
                del self.received[:2]  # an empty line before a request may be ignored
            end = self.received.find(b"\r\n\r\n", 0, HEAD_LIMIT + 4)
            if end < 0:
                if len(self.received) > HEAD_LIMIT:
                    self.read_head(None)
                return
            head = bytes(self.received[:end])
            del self.received[: end + 4]
            self.read_head(head)
        if self.state != BODY:
            return
        settings = self.relay.settings
        if self.decoder is not None:
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
            grown = min(self.decoder.held(), settings.largest_body + 1) - self.reserved
            if grown > 0 and not self.reserve(grown):
                self.fail(b"busy")
                return
            if self.decoder.done and len(self.decoder.body) <= settings.largest_body:
                self.received = self.decoder.pending  # the next request, if any
                self.forward(bytes(self.decoder.body))
            elif self.decoder.held() > settings.largest_body:
                # Too large for any route: the app answers 413 from the length.
                self.discard = True
                self.forward(b"", length=settings.largest_body + 1)
        elif len(self.received) >= self.length:
            body = bytes(self.received[: self.length])
            del self.received[: self.length]
            self.forward(body)

    def read_head(self, head):
        """The request's variables from its head (None: too large), then its
        body's framing; a request without a body goes on at once."""
        self.started = time.monotonic()  # the body's time starts now
        try:
            if head is None:
                raise BadHead("larger than HEAD_LIMIT")
            fields, forwarded_lines = self.parse_head(head)
        except BadHead:
            self.variables = self.fallback_variables()
            self.fail(b"head")
            return
        if forwarded_lines > 1 and self.relay.settings.trusted_proxies:
            self.fail(b"forwarded")
            return
        length = fields.get(b"CONTENT_LENGTH")
        encoding = fields.get(b"HTTP_TRANSFER_ENCODING")
        if length is None and encoding is None:
            self.forward(b"")  # no body: the most common request
            return
        settings = self.relay.settings
        if length is not None:
            digits = length.strip(b" \t")
            if not digits.isdigit() or len(digits) > 18 or encoding is not None:
                # What the worker would read is anyone's guess (and, with both,
                # a way to smuggle a second request past a proxy): refused.
                self.fail(b"framing")
                return
            self.length = int(digits)
        elif encoding.lower() != b"chunked":
            self.fail(b"framing")  # gzip, chunked; a misspelling
            return
        if encoding is not None:
            self.decoder = ChunkedDecoder()
            self.arrived = 0
            self.deadline = self.started + settings.allowed(0)
        elif self.length > settings.largest_body:
            self.discard = True
            self.forward(b"", length=self.length)  # the app refuses it (413) without reading a byte
            return
        elif not self.length:
            self.forward(b"")
            return
        elif not self.reserve(self.length):
            self.fail(b"busy")
            return
        else:
            self.deadline = self.started + settings.allowed(self.length)
        self.state = BODY
        if self.expects_continue and not self.received:
            self.send_now(CONTINUE)

    def parse_head(self, head):
        """The packet's variables for `head`, as uWSGI's HTTP router makes
        them; returns the headers (name -> value, repeated lines joined) and
        how many lines of X-Forwarded-For there were."""
        if CONTROL.search(head.replace(b"\r\n", b"")):
            raise BadHead("a line ends other than with CRLF, or holds a control character")
        lines = head.split(b"\r\n")
        request_line = lines[0].split(b" ")
        if len(request_line) != 3:
            raise BadHead("no request line")
        method, target, version = request_line
        if version not in HTTP_VERSIONS or not TOKEN.match(method) or not target:
            raise BadHead("no HTTP/1.x request line")
        variables = self.request_variables(method, target, version)
        if len(lines) > MOST_HEADER_LINES + 1:
            raise BadHead("too many header lines")
        fields = {}
        forwarded_lines = 0
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not TOKEN.match(name):
                raise BadHead("a header line is no `name: value` (or is folded)")
            if b"_" in name:
                continue
            key = variable_name(name)
            value = value.strip(b" \t")
            if key in fields:
                fields[key] += b", " + value
            else:
                fields[key] = value
            forwarded_lines += key == b"HTTP_X_FORWARDED_FOR"
        variables += fields.items()
        self.method = method
        connection = fields.get(b"HTTP_CONNECTION", b"").lower()
        self.keep_alive = version == b"HTTP/1.1" and b"close" not in connection
        # An HTTP/1.0 client's expectation is ignored (RFC 9110, 10.1.1).
        self.expects_continue = version == b"HTTP/1.1" and fields.get(b"HTTP_EXPECT", b"").lower() == b"100-continue"
        self.variables = variables
        return fields, forwarded_lines

    def request_variables(self, method, target, version):
        """The variables uWSGI's router sends before the headers."""
        path, _, query = target.partition(b"?")
        host, port = self.address
        return [
            (b"REQUEST_METHOD", method),
            (b"PATH_INFO", decode_path(path)),
            (b"REQUEST_URI", target),
            (b"QUERY_STRING", query),
            (b"SERVER_PROTOCOL", version),
            (b"SCRIPT_NAME", b""),
            (b"SERVER_NAME", self.relay.server_name),
            (b"SERVER_PORT", self.relay.server_port),
            (b"REMOTE_ADDR", host),
            (b"REMOTE_PORT", port),
        ]

    def fallback_variables(self):
        """Enough of a request for the app to answer it 400."""
        return self.request_variables(b"GET", b"/", b"HTTP/1.1")

    def reserve(self, size):
        """Room for `size` more bytes of this body in the bodies' limit, if there is."""
        if self.relay.bodies_held + size > self.relay.settings.bodies_limit:
            return False
        self.relay.bodies_held += size
        self.reserved += size
        return True

    def release(self):
        self.relay.bodies_held -= self.reserved
        self.reserved = 0

    def fail(self, reason):
        """The rest of the request will not be read: the app answers for it
        (wsgi.py), and the connection ends."""
        self.variables = [*self.variables, (b"STORES_API_REQUEST_ERROR", reason)]
        self.discard = True
        self.forward(b"")

    def send_now(self, data):
        try:
            sent = self.client.send(data)
        except OSError:
            sent = 0
        if sent != len(data):
            self.close()  # a few bytes into an empty socket buffer: the client is gone

    def expire(self, now):
        """Past its deadline: a late head, a connection idle or lingering too
        long, or a client not reading its answer, ends; a late body goes on
        without it."""
        if now < self.deadline:
            return
        if self.state == BODY:
            self.fail(b"timeout")
        else:
            self.close()

    # -- the workers' side ------------------------------------------------------
    def forward(self, body, length=None):
        """Send the request on, with `body`, saying it is `length` bytes long
        (by default, as long as `body`: only a body the app refuses unread
        is sent shorter than its length)."""
        self.state = FORWARDED
        self.relay.pending.discard(self)
        variables = self.variables
        if length is not None or body or self.decoder is not None or self.discard:
            framing = (b"CONTENT_LENGTH", b"HTTP_TRANSFER_ENCODING")
            variables = [v for v in variables if v[0] not in framing]
            variables.append((b"CONTENT_LENGTH", str(len(body) if length is None else length).encode()))
        try:
            packet = build_packet(variables)
        except BadHead:
            variables = self.fallback_variables()
            variables.append((b"STORES_API_REQUEST_ERROR", b"head"))
            self.discard = True
            packet, body = build_packet(variables), b""
        self.to_worker = memoryview(packet + body)
        # The read that brought this request may have brought more than
        # HEAD_LIMIT of the next ones: no more until its turn.
        self.watch_client(self.client_reading())
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
            self.discard = True
            self.answer_complete(own_answer(*NO_WORKERS))
            return
        self.worker = worker
        self.watch_worker(READ)
        self.worker_writable()

    def answer_complete(self, answer):
        """An answer given here, not by a worker."""
        self.queue(answer)
        self.client_writable()
        if self.client is not None and not self.paused:
            self.answered()

    def worker_event(self, events):
        # Events of one poll may outlive a request closed earlier in it. The
        # answer first: a worker may answer (401, 413...) before reading a body.
        if events & (READ | select.EPOLLHUP | select.EPOLLERR) and self.worker is not None:
            if self.worker_events() & READ:
                self.worker_readable()
            else:
                self.watch_worker(self.worker_events())  # no room here now: out of epoll, not spinning
        if events & WRITE and self.worker is not None and self.to_worker:
            self.worker_writable()

    def worker_writable(self):
        try:
            sent = self.worker.send(self.to_worker)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # The worker answered without reading all of the request, and
            # closed: what it answered is still there to read.
            sent = len(self.to_worker)
        self.to_worker = self.to_worker[sent:]
        if not self.to_worker:
            self.release()  # the body is the worker's now
        self.watch_worker(self.worker_events())

    def worker_events(self):
        """What the worker's socket is waited for: READ while its answer has
        room here (else it is out of epoll, where its hang-up could spin the
        loop), WRITE while it has not taken all of the request."""
        room = (self.spool is None and self.memory_room()) or self.relay.answers_spooled < ANSWERS_SPOOLED_LIMIT
        return (READ if room else 0) | (WRITE if self.to_worker else 0)

    def memory_room(self):
        return len(self.to_client) < ANSWER_BUFFER and self.relay.answers_held < ANSWERS_HELD_LIMIT

    def worker_readable(self):
        try:
            data = self.worker.recv(RECEIVE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.relay.unwatch(self.worker)
            self.worker.close()
            self.worker, self.worker_mask = None, 0
            if not self.answer_size:  # the worker ended without answering (killed: harakiri)
                self.discard = True
                self.answer_complete(own_answer(*NO_ANSWER))
            elif not self.to_client and self.spool is None:
                self.answered()
            # else: once the client has taken the rest (client_writable)
            return
        self.answer_size += len(data)
        if len(self.answer_head) < HEAD_LIMIT and b"\r\n\r\n" not in self.answer_head:
            self.answer_head += data[:HEAD_LIMIT]
        self.queue(data)
        if self.paused:
            self.watch_worker(self.worker_events())  # its room here may be full now
        else:
            self.client_writable()

    def queue(self, data):
        """The answer's next bytes, in memory while there is room (and
        nothing waits in the file before them), else in the file."""
        if self.spool is None and self.memory_room():
            self.to_client += data
            self.relay.answers_held += len(data)
            return
        if self.spool is None:
            self.spool = tempfile.TemporaryFile(prefix="stores-api-answer-")
        data = memoryview(data)
        while data:
            written = os.pwrite(self.spool.fileno(), data, self.spool_size)
            self.spool_size += written
            self.relay.answers_spooled += written
            data = data[written:]

    def refill(self):
        """The file's next bytes into memory; the file goes once it is read."""
        data = os.pread(self.spool.fileno(), RECEIVE, self.spool_read)
        self.spool_read += len(data)
        self.relay.answers_spooled -= len(data)
        self.to_client += data
        self.relay.answers_held += len(data)
        if self.spool_read == self.spool_size:
            self.spool.close()
            self.spool, self.spool_read, self.spool_size = None, 0, 0

    def client_writable(self):
        if not self.to_client and self.spool is not None:
            self.refill()
        try:
            sent = self.client.send(self.to_client)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        del self.to_client[:sent]
        self.relay.answers_held -= sent
        if self.to_client or self.spool is not None:
            if not self.paused:
                # The client is slower than the worker: the answer waits here
                # for it (up to ANSWER_BUFFER), for ANSWER_TIMEOUT at most
                # without progress.
                self.paused = True
                if self.worker is not None:
                    self.watch_worker(self.worker_events())
                self.watch_client(WRITE)
            if sent or self not in self.relay.pending:
                self.deadline = time.monotonic() + ANSWER_TIMEOUT
                self.relay.pending.add(self)
        elif self.paused:
            self.paused = False
            self.relay.pending.discard(self)
            self.watch_client(self.client_reading())
            if self.worker is not None:
                self.watch_worker(self.worker_events())
            else:
                self.answered()  # all sent of an answer whose worker is done

    def answered(self):
        """The answer is all sent: the next request, or the end."""
        self.release()
        if self.keep_alive and not self.discard and not self.relay.stopping and self.answer_delimited():
            self.next_request()
            if self.received:
                self.advance()  # pipelined
            if self.client_eof and self.state == HEAD:
                self.finish()  # no other request will come
        else:
            self.finish()

    def answer_delimited(self):
        """Whether the client can tell where the answer ended (so the
        connection may serve another): its whole body as its
        Content-Length says, or an answer that has none."""
        head = bytes(self.answer_head)
        end = head.find(b"\r\n\r\n")
        if end < 0 or not head.startswith(b"HTTP/1.1 "):
            return False
        lower = head[:end].lower()
        if b"\r\ntransfer-encoding:" in lower:
            return False
        start = lower.find(b"\r\nconnection:")
        if start >= 0 and b"close" in lower[start + 13 :].split(b"\r\n", 1)[0]:
            return False
        status = head[9:12]
        if self.method == b"HEAD" or status[:1] == b"1" or status in (b"204", b"304"):
            return self.answer_size == end + 4  # and indeed no body
        start = lower.find(b"\r\ncontent-length:")
        if start < 0:
            return False
        value = lower[start + 17 :].split(b"\r\n", 1)[0].strip()
        return value.isdigit() and int(value) == self.answer_size - end - 4

    def finish(self):
        """End the connection: EOF to the client, then read and drop what it
        still sends until it closes, or LINGER seconds. Closing with its
        bytes unread would reset the connection, and it could lose the answer."""
        try:
            self.client.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.state = LINGERING
        self.discard = True
        self.deadline = time.monotonic() + LINGER
        self.relay.pending.add(self)
        self.watch_client(READ)

    def close(self):
        self.state = LINGERING
        self.relay.starved.discard(self)
        self.release()
        self.relay.answers_held -= len(self.to_client)
        self.to_client = bytearray()
        if self.spool is not None:
            self.relay.answers_spooled -= self.spool_size - self.spool_read
            self.spool.close()
            self.spool = None
        self.relay.active.discard(self)
        self.relay.pending.discard(self)
        self.relay.waiting.discard(self)
        for sock in (self.client, self.worker):
            if sock is not None:
                self.relay.unwatch(sock)
                sock.close()
        self.client = self.worker = None


class Relay:
    def __init__(self, listener, workers_path, settings):
        self.workers_path = workers_path
        self.settings = settings
        self.server_name = socket.gethostname().encode()
        self.server_port = str(listener.getsockname()[1]).encode()
        self.poll = select.epoll()
        self.handlers = {}  # file descriptor -> what handles its events
        self.active = set()  # connections not yet closed
        self.pending = set()  # connections with a deadline running
        self.waiting = set()  # connections waiting for room in the workers' backlog
        self.bodies_held = 0  # bytes reserved by bodies still arriving
        self.answers_held = 0  # bytes of answers waiting for their clients, in memory
        self.answers_spooled = 0  # and in temporary files
        self.starved = set()  # connections whose worker is not read for want of room
        self.stopping = False
        self.listener = listener
        self.listener.setblocking(False)
        self.accepting = True
        self.register(listener, READ, self.accept)

    def register(self, sock, events, handler):
        self.handlers[sock.fileno()] = handler
        self.poll.register(sock, events)

    def watch(self, sock, registered, wanted, handler):
        """Have epoll report `wanted` events of `sock` (none: out of epoll);
        returns what is now registered."""
        if wanted == registered:
            return wanted
        if not wanted:
            self.unwatch(sock)
        elif not registered:
            self.register(sock, wanted, handler)
        else:
            self.poll.modify(sock, wanted)
        return wanted

    def unwatch(self, sock):
        fd = sock.fileno()
        if self.handlers.pop(fd, None) is not None:
            self.poll.unregister(fd)

    def stop(self, *_):
        """Take no more requests; finish those in hand (a graceful stop)."""
        self.stopping = True

    def accept(self, events):
        while True:
            try:
                client, (host, port, *_) = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    continue  # that connection failed (ECONNABORTED...); the next may not
                # Out of file descriptors: take none for a tick (the waiting
                # connections stay in the listen queue).
                log.warning("relay: %s; not accepting for %s s", error, TICK)
                self.unwatch(self.listener)
                self.accepting = False
                return
            try:
                client.setblocking(False)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.active.add(Connection(self, client, (host.encode(), str(port).encode())))
            except OSError:
                log.exception("relay: dropping a new connection")
                client.close()

    def serve(self, stop=lambda: False):
        next_tick = time.monotonic() + TICK
        handlers = self.handlers
        while not stop():
            if self.stopping and self.drained():
                return
            for fd, events in self.poll.poll(TICK):
                handler = handlers.get(fd)
                if handler is None:
                    continue  # closed earlier in this poll
                connection = getattr(handler, "__self__", None)
                if isinstance(connection, Connection):
                    self.guarded(connection, handler, events)
                else:
                    handler(events)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + TICK
                self.tick(now)

    def drained(self):
        """While stopping: no new connections, idle ones closed; whether
        none is left."""
        if self.listener is not None:
            self.unwatch(self.listener)
            self.listener.close()
            self.listener = None
        for connection in list(self.active):
            if connection.state == HEAD and not connection.received:
                connection.close()
        return not self.active

    def tick(self, now):
        """Deadlines, requests waiting for room at the workers, answers
        waiting for room here, and accepting again."""
        for connection in list(self.pending):
            self.guarded(connection, connection.expire, now)
        waiting, self.waiting = self.waiting, set()
        for connection in waiting:
            self.guarded(connection, connection.connect)
        for connection in list(self.starved):
            if connection.worker is None:
                self.starved.discard(connection)
            elif connection.worker_events() & READ:
                self.guarded(connection, connection.watch_worker, connection.worker_events())
        if not self.accepting and self.listener is not None:
            self.accepting = True
            self.register(self.listener, READ, self.accept)

    @staticmethod
    def guarded(connection, step, *args):
        try:
            step(*args)
        except Exception:  # one connection's fault must not stop every other
            log.exception("relay: dropping a connection")
            connection.close()


def settings_from_environment():
    """The relay's settings, read as create_app reads them (with .env)."""
    from dotenv import find_dotenv, load_dotenv

    from config import config_class, from_environment, largest_upload_body

    load_dotenv(find_dotenv(usecwd=True))
    settings = config_class()
    values = {name: getattr(settings, name) for name in dir(settings) if name.isupper()}
    values.update(from_environment(settings))
    largest = max(values["MAX_CONTENT_LENGTH"] or 0, largest_upload_body(values))
    return Settings(
        values["REQUEST_BODY_TIMEOUT"],
        values["REQUEST_BODY_MIN_RATE"],
        largest,
        values["TRUSTED_PROXY_COUNT"],
        values["REQUEST_BODIES_HELD_LIMIT"],
    )


def inherited(port):
    """The TCP socket uWSGI's master listens on at `port` (uwsgi.ini's
    shared-socket, listening before any worker or this mule starts)."""
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
        if candidate.family in (socket.AF_INET, socket.AF_INET6) and candidate.getsockname()[1] == port:
            return candidate
        candidate.close()
    raise RuntimeError(f"no inherited socket on port {port}")


def uwsgi_option(name):
    import uwsgi

    value = uwsgi.opt[name]
    return (value[0] if isinstance(value, list) else value).decode()


def allow_many_connections():
    """Each connection is a file descriptor: as many as the system lets this process have."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    allow_many_connections()
    port = int(uwsgi_option("shared-socket").rsplit(":", 1)[1])
    relay = Relay(inherited(port), uwsgi_option("socket"), settings_from_environment())
    # uWSGI asks a mule to stop with SIGHUP (graceful stop and reload); Ctrl-C, SIGTERM alike.
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, relay.stop)
    relay.serve()
