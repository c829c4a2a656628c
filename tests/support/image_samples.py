"""Real image files made with Pillow for the image tests, and hostile ones.

Each function returns the bytes of one file. Nothing here is a mock: the
good ones are encoded by Pillow's real encoders, the bad ones are what an
attacker or a careless client really sends.
"""

import io
import struct
import zlib

from PIL import Image

# EXIF tags: Orientation, GPSInfo (IFD pointer); GPS sub-tags: latitude ref/value.
ORIENTATION = 0x0112
GPS_IFD = 0x8825
GPS_LATITUDE_REF, GPS_LATITUDE = 1, 2


def encode(image, image_format, **options):
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def gradient(size=(320, 200), mode="RGB"):
    """A picture with detail in it (not one flat colour), so re-encoding has work to do."""
    image = Image.linear_gradient("L").resize(size)
    if mode == "L":
        return image
    return Image.merge(
        "RGB",
        (image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)),
    ).convert(mode)


def jpeg(size=(320, 200)):
    return encode(gradient(size), "JPEG", quality=90)


def jpeg_with_gps():
    """A photo with a GPS position and a camera comment in its EXIF."""
    image = gradient()
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc."  # Make
    exif.get_ifd(GPS_IFD).update({GPS_LATITUDE_REF: "N", GPS_LATITUDE: (48.0, 51.0, 29.0)})
    return encode(image, "JPEG", exif=exif.tobytes(), comment=b"secret comment")


def rotated_jpeg():
    """Stored 300 wide x 100 high, with EXIF Orientation 6 ("rotate 90 CW to view"):
    viewers show it 100 wide x 300 high, the top-left pixel red."""
    image = Image.new("RGB", (300, 100), "blue")
    image.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def cmyk_jpeg():
    return encode(gradient(mode="CMYK"), "JPEG", quality=90)


def png_with_transparency():
    """RGBA, left half fully transparent, right half opaque green."""
    image = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    image.paste((0, 200, 0, 255), (100, 0, 200, 100))
    return encode(image, "PNG")


def webp():
    return encode(gradient(), "WEBP", quality=80)


def noisy_png(size):
    """A PNG that barely compresses: about 3 bytes per pixel."""
    import os

    return encode(Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)), "PNG")


# ---- hostile or unsupported -------------------------------------------------


def truncated_jpeg():
    data = jpeg((800, 600))
    return data[: len(data) // 2]


def svg_with_script():
    return (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<script>alert(document.cookie)</script><rect width="10" height="10"/></svg>'
    )


def html_named_jpg():
    return b"<!DOCTYPE html><html><body><script>alert(1)</script><img src=x onerror=alert(2)></body></html>"


def gif():
    return encode(gradient(mode="RGB").convert("P"), "GIF")


def gif_javascript_polyglot():
    """Valid as a GIF and as JavaScript ('GIF89a=...'): the classic polyglot."""
    return b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00;*/=1;alert(document.domain)//" + b"\x00" * 16 + b";"


def pdf():
    return b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def png_bomb(width=50_000, height=50_000):
    """A PNG declaring width x height pixels of black in a few KB: zlib squeezes
    the all-zero rows ~1000:1. Only the first rows are included, which is
    plenty: a decoder that trusted the header would allocate 7.5 GB first."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    rows = zlib.compress((b"\x00" + b"\x00" * width * 3) * 20, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
