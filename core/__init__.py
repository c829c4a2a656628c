"""The plumbing every request uses, one module per concern:

- `errors.py`: every error answer — the JSON envelope, Flask's handlers,
  Flask-JWT-Extended's loaders, 503 on outages.
- `arguments.py`: request parsing — JSON or form bodies, field types (names,
  prices, ids), paging and the `Link` header.
- `tokens.py`: the JWT manager, issuing access and refresh tokens, the
  `Authorization` header, the revocation check on every request (the record
  itself is `blacklist.py` at the root).
- `permissions.py`: who may do what — the caller's id, admin, owner and
  fresh-token checks.
- `passwords.py`: argon2id hashing.
- `rate_limits.py`: the limits on login, registration, password checks and
  image uploads, where the login limit lives (moving windows, in Redis, else
  in `worker_counters.py`: uWSGI's cache shared by the workers).
- `request_log.py`: one JSON log line per request, and the `X-Request-ID`.
- `connections.py`: PostgreSQL connections without a ping or BEGIN/ROLLBACK
  round trip on a read.
- `conditional.py`: ETags, 304, and If-Match / If-None-Match on writes.
- `docs.py`: `GET /openapi.json` (from `openapi.yaml`) and Swagger UI at `/docs`.
- `cli.py`: `flask make-admin` and `flask images sweep`.
- `clock.py`: UTC time as the database stores it.

`app.create_app` binds each one (its `register_*` steps); resources import
what they use.
"""
