"""A stored photo as HTTP, read from the database: the answers aiohttp's FileResponse gave for
the file it used to be (the same headers, If-Match / If-None-Match / If-Modified-Since /
If-Unmodified-Since, If-Range, a single byte range, HEAD), with a strong ETag.

The bytes are read CHUNK at a time on the store's reader connection (Store.photo_bytes, SQLite's
incremental blob I/O), each read its own short transaction: a photo's bytes are never all in
memory at once, and a slow client holds no read transaction open (which would keep WAL
checkpoints from finishing).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.helpers import ETAG_ANY, ETag

from checkin_appliance.domain import StoredPhoto, parse_time
from checkin_appliance.store import Store

# What one read takes from the database: a kiosk photo (800 px, ~50-150 KB) in one to three.
CHUNK = 64 * 1024
HEADERS = {
    "Content-Type": "image/jpeg",
    # A patient's photo is never kept by a browser's or a proxy's cache.
    "Cache-Control": "private, no-store",
    "X-Content-Type-Options": "nosniff",
}


async def send(request: web.Request, store: Store, name: str) -> web.StreamResponse:
    """The photo stored as `name` (an exact stored name, checked by the caller); 404 if none."""
    photo = await store.photo(name)
    if photo is None:
        raise web.HTTPNotFound()
    created = parse_time(photo.created_at).timestamp()
    # Last-Modified has whole seconds: comparisons use what the client was told.
    modified = int(created)
    # A name's bytes never change: its time and size tell one photo from another, as the
    # file's did (FileResponse: mtime and size).
    etag = f"{round(created * 1000):x}-{photo.size:x}"
    response = web.StreamResponse(headers=HEADERS)
    status = _precondition(request, etag, modified)
    if status == 412:
        response.set_status(status)
        response.content_length = 0
        await response.prepare(request)
        return response
    if status == 304:
        response.set_status(status)
        response.etag, response.last_modified = etag, modified
        await response.prepare(request)
        return response
    start, count = 0, photo.size
    if (if_range := request.if_range) is None or modified <= if_range.timestamp():
        try:
            asked = _range(request.http_range, photo.size)
        except ValueError:  # a malformed, multiple or unsatisfiable range
            response.headers["Content-Range"] = f"bytes */{photo.size}"
            response.set_status(416)
            await response.prepare(request)
            return response
        if asked is not None:
            start, count = asked
            response.set_status(206)
            response.headers["Content-Range"] = f"bytes {start}-{start + count - 1}/{photo.size}"
    # As FileResponse: a 200 or 206 names the version and says ranges work (a 304 only names
    # it, a 412 or 416 neither).
    response.etag, response.last_modified = etag, modified
    response.headers["Accept-Ranges"] = "bytes"
    response.content_length = count
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    return await _stream(request, response, store, photo, start, count)


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    store: Store,
    photo: StoredPhoto,
    start: int,
    count: int,
) -> web.StreamResponse:
    offset, end = start, start + count
    chunk = await store.photo_bytes(photo.id, offset, min(CHUNK, end - offset))
    if chunk is None:  # purged since it was found: nothing was sent yet
        raise web.HTTPNotFound()
    await response.prepare(request)
    while chunk:
        await response.write(chunk)
        offset += len(chunk)
        if offset >= end:
            break
        chunk = await store.photo_bytes(photo.id, offset, min(CHUNK, end - offset))
    if offset < end:  # purged while it was sent: the client must not take a part for all
        response.force_close()
    await response.write_eof()
    return response


def _precondition(request: web.Request, etag: str, modified: int) -> int | None:
    """412 or 304 as RFC 9110 section 13.2.2 orders the conditions, or None: send it."""
    if_match = request.if_match
    if if_match is not None and not _matches(etag, if_match, weak=False):
        return 412
    since = request.if_unmodified_since
    if since is not None and if_match is None and modified > since.timestamp():
        return 412
    if_none_match = request.if_none_match
    if if_none_match is not None and _matches(etag, if_none_match, weak=True):
        return 304
    since = request.if_modified_since
    if since is not None and if_none_match is None and modified <= since.timestamp():
        return 304
    return None


def _matches(etag: str, listed: tuple[ETag, ...], *, weak: bool) -> bool:
    if len(listed) == 1 and listed[0].value == ETAG_ANY:
        return True
    return any(tag.value == etag for tag in listed if weak or not tag.is_weak)


def _range(asked: slice, size: int) -> tuple[int, int] | None:
    """(first byte, count) of a single byte range, None without one; ValueError when it
    cannot be satisfied."""
    start, stop = asked.start, asked.stop
    if start is None:
        return None
    if start < 0 and stop is None:  # the last -start bytes
        start = max(start + size, 0)
        count = size - start
    else:
        count = min(stop if stop is not None else size, size) - start
    if start >= size:
        raise ValueError("the range starts after the photo's end")
    return start, count
