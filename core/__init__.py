"""The plumbing every request uses. One module per concern:

| module            | what it holds |
|-------------------|---------------|
| `errors.py`       | every error answer: the JSON envelope, Flask's handlers, Flask-JWT-Extended's loaders, 503 on outages |
| `arguments.py`    | request parsing: JSON or form bodies, field types (names, prices, ids), paging and `Link` |
| `tokens.py`       | the JWT manager, issuing access/refresh tokens, the `Authorization` header, the per-request revocation check (with `blacklist.py` at the root) |
| `permissions.py`  | who may do what: the caller's id, admin, owner and fresh-token checks |
| `passwords.py`    | argon2id hashing and its memory release |
| `rate_limits.py`  | the limits on login, registration and password checks (moving windows; Redis or memory) |
| `request_log.py`  | one JSON log line per request, the `X-Request-ID` |
| `docs.py`         | `GET /openapi.json` (from `openapi.yaml`) and Swagger UI at `/docs` |
| `cli.py`          | `flask make-admin` and `flask images sweep` |
| `clock.py`        | UTC time as the database stores it |

`app.create_app` binds each one (`register_*`); resources import what they use.
"""
