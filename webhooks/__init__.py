"""Webhooks, both ways.

- `outbox.py`: `record(event, data)` — outbox rows written inside the
  change's own commit.
- `worker.py`: the delivery worker — claims due rows, runs them through a
  Huey queue, retries with backoff (`python -m webhooks.worker`, or a uWSGI
  mule).
- `sender.py`: one signed delivery (Standard Webhooks), SSRF checks on the
  address actually connected to, bounded time and answer size.
- `subscriptions.py`: the admin API — `/webhooks`, deliveries, retry.
- `jodoo.py`: the incoming push `POST /hooks/jodoo` — signature, field map,
  applied once.

Elsewhere, by design: the tables in `models/webhook.py`,
`models/webhook_delivery.py` and `models/jodoo_delivery.py` (one model per
file, all in `models/`); migration 0004; the mule in `uwsgi.ini` and
`deploy/stores-api-worker.service`; the tests in `tests/webhooks/`; the guide
in `docs/webhooks.md`.
"""
