"""Patient photos: decode safely, strip everything, re-encode, store under a random name.

All of it is blocking work; callers run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import secrets
import stat
from pathlib import Path

from PIL import ExifTags, Image, UnidentifiedImageError

from checkin_appliance import errors
from checkin_appliance.domain import InvalidInput
from checkin_appliance.files import TEMP_SUFFIX, write_atomically

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
# Pillow reports a JPEG that carries extra images (an iPhone HDR gain map, a Samsung or
# camera preview: the CIPA "MPF" extension) as MPO; the first frame is the ordinary photo.
JPEG_FAMILY = ("JPEG", "MPO")
# About 40 Mpx: any phone or tablet camera fits; a decompression bomb does not.
MAX_PIXELS = 40_000_000
JPEG_QUALITY = 85
# \Z, not $: "$" also matches before a trailing newline ("<hex>.jpg\n").
PHOTO_NAME = re.compile(r"\A[0-9a-f]{32}\.jpg\Z")
NOT_AN_IMAGE = "The photo must be a JPEG, PNG or WebP image."

# The one pixel limit is ours, read from the header before any decoding (reencode). Pillow's
# own only warns up to twice its value, and turning that warning into an error takes
# catch_warnings, which is process-wide and not thread-safe while photos decode in threads.
Image.MAX_IMAGE_PIXELS = None


def reencode(data: bytes, max_side: int = 800) -> bytes:
    """A fresh JPEG of at most `max_side` px with no metadata; InvalidInput names the problem."""
    if not data:
        raise InvalidInput("The photo is empty.", errors.PHOTO_EMPTY)
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
            if img.format not in ALLOWED_FORMATS + JPEG_FAMILY:
                raise InvalidInput(NOT_AN_IMAGE, errors.PHOTO_NOT_AN_IMAGE)
            if img.width * img.height > MAX_PIXELS:
                raise InvalidInput("The photo has too many pixels.", errors.PHOTO_TOO_MANY_PIXELS)
            if img.format in JPEG_FAMILY:
                # Let libjpeg decode at a reduced scale (1/2, 1/4, 1/8), never below the
                # size we keep: four to ten times faster and smaller for camera shots.
                img.draft("RGB", _target_size(img.size, max_side))
            pixels = _flatten_to_rgb(_upright(img))
            pixels.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            # Nothing of the upload may ride along: Pillow's JPEG writer takes metadata
            # only from what save() is given and from `info` (the comment), so with an
            # empty `info` the new file holds pixels only. No copy: ~1.4 MB less per photo.
            pixels.info = {}
            out = io.BytesIO()
            # No optimize=True: its extra Huffman pass costs 40 % of the encode for ~5 %.
            pixels.save(out, "JPEG", quality=JPEG_QUALITY)
            return out.getvalue()
    except UnidentifiedImageError as exc:
        raise InvalidInput(NOT_AN_IMAGE, errors.PHOTO_NOT_AN_IMAGE) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput("The photo is damaged or truncated.", errors.PHOTO_DAMAGED) from exc


def _target_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size `thumbnail` will make: the long side at most `max_side`, the shape kept.

    draft() keeps both sides at least this big, so asking for (max_side, max_side) would
    decode a 4:3 photo at full size."""
    width, height = size
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


_ORIENTATION_FIX = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(img: Image.Image) -> Image.Image:
    """The pixels turned as the camera's EXIF orientation says (the image itself if upright).

    Not ImageOps.exif_transpose: it re-serialises the EXIF block it was given, and a damaged
    block then raises TypeError or struct.error (a 500) for a photo whose pixels are fine.
    We drop the EXIF anyway, so only the orientation number is read.
    """
    img.load()
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # an unreadable EXIF block only costs us the rotation
        orientation = 1
    method = _ORIENTATION_FIX.get(orientation) if isinstance(orientation, int) else None
    return img.transpose(method) if method is not None else img


def _flatten_to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I"):
        # 16-bit greyscale PNG: convert() would clip every value above 255 to white.
        return img.convert("I").point(lambda v: v / 256).convert("L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def new_photo_name() -> str:
    return secrets.token_hex(16) + ".jpg"


def store_photo(directory: Path, data: bytes, max_side: int) -> str:
    """Re-encodes and stores an uploaded photo; returns its new random file name."""
    jpeg = reencode(data, max_side)
    name = new_photo_name()
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / name, jpeg, 0o640)
    return name


def remove_photo(directory: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(directory / name)


def sweep_orphans(directory: Path, known: set[str]) -> int:
    """At start: delete temp files and photos no patient row points at (a crash mid-check-in)."""
    if not directory.is_dir():
        return 0
    removed = 0
    for path in directory.iterdir():
        if path.name.endswith(TEMP_SUFFIX) or (
            PHOTO_NAME.match(path.name) and path.name not in known
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed += 1
    return removed


def open_photo(directory: Path, name: str) -> Path | None:
    """The stored file for exactly this name, or None; never follows links or leaves the folder."""
    if not PHOTO_NAME.match(name):
        return None
    path = directory / name
    try:
        st = path.lstat()
    except OSError:
        return None
    return path if stat.S_ISREG(st.st_mode) else None
