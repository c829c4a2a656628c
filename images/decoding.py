"""Uploaded images: decide what the bytes are, refuse what is unsafe, re-encode.

Nothing the client says is trusted: not the file name, not the declared
Content-Type. The format is decided from the bytes:

1. `sniff` reads the first bytes. Only the signatures of JPEG, PNG and WebP
   go further; anything else (SVG, HTML, PDF, GIF, ...) is 415 before any
   decoder has looked at it, so Pillow's other format plugins never parse
   client bytes.
2. `open_checked` lets Pillow read the header only (`Image.open` is lazy) with
   that one format allowed, and refuses, before a single pixel is allocated:
   more than IMAGE_MAX_PIXELS from the declared size (Pillow's own
   decompression-bomb warning is an error too); animations; a JPEG of more
   than MAX_JPEG_SCANS scans or MAX_JPEG_SEGMENTS segments, a PNG of more
   than MAX_PNG_CHUNKS chunks; and any image whose decoding and re-encoding
   would hold more than DECODE_BUDGET bytes at once (`working_bytes`). A
   JPEG over it is decoded instead at the largest of 1/2, 1/4 or 1/8 scale
   that fits (libjpeg scales while decoding: `Image.draft`) and stored at
   that size. A WebP's size is checked from its first chunk before Pillow
   opens it: libwebp allocates the canvas on open.
3. `decode` loads the pixels; a truncated or corrupt file is 400 here.
4. `clean` applies the EXIF orientation, converts CMYK and other modes to
   RGB(A)/L, keeps transparency, and drops every piece of metadata.
5. `encode` writes the pixels anew, in the format they came in, and a
   thumbnail at most THUMB_SIZE px on its longer side.

`process(data, max_pixels)` runs the five steps and returns a `ProcessedImage`
whose `digest` (SHA-256 of the stored bytes) names it in storage; steps 3-5
of a costly image run in a processing slot (images/slots.py).
"""

import hashlib
import io
import re
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

from PIL import Image, ImageOps

from core.errors import ApiError, validation_error
from images.storage import CONTENT_TYPES

# Longer side of the `?size=thumb` copy, in pixels.
THUMB_SIZE = 256

# The most memory one upload's pixels may take while they are decoded and
# re-encoded, as `working_bytes` estimates it from the header. An idle worker
# is ~80 MB; with this, no upload takes it past ~200 MB (bench/image_bombs.py).
DECODE_BUDGET = 96 * 1024 * 1024

# libjpeg visits every block of the picture once per scan: the CPU a JPEG
# costs grows with its scans, not its bytes. Encoders write 1 (baseline) or
# about 10 (progressive).
MAX_JPEG_SCANS = 32

# Pillow reads a file's segments (JPEG) or chunks (PNG) one by one in Python,
# ~5 us each: 5 MiB of empty ones would take seconds. Files have a few dozen
# segments (up to ~300 with a split ICC profile or XMP), and a PNG encoder's
# data chunks are 8 KiB or more (at most ~650 in 5 MiB).
MAX_JPEG_SEGMENTS = 1000
MAX_PNG_CHUNKS = 10_000

# Bytes per pixel of an image in Pillow's memory (RGB takes 4, like RGBA).
PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
ORIENTATION = 0x0112  # the EXIF tag
# A JPEG marker that starts a segment. Not one: 0xFF 0x00 (a 0xFF byte of
# entropy-coded data), restart markers and TEM (no length), fill bytes 0xFF.
JPEG_MARKER = re.compile(rb"\xff[^\x00\x01\xd0-\xd7\xff]")

# Pillow format name -> file extension (its Content-Type: storage.CONTENT_TYPES).
# The only formats accepted.
FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}

# Encoder settings: good quality, no metadata (none is passed).
SAVE_OPTIONS = {
    # No optimize=True: it makes libjpeg keep every DCT coefficient of the
    # picture (~40 MB more for 12 megapixels) for a ~5% smaller file.
    "JPEG": {"quality": 88},
    "PNG": {"optimize": False, "compress_level": 6},
    "WEBP": {"quality": 85, "method": 4},
}


def unsupported():
    return ApiError(
        415, "unsupported_media_type", "The image must be a JPEG, PNG or WebP file (decided from its bytes)."
    )


def not_an_image(reason):
    return validation_error({"image": reason})


def sniff(data):
    """The Pillow format name the bytes' signature announces, or 415."""
    if not data:
        raise not_an_image("The file is empty.")
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    raise unsupported()


def open_checked(data, image_format, max_pixels):
    """The image with only its header read, after the checks of what decoding
    it would cost (module docstring, step 2); a big JPEG is set to decode at
    a reduced scale."""
    if image_format == "WEBP":
        declared = webp_size(data)
        if declared is None:
            raise not_an_image("The file is not a readable image.")
        check_pixels(*declared, max_pixels)
        # The least any WebP of this size costs (more than opening it does);
        # the exact cost is checked once Pillow knows its mode.
        check_budget(working_bytes("WEBP", declared, "RGB", "RGB", rotated=False))
    if image_format == "PNG" and png_chunks(data) > MAX_PNG_CHUNKS:
        raise not_an_image(f"The PNG has more than {MAX_PNG_CHUNKS} chunks.")
    scans = jpeg_scans(data) if image_format == "JPEG" else 0
    if scans > MAX_JPEG_SCANS:
        raise not_an_image(f"The JPEG has more than {MAX_JPEG_SCANS} scans.")
    with warnings.catch_warnings():
        # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[image_format])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise too_many_pixels(max_pixels) from None
        except Exception:  # Pillow raises many types for a bad header
            raise not_an_image("The file is not a readable image.") from None
    check_pixels(*image.size, max_pixels)
    if getattr(image, "n_frames", 1) > 1 and image_format != "JPEG":
        raise not_an_image("Animated images are not accepted: send a still image.")
    cost = processing_cost(image, image_format, data, scans)
    check_budget(cost)
    return image, cost


def check_pixels(width, height, max_pixels):
    if width < 1 or height < 1:
        raise not_an_image("The image has no pixels.")
    if width * height > max_pixels:
        raise too_many_pixels(max_pixels)


def too_many_pixels(max_pixels):
    return not_an_image(f"The image has more than {max_pixels} pixels.")


def check_budget(cost):
    if cost > DECODE_BUDGET:
        raise not_an_image(f"The image would take more than {DECODE_BUDGET // 2**20} MiB of memory to process.")


def processing_cost(image, image_format, data, scans):
    """What processing `image` will cost in bytes (`working_bytes`). A JPEG
    over the budget is first set (`draft`) to decode at the largest of 1/2,
    1/4 and 1/8 scale that fits, if any: a photo too big to store whole is
    stored smaller, and the cost returned is at that scale."""
    full_size, mode, target = image.size, image.mode, target_mode(image)
    rotated = declares_rotation(image, image_format, data)
    if image_format != "JPEG":
        return working_bytes(image_format, full_size, mode, target, rotated)
    coefficients = jpeg_coefficient_bytes(image) if scans > 1 or image.info.get("progressive") else 0
    for scale in (1, 2, 4, 8):
        size = (-(-full_size[0] // scale), -(-full_size[1] // scale))
        # The coefficients are freed when the last scan is decoded, before any copy is made.
        decoding = coefficients + size[0] * size[1] * PIXEL_BYTES.get(mode, 4)
        cost = max(decoding, working_bytes(image_format, size, mode, target, rotated))
        if cost <= DECODE_BUDGET:
            if scale > 1:
                image.draft(mode, (full_size[0] // scale, full_size[1] // scale))
            break
    return cost


def declares_rotation(image, image_format, data):
    """Will `clean` turn the pixels upright (EXIF Orientation other than 1)?"""
    if image_format == "PNG" and "exif" not in image.info:
        # Pillow would decode the pixels to look for an eXIf chunk after them:
        # assume the worst if there may be one.
        return b"eXIf" in data
    return image.getexif().get(ORIENTATION, 1) != 1


def jpeg_coefficient_bytes(image):
    """A progressive (or multi-scan) JPEG's DCT coefficients, which libjpeg
    keeps for the whole full-size picture until the last scan, whatever the
    output scale: 64 x 2 bytes per 8 x 8 block of each component."""
    width, height = image.size
    h_max = max(h for _, h, _, _ in image.layer)
    v_max = max(v for _, _, v, _ in image.layer)
    blocks = 0
    for _, h, v, _ in image.layer:
        blocks += -(-width * h // (8 * h_max)) * -(-height * v // (8 * v_max))
    return blocks * 128


def working_bytes(image_format, size, mode, target, rotated):
    """The most bytes the pixels and their working copies hold at once, from
    the header alone (bench/image_bombs.py checks it against the real peak):
    the decoded pixels; the copy `clean` makes to convert them to `target`
    or to turn them upright; for RGBA, the full-size premultiplied copy the
    thumbnail's resize makes; for WebP, libwebp's two canvases and the frame
    it hands to Pillow (12 bytes a pixel, kept as long as the image) and the
    planes of its decoder and encoder (10, measured)."""
    per_pixel = PIXEL_BYTES.get(mode, 4)
    if target != mode or rotated:
        per_pixel += PIXEL_BYTES.get(target, 4)
    if target == "RGBA":
        per_pixel += 4
    if image_format == "WEBP":
        per_pixel += 12 + 10
    return size[0] * size[1] * per_pixel


def webp_size(data):
    """(width, height) from a WebP's first chunk (VP8X: the canvas; VP8L or
    VP8: the picture), as libwebp reads it; None if there is none."""
    kind, body = data[12:16], data[20:30]
    if kind == b"VP8X" and len(body) >= 10:
        return 1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little")
    if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        return int.from_bytes(body[6:8], "little") & 0x3FFF, int.from_bytes(body[8:10], "little") & 0x3FFF
    return None


def jpeg_scans(data):
    """How many scans (SOS markers) the JPEG's first image has, counted from
    the bytes: marker segments are skipped by their length, so a marker-like
    pair inside one (a comment, an EXIF thumbnail) is not counted. Stops
    counting past MAX_JPEG_SCANS; 400 past MAX_JPEG_SEGMENTS segments."""
    scans, segments, position = 0, 0, 2
    while scans <= MAX_JPEG_SCANS:
        found = JPEG_MARKER.search(data, position)
        if found is None:
            break
        position = found.start()
        marker = data[position + 1]
        if marker == 0xD9:  # end of image
            break
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise not_an_image(f"The JPEG has more than {MAX_JPEG_SEGMENTS} marker segments.")
        if marker == 0xDA:
            scans += 1
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return scans


def png_chunks(data):
    """How many chunks the PNG has, counted up to MAX_PNG_CHUNKS + 1."""
    chunks, position = 0, 8
    while position + 8 <= len(data) and chunks <= MAX_PNG_CHUNKS:
        chunks += 1
        if data[position + 4 : position + 8] == b"IEND":
            break
        position += 12 + int.from_bytes(data[position : position + 4], "big")  # length, type, data, CRC
    return chunks


def decode(image):
    """Load the pixels (of an MPO, the first picture); 400 if they are not all there."""
    try:
        image.load()
    except Exception:  # truncated data, corrupt streams: OSError, SyntaxError, ValueError...
        raise not_an_image("The image data is truncated or corrupt.") from None
    return image


def target_mode(image):
    """The mode `clean` converts to: RGBA, L or RGB (CMYK, YCbCr, P without transparency...)."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return "RGBA"
    if image.mode in ("1", "L", "I;16", "I"):
        return "L"
    return "RGB"


def clean(image):
    """Upright pixels in a mode every output format takes, with no metadata."""
    # In place: the pixels as stored are released as soon as their upright
    # copy exists (a 12-megapixel photo is 48 MB), not kept to the end.
    ImageOps.exif_transpose(image, in_place=True)
    mode = target_mode(image)
    if image.mode != mode:
        image = image.convert(mode)
    # A new image carries nothing over: no EXIF, XMP, ICC profile or comment
    # can reach the encoder, whatever the plugin would copy from `info`.
    image.info = {}
    return image


def encode(image, image_format):
    buffer = io.BytesIO()
    if image_format == "JPEG" and image.mode == "RGBA":
        image = image.convert("RGB")  # JPEG has no alpha; cannot happen for a JPEG source
    image.save(buffer, image_format, **SAVE_OPTIONS[image_format])
    return buffer.getvalue()


def thumbnail(image):
    """A copy at most THUMB_SIZE px on its longer side (never enlarged)."""
    scale = THUMB_SIZE / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # reducing_gap: shrink by whole factors first (fast), then LANCZOS the rest.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


@dataclass(frozen=True)
class ProcessedImage:
    """What gets stored: the re-encoded image, its thumbnail, and their names."""

    data: bytes
    thumb: bytes
    extension: str
    content_type: str
    width: int
    height: int

    @property
    def digest(self):
        return hashlib.sha256(self.data).hexdigest()


def process(data, max_pixels, heavy_bytes=None, slot=nullcontext):
    """Validate the uploaded bytes and re-encode them; ApiError on any refusal.
    An image whose processing would hold more than `heavy_bytes` is decoded
    and encoded inside `slot()` (images/slots.py)."""
    image_format = sniff(data)
    image, cost = open_checked(data, image_format, max_pixels)
    with slot() if heavy_bytes is not None and cost > heavy_bytes else nullcontext():
        image = clean(decode(image))
        full = encode(image, image_format)
        thumb = encode(thumbnail(image), image_format)
    extension = FORMATS[image_format]
    content_type = CONTENT_TYPES[extension]
    return ProcessedImage(
        data=full, thumb=thumb, extension=extension, content_type=content_type, width=image.width, height=image.height
    )
