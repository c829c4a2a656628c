"""A real S3-compatible server for the tests: moto's standalone server
(moto[server], pinned in requirements-dev.txt) on a free local port, reached
by the real boto3 client over HTTP. Nothing in boto3 is replaced.

Bucket names carry the run id (tests/support/services.RUN_ID), so concurrent runs
never share a bucket. Off CI, a missing moto skips with the reason; with
CI=true it fails (tests/support/services.unavailable).
"""

import socket
import uuid

import pytest

from tests.support import services

ACCESS_KEY, SECRET_KEY, REGION = "test-access-key", "test-secret-key", "us-east-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """The URL of a moto S3 server running for the whole session."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        services.unavailable(f"moto[server] is not installed ({e}); pip install -r requirements-dev.txt")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_settings(endpoint, bucket, prefix="images"):
    """The app settings that point image storage at `bucket` on `endpoint`."""
    return {
        "IMAGE_STORAGE": f"s3://{bucket}/{prefix}",
        "S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }


@pytest.fixture(scope="session")
def s3_admin(s3_endpoint):
    """A boto3 client of the moto server for making buckets (one for the
    session: a client takes longer to build than a bucket)."""
    from images.storage import make_s3_client

    return make_s3_client(
        endpoint_url=s3_endpoint, region=REGION, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY
    )


@pytest.fixture
def s3_bucket(s3_admin):
    """A new, empty bucket of this run on the moto server; its name."""
    bucket = f"stores-test-{services.RUN_ID}-{uuid.uuid4().hex[:8]}"
    s3_admin.create_bucket(Bucket=bucket)
    return bucket
