"""Time as this project stores and shows it."""

from datetime import UTC, datetime


def utcnow():
    """Naive UTC, as every DateTime column of this project stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


def rfc3339(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None
