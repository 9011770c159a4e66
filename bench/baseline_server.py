"""The baseline: the least an aiohttp server must do to take a check-in and fan it out.

No database, no authentication, no image processing, no access log. It speaks just enough of
the contract's shape for the same load generator to measure it:

- POST /api/patients/ (JSON or multipart; the image part is read and thrown away) → 201
  {"id": n}, and one PATIENT_ADDED message, encoded once, put_nowait into every subscriber's
  queue;
- POST /api/doctors/ {"action": "call_next"} → 200 {"patient": {"id": n}} and PATIENT_COMPLETED,
  or 404 when nobody waits;
- GET /ws/queue/ (?snapshot=1 sends a QUEUE_SNAPSHOT with the current seq first); one writer
  task per WebSocket sends the queued frames;
- GET /healthz.

Run: python -m bench.baseline_server --port 8900
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web

QUEUE_SIZE = 512  # as the appliance's feed_queue_size: a subscriber this far behind is dropped


@dataclass(eq=False)
class Subscriber:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


@dataclass
class Broadcast:
    subscribers: set[Subscriber] = field(default_factory=set)
    waiting: collections.deque[int] = field(default_factory=collections.deque)
    closers: set[asyncio.Task[bool]] = field(default_factory=set)
    seq: int = 0
    last_id: int = 0

    def publish(self, event: str, patient_id: int, status: str) -> None:
        self.seq += 1
        message = {
            "type": "send.queue.update",
            "event": event,
            "patient": {"id": patient_id, "fname": "x", "status": status, "image": None},
            "seq": self.seq,
            "id": patient_id,
        }
        data = json.dumps(message, separators=(",", ":")).encode()  # once for everyone
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(data)
            except asyncio.QueueFull:
                self.subscribers.discard(sub)
                closer = asyncio.create_task(sub.ws.close(code=WSCloseCode.TRY_AGAIN_LATER))
                self.closers.add(closer)
                closer.add_done_callback(self.closers.discard)


BROADCAST = web.AppKey("broadcast", Broadcast)
routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.post("/api/patients/")
async def check_in(request: web.Request) -> web.Response:
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        while (part := await reader.next()) is not None:  # ends with the body
            while await part.read_chunk(64 * 1024):
                pass
    else:
        await request.json()
    hub = request.app[BROADCAST]
    hub.last_id += 1
    hub.waiting.append(hub.last_id)
    hub.publish("PATIENT_ADDED", hub.last_id, "waiting")
    return web.json_response({"id": hub.last_id, "status": "waiting"}, status=201)


@routes.post("/api/doctors/")
async def call_next(request: web.Request) -> web.Response:
    await request.json()
    hub = request.app[BROADCAST]
    if not hub.waiting:
        return web.json_response({"error": "No patients in the waiting."}, status=404)
    patient_id = hub.waiting.popleft()
    hub.publish("PATIENT_COMPLETED", patient_id, "completed")
    return web.json_response({"message": "Action successful.", "patient": {"id": patient_id}})


async def _write(sub: Subscriber, first: bytes | None) -> None:
    if first is not None:
        await sub.ws.send_frame(first, WSMsgType.TEXT)
    while True:  # ends when cancelled with its socket
        await sub.ws.send_frame(await sub.queue.get(), WSMsgType.TEXT)


@routes.get("/ws/queue/")
async def feed(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0, compress=False, max_msg_size=4096)
    await ws.prepare(request)
    hub = request.app[BROADCAST]
    sub = Subscriber(ws)
    # Snapshot and subscription in one step of the loop: no event can fall between them.
    first = None
    if request.query.get("snapshot") not in (None, "", "0"):
        snapshot = {"type": "send.queue.update", "event": "QUEUE_SNAPSHOT", "seq": hub.seq}
        first = json.dumps(snapshot).encode()
    hub.subscribers.add(sub)
    writer = asyncio.create_task(_write(sub, first))
    try:
        async for _ in ws:  # clients have nothing to say
            pass
    finally:
        hub.subscribers.discard(sub)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
    return ws


def create_app() -> web.Application:
    app = web.Application()
    app[BROADCAST] = Broadcast()
    app.add_routes(routes)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
