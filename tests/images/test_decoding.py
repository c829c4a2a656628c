"""What decoding an upload may cost (images/decoding.py), decided from the
header before any pixel is decoded: the decoded-bytes budget, animations,
JPEG scans, and JPEGs decoded at a reduced scale.

No app and no database: `process` is called as the PUT route calls it. The
answers through the API are in test_resource.py's HOSTILE list. CPU and
memory figures per file: bench/image_bombs.py.
"""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from core.errors import ApiError
from images import decoding
from images.decoding import MAX_JPEG_SCANS, MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS, jpeg_scans, process
from tests.support import image_samples as samples

MAX_PIXELS = 40_000_000
PROJECT_DIR = Path(__file__).resolve().parents[2]

BOMBS = {
    "lossless WebP, 6320 x 6320": samples.webp_lossless_bomb,
    "animated WebP, 2 x 6320 x 6320": samples.animated_webp_bomb,
    "palette PNG with transparency, 6320 x 6320": samples.transparent_palette_png_bomb,
    "progressive JPEG, 2,000 scans": samples.progressive_jpeg_bomb,
}


def refusal(data):
    with pytest.raises(ApiError) as refused:
        process(data, MAX_PIXELS)
    assert (refused.value.status, refused.value.error) == (400, "validation_error")
    return refused.value.errors["image"]


@pytest.fixture
def no_loading(monkeypatch):
    """Any pixel decoding fails the test."""

    def decoded(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decoded)


@pytest.fixture
def no_decoding(monkeypatch, no_loading):
    """Any pixel decoding, or opening a WebP (libwebp allocates its canvas
    then), fails the test."""
    real_open = Image.open

    def open_no_webp(fp, *args, **kwargs):
        if kwargs.get("formats") == ["WEBP"]:
            raise AssertionError("the WebP was opened")
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", open_no_webp)


def budget(monkeypatch, size):
    monkeypatch.setattr(decoding, "DECODE_BUDGET", size)


def samples_jpeg(size, **options):
    return samples.encode(samples.gradient(size), "JPEG", **options)


# ------------------------------------------------------------ the bombs ----


@pytest.mark.parametrize(
    "make, reason",
    [
        (samples.webp_lossless_bomb, "MiB of memory"),
        (samples.animated_webp_bomb, "MiB of memory"),
        (samples.transparent_palette_png_bomb, "MiB of memory"),
        (samples.progressive_jpeg_bomb, f"more than {MAX_JPEG_SCANS} scans"),
    ],
    ids=list(BOMBS),
)
def test_each_bomb_is_refused_from_its_header(no_decoding, make, reason):
    data = make()
    assert len(data) < 200_000
    assert reason in refusal(data)


def test_the_bombs_take_no_memory_to_refuse():
    """In a fresh process: the peak resident memory (VmHWM) after refusing
    every bomb, next to the peak before (Pillow's pixels are not Python
    objects: tracemalloc would not see them). Decoded, the smallest of them
    takes 300 MB more."""
    script = f"""
import json
from core.errors import ApiError
from images.decoding import process
from tests.support import image_samples as samples

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

files = [make() for make in (samples.{", samples.".join(f.__name__ for f in BOMBS.values())})]
before, answers = peak(), []
for data in files:
    try:
        process(data, {MAX_PIXELS})
        answers.append(200)
    except ApiError as e:
        answers.append(e.status)
print(json.dumps({{"answers": answers, "growth": peak() - before}}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_DIR, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["answers"] == [400] * len(BOMBS)
    assert result["growth"] < 20 * 2**20, result


# ------------------------------------------------------------ the budget ---


def test_an_image_over_the_budget_is_refused_before_decoding(monkeypatch, no_decoding):
    png = samples.encode(samples.gradient((200, 100)), "PNG")
    budget(monkeypatch, 200 * 100 * 4 - 1)  # RGB: 4 bytes a pixel in Pillow
    assert "MiB of memory" in refusal(png)


def test_an_image_within_the_budget_is_stored_whole(monkeypatch):
    budget(monkeypatch, 200 * 100 * 4)
    processed = process(samples.encode(samples.gradient((200, 100)), "PNG"), MAX_PIXELS)
    assert (processed.width, processed.height) == (200, 100)


def test_conversions_count_towards_the_budget(monkeypatch, no_decoding):
    """A palette PNG with a transparent colour is 1 byte a pixel as decoded,
    4 more as RGBA, 4 more for the thumbnail's premultiplied copy."""
    budget(monkeypatch, 300 * 300 * 9 - 1)
    assert "MiB of memory" in refusal(samples.transparent_palette_png_bomb(300, 300))


def test_a_webp_is_measured_before_libwebp_opens_it(monkeypatch, no_decoding):
    budget(monkeypatch, 200 * 100 * (4 + 22) - 1)  # RGB, plus libwebp's buffers
    assert "MiB of memory" in refusal(samples.webp())


def test_a_webp_within_the_budget_is_stored(monkeypatch):
    budget(monkeypatch, 320 * 200 * (4 + 22))
    assert process(samples.webp(), MAX_PIXELS).width == 320


# ------------------------------------------- JPEG: reduced scale, scans ---


def test_a_jpeg_over_the_budget_is_decoded_at_a_reduced_scale(monkeypatch):
    budget(monkeypatch, 800 * 600 * 4 - 1)
    processed = process(samples_jpeg((800, 600)), MAX_PIXELS)
    assert (processed.width, processed.height) == (400, 300)
    assert Image.open(io.BytesIO(processed.data)).size == (400, 300)


def test_the_smallest_scale_is_one_eighth(monkeypatch, no_decoding):
    budget(monkeypatch, 100 * 75 * 4 - 1)
    assert "MiB of memory" in refusal(samples_jpeg((800, 600)))


def test_turning_a_photo_upright_counts_as_a_copy(monkeypatch):
    budget(monkeypatch, 300 * 100 * 4)  # the pixels, not their upright copy
    assert process(samples.rotated_jpeg(), MAX_PIXELS).height == 150
    budget(monkeypatch, 300 * 100 * 8)
    assert process(samples.rotated_jpeg(), MAX_PIXELS).height == 300


def test_a_png_whose_exif_may_follow_its_pixels_counts_as_turned(monkeypatch, no_loading):
    """Pillow finds an eXIf chunk after the pixels only by decoding them: its
    mere presence counts as an Orientation to apply."""
    budget(monkeypatch, 200 * 100 * 4)  # the pixels, not their upright copy
    assert "MiB of memory" in refusal(samples.png_with_exif_after_pixels((200, 100)))


def test_a_progressive_jpeg_counts_its_full_size_coefficients(monkeypatch, no_decoding):
    """libjpeg keeps every coefficient of a progressive JPEG, whatever the
    output scale: 3 components x 2 bytes a pixel at 4:4:4."""
    budget(monkeypatch, 800 * 600 * 6 - 1)
    progressive = samples_jpeg((800, 600), progressive=True, subsampling=0)
    assert "MiB of memory" in refusal(progressive)


def test_the_same_picture_baseline_fits_at_a_reduced_scale(monkeypatch):
    budget(monkeypatch, 800 * 600 * 6 - 1)
    assert process(samples_jpeg((800, 600), subsampling=0), MAX_PIXELS).width == 800


def test_jpeg_scans_up_to_the_limit_are_decoded():
    assert jpeg_scans(samples_jpeg((64, 48), progressive=True)) == 10  # what libjpeg writes
    assert jpeg_scans(samples.jpeg()) == 1
    processed = process(samples.progressive_jpeg_bomb(64, 64, scans=MAX_JPEG_SCANS), MAX_PIXELS)
    assert processed.width == 64


def test_one_scan_over_the_limit_is_refused(no_decoding):
    bomb = samples.progressive_jpeg_bomb(64, 64, scans=MAX_JPEG_SCANS + 1)
    assert f"more than {MAX_JPEG_SCANS} scans" in refusal(bomb)


def test_scan_markers_inside_a_segment_are_not_scans():
    """0xFFDA inside a comment (or an EXIF thumbnail) is data, not a marker."""
    data = samples.encode(samples.gradient(), "JPEG", comment=b"\xff\xda" * 100)
    assert data.count(b"\xff\xda") > MAX_JPEG_SCANS
    assert jpeg_scans(data) == 1
    assert process(data, MAX_PIXELS).width == 320


def test_jpeg_segments_up_to_the_limit_are_read():
    # A JPEG of Pillow's has 9 segments of its own: APP0, 2 DQT, SOF, 4 DHT, SOS.
    assert process(samples.jpeg_with_comments(MAX_JPEG_SEGMENTS - 9), MAX_PIXELS).width == 32


def test_a_jpeg_of_too_many_segments_is_refused_before_pillow_reads_them(no_loading):
    refused = refusal(samples.jpeg_with_comments(MAX_JPEG_SEGMENTS - 8))
    assert f"more than {MAX_JPEG_SEGMENTS} marker segments" in refused


def test_png_chunks_up_to_the_limit_are_read():
    # IHDR, IDAT, IEND and the private ones.
    assert process(samples.png_with_chunks(MAX_PNG_CHUNKS - 3), MAX_PIXELS).width == 32


def test_a_png_of_too_many_chunks_is_refused_before_pillow_reads_them(no_loading):
    assert f"more than {MAX_PNG_CHUNKS} chunks" in refusal(samples.png_with_chunks(MAX_PNG_CHUNKS - 2))


# ------------------------------------------------------------ animations ---


@pytest.mark.parametrize("make", [samples.apng, samples.animated_webp], ids=["PNG", "WebP"])
def test_animations_are_refused(make, no_loading):
    assert "Animated" in refusal(make())
