"""Webhooks, both ways.

- `outbox.py`: `record(event, data)` — outbox rows written inside the
  change's own commit.
- `worker.py`: the delivery worker — claims due rows, runs them through a
  Huey queue, retries with backoff, deletes finished rows after the
  retention (`python -m webhooks.worker`, or a uWSGI mule).
- `sender.py`: one signed delivery (Standard Webhooks), an allow-list of
  global unicast addresses checked on the address actually connected to,
  bounded time and answer size.
- `subscriptions.py`: the admin API — `/webhooks`, deliveries, retry.
- `jodoo.py`: the incoming push `POST /hooks/jodoo` — signature, field map,
  the acting account's rights, applied once.

Elsewhere, by design: the tables in `models/webhook.py`,
`models/webhook_delivery.py`, `models/jodoo_delivery.py` and
`models/jodoo_nonce.py` (one model per file, all in `models/`); migrations
0004 and 0005; the mule in `uwsgi.ini` and
`deploy/stores-api-worker.service`; the tests in `tests/webhooks/`; the guide
in `docs/webhooks.md`.
"""
