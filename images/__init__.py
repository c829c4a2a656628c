"""Item images: `PUT`, `GET` and `DELETE /item/<name>/image`.

- `resource.py`: the HTTP side — upload limits, ownership, `ETag` and 304,
  `X-Accel-Redirect` behind Nginx.
- `decoding.py`: the bytes — format sniffing (JPEG, PNG, WebP only), pixel
  limits, decoding, re-encoding without metadata, the thumbnail.
- `storage.py`: where objects live — a local folder or an S3-compatible
  bucket (`IMAGE_STORAGE`).
- `slots.py`: how many costly images one machine processes at once (503
  when none is free).
- `bookkeeping.py`: rows and objects kept in step — write, swap, then delete;
  compare-and-set; `sweep` of orphans.

Elsewhere, by design: the `image_key` column and `image_url` in
`models/item.py`; `flask images sweep` in `core/cli.py`; migration 0003; the
Nginx locations in `deploy/nginx.conf`; the tests in `tests/images/`; the
guide in `docs/images.md`.
"""
