"""Helpers for the tests, not tests themselves: one module per thing a test needs.

- `services.py`: where PostgreSQL and Redis are, scratch databases, this run's id.
- `apps.py`, `users.py`, `errors.py`: in-process apps, users logged in through
  the API, and the error envelope checked.
- `live_server.py`, `nginx_harness.py`, `uwsgi_client.py`, `outages.py`: the
  real uWSGI and Nginx, uWSGI's own protocol, and servers a test may stop.
- `s3.py`, `image_samples.py`: moto's S3 server, and images real and hostile.
- `webhooks.py`, `webhook_receiver.py`: subscribing in-process, and a real
  receiver that verifies every signature.
"""
