"""Where image objects live: a local folder, or any S3-compatible bucket.

Both backends have the same small interface, used by bookkeeping.py and
resource.py:

    put(key, data, content_type)   write an object (whole, or not at all)
    delete(key)                    remove it (no error when it is gone)
    exists(key)                    True if it is there
    keys()                         (key, last-modified unix time) of every object
    stream(key)                    (Chunks, length): the bytes, as a closable iterator
    path(key)                      a local file path (FileStorage only), so the
                                   server can send the file without Python
                                   copying it (X-Accel-Redirect or sendfile)

Keys are made by bookkeeping.object_keys from a content hash and a random
upload id; `check_key` refuses anything else, so no client-supplied text ever
becomes part of a path or an object name.

`IMAGE_STORAGE` picks the backend: `file:///abs/folder` (default: the instance
folder's `images/`) or `s3://bucket/optional/prefix` (with `S3_ENDPOINT_URL`
for DigitalOcean Spaces, Bucketeer, MinIO... and the usual AWS_* credentials).
Several app instances (or Heroku dynos) must share one S3 bucket: a local
folder is only seen by the processes of one machine.
"""

import os
import re
import tempfile
from urllib.parse import urlsplit

from core.errors import ApiError

# <sha256 hex>-<upload id hex>[.thumb].<jpg|png|webp>
KEY = re.compile(r"[0-9a-f]{64}-[0-9a-f]{16}(?:\.thumb)?\.(?:jpg|png|webp)")
# A stored object's Content-Type, by its key's extension.
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
CHUNK = 64 * 1024


class StorageUnavailable(ApiError):
    """The bucket (or disk) did not answer: 503, like a database outage."""

    def __init__(self, retry_after=5):
        super().__init__(
            503,
            "service_unavailable",
            "Image storage is unavailable. Try again shortly.",
            headers={"Retry-After": str(retry_after)},
        )


def check_key(key):
    if not KEY.fullmatch(key):
        raise ValueError(f"not an image object key: {key!r}")
    return key


class FileStorage:
    """Objects as files under `root`, two levels deep (`ab/abcdef...jpg`) so no
    folder grows past a few thousand entries."""

    def __init__(self, root):
        # Folders are made by `put`: building the app writes nothing to disk.
        self.root = os.path.abspath(root)

    def __repr__(self):
        return f"FileStorage({self.root!r})"

    def relative_path(self, key):
        """Where the object lives below root: what X-Accel-Redirect names."""
        return f"{check_key(key)[:2]}/{key}"

    def path(self, key):
        return os.path.join(self.root, self.relative_path(key))

    def put(self, key, data, content_type):
        path = self.path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Write aside, then rename: a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)  # Nginx's workers (another user) serve it
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def delete(self, key):
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass

    def exists(self, key):
        return os.path.isfile(self.path(key))

    def keys(self):
        for folder, _, files in os.walk(self.root):
            for name in files:
                if KEY.fullmatch(name):
                    try:
                        yield name, os.stat(os.path.join(folder, name)).st_mtime
                    except FileNotFoundError:
                        continue  # deleted meanwhile

    def stream(self, key):
        f = open(self.path(key), "rb")
        return Chunks(iter(lambda: f.read(CHUNK), b""), f.close), os.fstat(f.fileno()).st_size


class Chunks:
    """An object's bytes as a WSGI response body: iterated in chunks, and
    closed by the server when the response ends, read or not (a HEAD request
    reads nothing, and the file or S3 connection must still be released)."""

    def __init__(self, chunks, close):
        self._chunks, self.close = chunks, close

    def __iter__(self):
        return self._chunks


class S3Storage:
    """Objects in an S3-compatible bucket, under an optional key prefix."""

    def __init__(self, bucket, prefix="", client=None, **client_options):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client or make_s3_client(**client_options)
        self._errors = _s3_errors()

    def __repr__(self):
        return f"S3Storage(s3://{self.bucket}/{self.prefix})"

    def object_name(self, key):
        return self.prefix + check_key(key)

    def put(self, key, data, content_type):
        with self._unavailable_on_error():
            # PutObject is atomic: the object is there whole, or not at all.
            self.client.put_object(Bucket=self.bucket, Key=self.object_name(key), Body=data, ContentType=content_type)

    def delete(self, key):
        with self._unavailable_on_error():
            self.client.delete_object(Bucket=self.bucket, Key=self.object_name(key))

    def exists(self, key):
        with self._unavailable_on_error():
            try:
                self.client.head_object(Bucket=self.bucket, Key=self.object_name(key))
            except self._errors.ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return True

    def keys(self):
        paginator = self.client.get_paginator("list_objects_v2")
        with self._unavailable_on_error():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for entry in page.get("Contents", []):
                    name = entry["Key"][len(self.prefix) :]
                    if KEY.fullmatch(name):
                        yield name, entry["LastModified"].timestamp()

    def stream(self, key):
        with self._unavailable_on_error():
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self.object_name(key))
            except self._errors.ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    raise FileNotFoundError(key) from None
                raise
        body = answer["Body"]
        return Chunks(body.iter_chunks(CHUNK), body.close), answer["ContentLength"]

    def _unavailable_on_error(self):
        return _translate(self._errors.unavailable, StorageUnavailable)


class _translate:
    """Context manager: re-raise the given exception types as `target()`."""

    def __init__(self, sources, target):
        self.sources, self.target = sources, target

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is not None and issubclass(kind, self.sources):
            raise self.target() from value
        return False


class _s3_errors:
    """botocore's exception classes, imported only when S3 is configured."""

    def __init__(self):
        from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError, ReadTimeoutError

        self.ClientError = ClientError
        # Network trouble is an outage (503); an S3 error answer (403, 404...) is a bug or a
        # misconfiguration and stays a 500 with its traceback in the log.
        self.unavailable = (ConnectionError, EndpointConnectionError, ReadTimeoutError)


def make_s3_client(endpoint_url=None, region=None, access_key_id=None, secret_access_key=None):
    """A boto3 S3 client. Credentials not given here come from boto3's own
    chain (AWS_* environment variables, ~/.aws, an instance role)."""
    import boto3  # ~25 MB per process: only when S3 is configured
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        connect_timeout=3,
        read_timeout=10,
        retries={"max_attempts": 3, "mode": "standard"},
        # Path-style URLs work with every S3-compatible server (moto, MinIO).
        s3={"addressing_style": "auto"},
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or "us-east-1",
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        config=config,
    )


def parse_location(location, instance_path):
    """IMAGE_STORAGE -> ("file", folder) or ("s3", (bucket, prefix))."""
    if not location:
        return "file", os.path.join(instance_path, "images")
    parts = urlsplit(location)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise RuntimeError(f"IMAGE_STORAGE must be file:///absolute/folder; got {location!r}.")
        return "file", parts.path
    if parts.scheme == "s3" and parts.netloc:
        return "s3", (parts.netloc, parts.path)
    raise RuntimeError(f"IMAGE_STORAGE must be file:///folder or s3://bucket/prefix; got {location!r}.")


def make_storage(config, instance_path):
    kind, where = parse_location(config.get("IMAGE_STORAGE"), instance_path)
    if kind == "file":
        return FileStorage(where)
    bucket, prefix = where
    return S3Storage(
        bucket,
        prefix,
        endpoint_url=config.get("S3_ENDPOINT_URL"),
        region=config.get("AWS_DEFAULT_REGION"),
        access_key_id=config.get("AWS_ACCESS_KEY_ID"),
        secret_access_key=config.get("AWS_SECRET_ACCESS_KEY"),
    )
