"""CPU time and peak memory of one image upload's processing, per file:
`.venv/bin/python bench/image_bombs.py`. Prints a table; writes nothing.

Each file is processed (images.decoding.process, as PUT /item/<name>/image
does) in a fresh Python process that has first built the app, so its
resident memory starts where an idle worker's does. Per file: the answer
(200, or the refusal's status and message), CPU ms of the processing
(user + system), and the process's peak resident memory (VmHWM) before
and after. The goal: every file answered within 2,000 ms of CPU, peak
<= 200 MB.

The files: the bombs of tests/support/image_samples.py (tiny files that
decode to hundreds of MB, or take seconds of CPU), and the largest
legitimate uploads (IMAGE_MAX_BYTES, IMAGE_MAX_PIXELS) of each format.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from tests.support import image_samples as samples  # noqa: E402

CHILD = r"""
import gc, json, resource, sys


def peak_mb():
    # VmHWM: this process's own peak (ru_maxrss would count the parent's, from before exec).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
from app import create_app
from core.errors import ApiError
from images.decoding import process

app = create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": "sqlite://"})
data = open(sys.argv[1], "rb").read()
gc.collect()
idle_mb = peak_mb()
before = resource.getrusage(resource.RUSAGE_SELF)
try:
    processed = process(data, app.config["IMAGE_MAX_PIXELS"])
    answer = f"200 {processed.width}x{processed.height}"
except ApiError as e:
    answer = f"{e.status} {e.errors['image'] if e.errors else e.message}"
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
print(json.dumps({"answer": answer, "cpu_ms": round(cpu * 1000), "idle_mb": idle_mb,
                  "peak_mb": peak_mb()}))
"""


def photo(size):
    """Gradients plus grain: compresses like a photo, not like a flat colour."""
    base = Image.linear_gradient("L").resize(size)
    grain = Image.effect_noise(size, 24)
    return Image.merge("RGB", (base, grain, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))


def photo_like(size, image_format, **options):
    return samples.encode(photo(size), image_format, **options)


def files():
    yield "WebP lossless bomb, 6320 x 6320", samples.webp_lossless_bomb()
    yield "animated WebP bomb, 2 x 6320 x 6320", samples.animated_webp_bomb()
    yield "PNG palette + tRNS bomb, 6320 x 6320", samples.transparent_palette_png_bomb()
    yield "progressive JPEG, 2,000 scans, 6320 x 6320", samples.progressive_jpeg_bomb()
    yield "PNG declaring 50,000 x 50,000", samples.png_bomb()
    yield "JPEG, 5 MiB of empty comment segments", samples.jpeg_with_comments(5 * 2**20 // 4 - 2000)
    yield "PNG, 5 MiB of empty chunks", samples.png_with_chunks(5 * 2**20 // 12 - 2000)
    yield "JPEG 4000 x 3000 (12 MP photo)", photo_like((4000, 3000), "JPEG", quality=85)
    yield "JPEG 4000 x 3000, EXIF Orientation 6", photo_like((4000, 3000), "JPEG", quality=85, exif=rotated())
    yield "JPEG 4000 x 3000, progressive", photo_like((4000, 3000), "JPEG", quality=85, progressive=True)
    yield (
        "JPEG 4000 x 3000, progressive, Orientation 6",
        photo_like((4000, 3000), "JPEG", quality=85, progressive=True, exif=rotated()),
    )
    yield "JPEG 6000 x 4000 (24 MP), q 50", photo_like((6000, 4000), "JPEG", quality=50)
    yield "progressive JPEG bomb, 32 scans (the limit)", samples.progressive_jpeg_bomb(scans=32)
    yield "JPEG 7300 x 5470 (40 MP), q 40", photo_like((7300, 5470), "JPEG", quality=40)
    yield "JPEG 7300 x 5470, progressive, q 40", photo_like((7300, 5470), "JPEG", quality=40, progressive=True)
    yield (
        "JPEG 7300 x 5470 flat grey, 4:4:4, progressive",
        samples.encode(Image.new("RGB", (7300, 5470), "grey"), "JPEG", progressive=True, subsampling=0),
    )
    yield "PNG RGB 6320 x 6320 flat", samples.encode(Image.new("RGB", (6320, 6320), "grey"), "PNG")
    yield "PNG RGB 5000 x 5000 (at the budget) gradients", samples.encode(samples.gradient((5000, 5000)), "PNG")
    yield "PNG palette + tRNS 3200 x 3200 (at the budget)", samples.transparent_palette_png_bomb(3200, 3200)
    yield "PNG RGBA 3000 x 3000 flat", samples.encode(Image.new("RGBA", (3000, 3000), (1, 2, 3, 4)), "PNG")
    yield "WebP lossy 4000 x 3000 photo", photo_like((4000, 3000), "WEBP", quality=80)
    yield "WebP lossy 6320 x 6320 flat", samples.encode(Image.new("RGB", (6320, 6320), "grey"), "WEBP")
    yield "WebP lossy 2200 x 1750 photo (at the budget)", photo_like((2200, 1750), "WEBP", quality=90)
    yield (
        "WebP lossless 1700 x 1700 RGBA (at the budget)",
        samples.encode(photo((1700, 1700)).convert("RGBA"), "WEBP", lossless=True),
    )


def rotated():
    exif = Image.Exif()
    exif[samples.ORIENTATION] = 6
    return exif.tobytes()


def measure(path):
    child = subprocess.run([sys.executable, "-c", CHILD, path], cwd=PROJECT_DIR, capture_output=True, text=True)
    if child.returncode:
        last = (child.stderr.strip().splitlines() or ["?"])[-1]
        return {"answer": f"crashed: {last}", "cpu_ms": 0, "idle_mb": 0, "peak_mb": 0}
    return json.loads(child.stdout.strip().splitlines()[-1])


def main():
    only = sys.argv[1:]
    print("| file | bytes | answer | CPU ms | idle MB | peak MB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for label, data in files():
            if only and not any(word.lower() in label.lower() for word in only):
                continue
            path = os.path.join(folder, "upload")
            Path(path).write_bytes(data)
            r = measure(path)
            print(f"| {label} | {len(data):,} | {r['answer']} | {r['cpu_ms']:,} | {r['idle_mb']} | {r['peak_mb']} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
