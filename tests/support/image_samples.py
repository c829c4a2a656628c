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


def riff_wave():
    """A RIFF file that is a WAVE sound, not a WebP: bytes 8-12 say so."""
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 8)  # PCM, mono, 8 kHz, 8-bit
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 64) + b"\x80" * 64
    return b"RIFF" + struct.pack("<I", len(body)) + body


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


# ---- decompression bombs under IMAGE_MAX_PIXELS -----------------------------
# Each is tiny on the wire and costly to decode; built byte by byte (no encoder
# would write them), so each test file is a few bytes to a few hundred KB.


class _BitWriter:
    """Bits packed least-significant first, as WebP lossless (VP8L) reads them."""

    def __init__(self):
        self.value, self.count = 0, 0

    def write(self, bits, value):
        self.value |= value << self.count
        self.count += bits

    def bytes(self):
        return self.value.to_bytes((self.count + 7) // 8, "little")


def _vp8l_one_colour(width, height):
    """A VP8L bitstream of width x height pixels of one colour in ~10 bytes:
    every prefix code has a single symbol, so each pixel costs zero bits."""
    bits = _BitWriter()
    bits.write(8, 0x2F)  # signature
    bits.write(14, width - 1)
    bits.write(14, height - 1)
    bits.write(1, 0)  # alpha_is_used
    bits.write(3, 0)  # version
    bits.write(1, 0)  # no transform
    bits.write(1, 0)  # no colour cache
    bits.write(1, 0)  # no meta prefix codes
    # Five "simple" prefix codes of one symbol: green, red, blue, alpha, distance.
    for symbol in (0, 0, 0, 255, 0):
        bits.write(1, 1)  # simple code
        bits.write(1, 0)  # one symbol
        if symbol < 2:
            bits.write(1, 0)  # 1-bit symbol
            bits.write(1, symbol)
        else:
            bits.write(1, 1)  # 8-bit symbol
            bits.write(8, symbol)
    return bits.bytes() + b"\x00" * 4


def _riff_chunk(kind, body):
    return kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def _webp(chunks):
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_lossless_bomb(width=6320, height=6320):
    """~30 bytes declaring width x height pixels (under IMAGE_MAX_PIXELS):
    libwebp's decoder allocates its RGBA canvas (160 MB at 6320 x 6320) on open."""
    return _webp([_riff_chunk(b"VP8L", _vp8l_one_colour(width, height))])


def _u24(value):
    return value.to_bytes(3, "little")


def animated_webp_bomb(width=6320, height=6320, frames=2):
    """An animation of `frames` full-canvas frames, each a one-colour VP8L
    bitstream: ~140 bytes for two frames of 6320 x 6320."""
    header = bytes([0x02, 0, 0, 0]) + _u24(width - 1) + _u24(height - 1)  # VP8X, animation flag
    chunks = [_riff_chunk(b"VP8X", header), _riff_chunk(b"ANIM", b"\x00" * 4 + struct.pack("<H", 0))]
    for _ in range(frames):
        frame = _u24(0) + _u24(0) + _u24(width - 1) + _u24(height - 1) + _u24(100) + b"\x00"
        chunks.append(_riff_chunk(b"ANMF", frame + _riff_chunk(b"VP8L", _vp8l_one_colour(width, height))))
    return _webp(chunks)


def _png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def transparent_palette_png_bomb(width=6320, height=6320):
    """~40 KB: width x height palette pixels (40 MB, 1 byte each) with a
    transparent colour, which becomes RGBA (4 bytes each) to be stored."""
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8-bit palette
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    rows = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"PLTE", b"\x00\x00\x00\xff\xff\xff")
        + _png_chunk(b"tRNS", b"\x00")
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def png_with_exif_after_pixels(size):
    """An RGB PNG with EXIF Orientation 6 in an eXIf chunk after its IDAT."""
    png = encode(gradient(size), "PNG")
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return png[:-12] + _png_chunk(b"eXIf", exif.tobytes()[6:]) + png[-12:]  # the last 12 bytes: IEND


def apng(frames=2, size=(64, 48)):
    """A small animated PNG, written by Pillow."""
    images = [Image.new("RGB", size, colour) for colour in ("red", "blue", "green")[:frames]]
    return encode(images[0], "PNG", save_all=True, append_images=images[1:])


def animated_webp(frames=2, size=(64, 48)):
    """A small animated WebP, written by Pillow."""
    images = [Image.new("RGB", size, colour) for colour in ("red", "blue", "green")[:frames]]
    return encode(images[0], "WEBP", save_all=True, append_images=images[1:], lossless=True)


def jpeg_with_comments(count):
    """A small JPEG with `count` empty comment segments before its picture."""
    data = jpeg((32, 32))
    return data[:2] + b"\xff\xfe\x00\x02" * count + data[2:]


def png_with_chunks(count):
    """A small PNG with `count` empty private chunks before its pixels."""
    data = encode(gradient((32, 32)), "PNG")
    return data[:33] + _png_chunk(b"prVt", b"") * count + data[33:]  # after the 33 bytes of signature and IHDR


def _jpeg_segment(marker, body):
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(body) + 2) + body


def progressive_jpeg_bomb(width=6320, height=6320, scans=2000):
    """A grey progressive JPEG with `scans` AC scans (an encoder writes ~10).
    Each scan is ~50 bytes of end-of-band runs, yet libjpeg visits every
    8 x 8 block of the picture (624,100 at 6320 x 6320) in each scan."""
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    quant = _jpeg_segment(0xDB, b"\x00" + b"\x01" * 64)
    frame = _jpeg_segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")  # SOF2, 1 component
    # One AC table, one code: "0" = EOB14, a run of 2**14 + (14 extra bits) blocks.
    huffman = _jpeg_segment(0xC4, b"\x10" + b"\x01" + b"\x00" * 15 + b"\xe0")
    scan_header = _jpeg_segment(0xDA, b"\x01\x01\x00" + bytes([1, 63, 0]))  # Ss=1, Se=63, Ah=Al=0
    # Entropy data is MSB first: per run, the 1-bit code "0", then 14 extra bits.
    runs = (blocks + 32766) // 32767
    value, count = 0, 0
    for _ in range(runs):
        value, count = (value << 15) | (32767 - 16384), count + 15
    pad = (-count) % 8
    value = (value << pad) | ((1 << pad) - 1)
    entropy = value.to_bytes((count + pad) // 8, "big").replace(b"\xff", b"\xff\x00")
    return b"\xff\xd8" + quant + frame + huffman + (scan_header + entropy) * scans + b"\xff\xd9"
