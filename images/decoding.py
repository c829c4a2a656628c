"""Uploaded images: decide what the bytes are, refuse what is unsafe, re-encode.

Nothing the client says is trusted: not the file name, not the declared
Content-Type. The format is decided from the bytes:

1. `sniff` reads the first bytes. Only the signatures of JPEG, PNG and WebP
   go further; anything else (SVG, HTML, PDF, GIF, ...) is 415 before any
   decoder has looked at it, so Pillow's other format plugins never parse
   client bytes.
2. `open_checked` lets Pillow read the header only (`Image.open` is lazy) with
   that one format allowed, and refuses more than IMAGE_MAX_PIXELS from the
   declared size, before a single pixel is allocated. Pillow's own
   decompression-bomb warning is turned into an error too.
3. `decode` loads the pixels; a truncated or corrupt file is 400 here.
4. `clean` applies the EXIF orientation, converts CMYK and other modes to
   RGB(A)/L, keeps transparency, and drops every piece of metadata.
5. `encode` writes the pixels anew, in the format they came in, and a
   thumbnail at most THUMB_SIZE px on its longer side.

`process(data, max_pixels)` runs the five steps and returns a `ProcessedImage`
whose `digest` (SHA-256 of the stored bytes) names it in storage.
"""

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

from core.errors import ApiError, validation_error

# Longer side of the `?size=thumb` copy, in pixels.
THUMB_SIZE = 256

# Pillow format name -> (file extension, Content-Type). The only formats accepted.
FORMATS = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
}
CONTENT_TYPES = {ext: content_type for ext, content_type in FORMATS.values()}

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
    """The image with only its header read, after the pixel-count checks."""
    with warnings.catch_warnings():
        # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[image_format])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise too_many_pixels(max_pixels) from None
        except Exception:  # Pillow raises many types for a bad header
            raise not_an_image("The file is not a readable image.") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise not_an_image("The image has no pixels.")
    if width * height > max_pixels:
        raise too_many_pixels(max_pixels)
    return image


def too_many_pixels(max_pixels):
    return not_an_image(f"The image has more than {max_pixels} pixels.")


def decode(image):
    """Load the pixels (the first frame of an animation); 400 if they are not all there."""
    try:
        image.load()
    except Exception:  # truncated data, corrupt streams: OSError, SyntaxError, ValueError...
        raise not_an_image("The image data is truncated or corrupt.") from None
    return image


def clean(image):
    """Upright pixels in a mode every output format takes, with no metadata."""
    # In place: a 12-megapixel photo is 36 MB of pixels; no second copy.
    ImageOps.exif_transpose(image, in_place=True)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        mode = "RGBA"
    elif image.mode in ("1", "L", "I;16", "I"):
        mode = "L"
    else:
        mode = "RGB"  # CMYK, YCbCr, P without transparency, ...
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


def process(data, max_pixels):
    """Validate the uploaded bytes and re-encode them; ApiError on any refusal."""
    image_format = sniff(data)
    image = clean(decode(open_checked(data, image_format, max_pixels)))
    extension, content_type = FORMATS[image_format]
    full = encode(image, image_format)
    thumb = encode(thumbnail(image), image_format)
    return ProcessedImage(
        data=full, thumb=thumb, extension=extension, content_type=content_type, width=image.width, height=image.height
    )
