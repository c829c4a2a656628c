"""The bare Flask app the Stores API is measured against: the ceiling.

`bench/run.py` serves this module under the same uWSGI flags as the real app
(uwsgi.ini, 2 processes x 1 thread) and drives it with the same wrk settings.
It does no routing beyond Flask's own, no auth, no database: what is left is
the cost of uWSGI + Flask + sending a body of the same size.

The bodies come from the directory named by BENCH_BODIES_DIR: one file
`<key>.json` per body, written by run.py just before it is measured (so one
bare server can run beside the real app for the whole benchmark, and each
comparison runs right after the real app's run). Each worker reads a body the
first time it is asked for it; the warm-up run pays that, not the measurement.
In a full run the bodies are the exact bytes the real app returned (sizes
match to the byte); with --bare-only they are synthetic bodies of the
contract's shape.

Two variants of each body:
- GET /bytes/<key>: the body as read from the file, no JSON work per request
  -- the comparison for `GET /item/<name>` and `GET /health`.
- GET /dumps/<key>: `json.dumps` of the parsed body on every request -- the
  comparison for the list endpoints, which must serialise each time.
"""

import json
import os
from pathlib import Path

from flask import Flask, Response, abort

BODIES_DIR = Path(os.environ["BENCH_BODIES_DIR"])

app = Flask(__name__)

_prebuilt = {}  # key -> the body's bytes
_parsed = {}  # key -> the body as Python objects
_separators = {}  # key -> json.dumps separators that give the same byte count


def _load(key):
    if key not in _prebuilt:
        path = BODIES_DIR / f"{key}.json"
        if not path.is_file() or path.parent != BODIES_DIR:
            abort(404)
        raw = path.read_bytes()
        obj = json.loads(raw)
        # The real app writes compact JSON (orjson); json.dumps' default separators
        # add a space after every ',' and ':'. Pick whichever matches the real size.
        compact = (",", ":")
        compact_gap = abs(len(json.dumps(obj, separators=compact)) - len(raw))
        default_gap = abs(len(json.dumps(obj)) - len(raw))
        _separators[key] = compact if compact_gap <= default_gap else None
        _parsed[key] = obj
        _prebuilt[key] = raw


@app.get("/health")
def health():
    # Same body as the real app's /health, through Flask's own dict-to-JSON path.
    return {"status": "ok"}


@app.get("/bytes/<key>")
def prebuilt(key):
    _load(key)
    return Response(_prebuilt[key], mimetype="application/json")


@app.get("/dumps/<key>")
def dumps(key):
    _load(key)
    return Response(json.dumps(_parsed[key], separators=_separators[key]), mimetype="application/json")
