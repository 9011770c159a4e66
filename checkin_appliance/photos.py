"""Patient photos: decode safely, strip everything, re-encode; a random name to store it under
(the database holds it: store put_photo).

All of it is blocking work; callers run it in a worker thread.
"""

from __future__ import annotations

import io
import math
import re
import secrets
import time

from PIL import ExifTags, Image, UnidentifiedImageError

from checkin_appliance import errors, memory
from checkin_appliance.domain import InvalidInput

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
# Pillow reports a JPEG that carries extra images (an iPhone HDR gain map, a Samsung or
# camera preview: the CIPA "MPF" extension) as MPO; the first frame is the ordinary photo.
JPEG_FAMILY = ("JPEG", "MPO")
# About 40 Mpx: any phone or tablet camera fits; a decompression bomb does not.
MAX_PIXELS = 40_000_000
# Memory one photo may hold while it is decoded, flattened and shrunk. The unit caps the
# whole service at MemoryMax=256M: ~50 MB for the server itself, up to two decodes at once
# (reception.photo_decoders) at 80 MiB each, and room left for uploads and the feeds.
DECODE_BUDGET_BYTES = 80 * 1024 * 1024
# Peak bytes per decoded pixel through reencode() (decode, _flatten_to_rgb, thumbnail), as
# measured with ru_maxrss at 4 and 16 Mpx and rounded up: Pillow keeps RGB and RGBA in 4
# bytes a pixel, "1"/L/P in 1 and I;16 in 2, and flattening holds the next copy beside it.
# PNG and WebP have no reduced decode, so this is what caps their pixels (RGBA PNG ~7 Mpx,
# WebP ~4.9 Mpx); a phone photo is a JPEG, decoded at the reduced size draft() gives.
DECODE_BYTES_PER_PIXEL = {
    "RGB": 6,
    "1": 7,
    "L": 7,
    "P": 7,
    "P+transparency": 11,
    "CMYK": 10,
    "I;16": 11,
    "I": 11,
    "RGBA": 11,
    "LA": 14,
    "PA": 14,
}
# libwebp decodes into its own RGBA canvases, Pillow copies them out as bytes, then into
# the image: about four copies of 4 bytes a pixel, whatever the mode.
WEBP_BYTES_PER_PIXEL = 17
# A JPEG of more than one scan (progressive, or one scan per component) keeps every DCT
# coefficient of the full-size image until its last scan, 2 bytes each, whatever size
# draft() decodes to: 3 bytes a pixel at 4:2:0, 6 at 4:4:4, 8 for CMYK.
JPEG_COEFFICIENT_BYTES = 2
# Each scan of a progressive JPEG is one more pass over every block of the image, and a
# refinement scan of a plain area is 26 bytes: 2,000 repeats over 12 Mpx fit in 125 KB and
# take 15-18 s to decode. libjpeg's progressive script writes 10 scans (6 for grey),
# mozjpeg's optimised scripts a few more; 50 leaves room for any encoder, and 50 passes
# over 12 Mpx take ~0.6 s (over the ~27 Mpx the memory budget allows a progressive JPEG,
# the CPU allowance below stops them at a second).
MAX_JPEG_SCANS = 50
# CPU time one photo may spend in the decoder (its thread's own, so a busy box does not
# make it fail). Photos decode one at a time (reception.photo_decoders), so this is what a
# patient's photo can wait behind another's. A 12 Mpx camera JPEG takes ~50 ms here.
DECODE_CPU_SECONDS = 1.0
# Pillow feeds a progressive JPEG to libjpeg this much at a time and the allowance is
# checked between feeds, so a feed must be quick to decode: ten 26-byte scans over 27 Mpx
# take ~0.3 s. Baseline JPEGs, PNG and WebP keep Pillow's 64 KB: their decode time is
# bounded by the pixels the memory budget lets through.
DECODE_FEED_BYTES = 256
JPEG_QUALITY = 85
# \Z, not $: "$" also matches before a trailing newline ("<hex>.jpg\n").
PHOTO_NAME = re.compile(r"\A[0-9a-f]{32}\.jpg\Z")
NOT_AN_IMAGE = "The photo must be a JPEG, PNG or WebP image."
TOO_LARGE_TO_DECODE = (
    "The photo has too many pixels to decode safely for its kind; send a JPEG or a smaller image."
)
TOO_MANY_SCANS = "The photo is a JPEG with too many scans; send it as an ordinary JPEG."
TOO_SLOW_TO_DECODE = "The photo took too long to decode; send a smaller or ordinary JPEG."
# Where the entropy-coded data of a scan ends: an FF that is not stuffing (FF00), a restart
# marker (RSTn) or fill (FF before FF).
_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")

# The one pixel limit is ours, read from the header before any decoding (reencode). Pillow's
# own only warns up to twice its value, and turning that warning into an error takes
# catch_warnings, which is process-wide and not thread-safe while photos decode in threads.
Image.MAX_IMAGE_PIXELS = None


def reencode(data: bytes, max_side: int = 800) -> bytes:
    """A fresh JPEG of at most `max_side` px with no metadata; InvalidInput names the problem."""
    if not data:
        raise InvalidInput("The photo is empty.", errors.PHOTO_EMPTY)
    webp_size = _webp_canvas_size(data)
    if webp_size is not None:
        # Pillow's WebP reader allocates libwebp's canvases as it opens the file: check
        # the size first (the kernel may not hand the memory out lazily, or not at all).
        _check_pixels(webp_size, webp_size[0] * webp_size[1] * WEBP_BYTES_PER_PIXEL)
    source = _DecodeAllowance(data)
    try:
        with Image.open(source, formats=ALLOWED_FORMATS) as img:
            if img.format not in ALLOWED_FORMATS + JPEG_FAMILY:
                raise InvalidInput(NOT_AN_IMAGE, errors.PHOTO_NOT_AN_IMAGE)
            _check_pixels(img.size, 0)
            full_size = img.size
            scans = 1
            if img.format in JPEG_FAMILY:
                scans = jpeg_scan_count(data, MAX_JPEG_SCANS)
                if scans > MAX_JPEG_SCANS:
                    raise InvalidInput(TOO_MANY_SCANS, errors.PHOTO_TOO_MANY_SCANS)
                # Let libjpeg decode at a reduced scale (1/2, 1/4, 1/8), never below the
                # size we keep: four to ten times faster and smaller for camera shots.
                img.draft("RGB", _target_size(img.size, max_side))
            # Before a single pixel is decoded: the header alone says what decoding costs.
            _check_pixels(full_size, _decode_bytes(img, full_size, scans))
            if scans > 1:
                # A progressive JPEG: its decode time grows with its scans, not its bytes.
                # A baseline one (a phone's) keeps Pillow's 64 KB feed: 256-byte feeds cost
                # a 200 KB photo check-in about a third of its speed in `make bench`.
                img.decodermaxblock = DECODE_FEED_BYTES
            source.start(DECODE_CPU_SECONDS)
            img.load()
            source.stop()
            orientation = _orientation(img)
            pixels = _flatten_to_rgb(img)
            pixels.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            # Turned after shrinking: the same picture (the bound is a square), without a
            # full-size copy. thumbnail() may have shrunk `img` itself in place.
            pixels = _turned(pixels, orientation)
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
    except _DecodeTooSlow as exc:
        raise InvalidInput(TOO_SLOW_TO_DECODE, errors.PHOTO_TOO_SLOW_TO_DECODE) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput("The photo is damaged or truncated.", errors.PHOTO_DAMAGED) from exc


class _DecodeTooSlow(Exception):
    """Not an OSError: Pillow and reencode() read those as a damaged file."""


class _DecodeAllowance(io.BytesIO):
    """The upload as Pillow reads it, fed to the decoder a block at a time: once the
    decoding thread has used its CPU allowance, the next read raises _DecodeTooSlow."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._deadline = math.inf

    def start(self, seconds: float) -> None:
        self._deadline = time.thread_time() + seconds

    def stop(self) -> None:
        self._deadline = math.inf

    def read(self, size: int | None = -1, /) -> bytes:
        if time.thread_time() > self._deadline:
            raise _DecodeTooSlow
        return super().read(size)


def jpeg_scan_count(data: bytes, stop_after: int) -> int:
    """The scans (SOS markers) of a JPEG's first image, found by walking its marker
    segments and skipping each scan's coded data, without decoding; counting stops once
    past `stop_after`. A file this cannot walk is left to the decoder to refuse."""
    scans = 0
    i = 2  # after SOI
    while i < len(data) and data[i] == 0xFF and scans <= stop_after:
        while i < len(data) and data[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= len(data):
            break
        marker = data[i]
        i += 1
        if marker == 0xD9:  # EOI: the end of the first image (an MPO's others follow)
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            continue
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2:
            break
        i += length
        if marker == 0xDA:  # SOS
            scans += 1
            after = _MARKER_AFTER_SCAN.search(data, i)
            if after is None:
                break
            i = after.start()
    return scans


def _check_pixels(size: tuple[int, int], decode_bytes: int) -> None:
    """InvalidInput for more pixels than any camera makes, or than we can afford to decode."""
    if size[0] * size[1] > MAX_PIXELS:
        raise InvalidInput("The photo has too many pixels.", errors.PHOTO_TOO_MANY_PIXELS)
    if decode_bytes > DECODE_BUDGET_BYTES:
        raise InvalidInput(TOO_LARGE_TO_DECODE, errors.PHOTO_TOO_LARGE_TO_DECODE)


def _webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """A WebP's width and height from its first chunk (RFC 9649), None for anything else.

    A file this cannot read is left to Pillow, which refuses it."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk, body = data[12:16], data[20:30]
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
        return int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1
    if chunk == b"VP8L" and body[0] == 0x2F:  # lossless: 14-bit width-1, height-1
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and body[3:6] == b"\x9d\x01\x2a":  # lossy key frame: 14-bit sizes
        return (
            int.from_bytes(body[6:8], "little") & 0x3FFF,
            int.from_bytes(body[8:10], "little") & 0x3FFF,
        )
    return None


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


def _orientation(img: Image.Image) -> object:
    """The camera's EXIF orientation number (1: upright), read after load(): a PNG's eXIf
    chunk may follow its pixels.

    Not ImageOps.exif_transpose: it re-serialises the EXIF block it was given, and a damaged
    block then raises TypeError or struct.error (a 500) for a photo whose pixels are fine.
    We drop the EXIF anyway, so only the orientation number is read.
    """
    try:
        return img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # an unreadable EXIF block only costs us the rotation
        return 1


def _turned(img: Image.Image, orientation: object) -> Image.Image:
    """The pixels turned as the EXIF orientation says (the image itself if upright)."""
    method = _ORIENTATION_FIX.get(orientation) if isinstance(orientation, int) else None
    return img.transpose(method) if method is not None else img


def _decode_bytes(img: Image.Image, full_size: tuple[int, int], scans: int) -> int:
    """The most memory reencode() holds at once for this opened (not yet loaded) image.

    `img.size` is what will be decoded (a JPEG's after draft()); `full_size` the header's.
    """
    pixels = img.width * img.height
    if img.format == "WEBP":
        return pixels * WEBP_BYTES_PER_PIXEL
    mode = img.mode
    if mode == "P" and "transparency" in img.info:
        mode = "P+transparency"
    held = pixels * DECODE_BYTES_PER_PIXEL.get(mode, max(DECODE_BYTES_PER_PIXEL.values()))
    if img.format in JPEG_FAMILY and (img.info.get("progressive") or scans > 1):
        held += _jpeg_coefficient_bytes(img, full_size)
    return held


def _jpeg_coefficient_bytes(img: Image.Image, full_size: tuple[int, int]) -> int:
    """libjpeg's whole-image coefficient buffer: each component's 8x8 blocks at its own
    sampling (from the frame header, Pillow's `layer`), 64 coefficients of 2 bytes each."""
    width, height = full_size
    layers = getattr(img, "layer", None) or [("", 1, 1, 0)] * len(img.getbands())
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    total = 0
    for _, h, v, _ in layers:
        blocks_across = math.ceil(math.ceil(width * h / h_max) / 8)
        blocks_down = math.ceil(math.ceil(height * v / v_max) / 8)
        total += blocks_across * blocks_down * 64 * JPEG_COEFFICIENT_BYTES
    return total


def _flatten_to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I"):
        # 16-bit greyscale PNG: convert() would clip every value above 255 to white.
        return img.convert("I").point(lambda v: v / 256).convert("L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # No convert() of what is RGBA already: it would be a full-size copy for nothing.
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def new_photo_name() -> str:
    return secrets.token_hex(16) + ".jpg"


def clean(data: bytes, max_side: int) -> bytes:
    """An uploaded photo re-encoded (reencode), with what its decoder freed handed back."""
    try:
        return reencode(data, max_side)
    finally:
        memory.return_free_memory()  # refused photo or not
