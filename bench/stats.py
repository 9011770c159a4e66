"""Statistics on a generated year of a busy clinic: does every stats endpoint answer in time?

    .venv/bin/python -m bench.stats [--days 365] [--per-day 150] [--runs 5] [--seed 18]
                                    [--time-zone Europe/Madrid] [--out FILE.json]

Generates `days` clinic days of `per-day` visits each straight into a SQLite file made by the
store's own migrations (seeded; bulk inserts in one transaction): arrivals over the day with a
morning peak, four lines, six doctors, waits and service times drawn lognormal, and outcomes
as a box records them in queue_entries and visit_transitions: done (most started first, some
after a recall), no-shows after a recall, cancels from the waiting line, visits closed as not
seen at the end of the day, transfers, and calls undone and made again. Then it starts the
real server on that data directory (`python -m checkin_appliance serve`, loopback), logs in
an admin made with the CLI, and times every stats endpoint (each with the previous period it
compares to) for the last day, week, month (30 days) and the whole range, unfiltered, for one
line and for one doctor: `runs` requests each, median and max. Verdict MET when every answer
took < 300 ms. Prints a table and the verdict, writes bench/results/<date>-<host>-stats.json.
Exit code 0 for a valid run whatever the verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import random
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from bench.servers import HOST, ServerProcess, create_credential, login
from checkin_appliance.domain import format_time
from checkin_appliance.store import Store

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_MS = 300.0
ENDPOINTS = ("arrivals", "times", "outcomes")
REQUEST_TIMEOUT = 30.0
# Lines: (prefix, share of the visits, doctors serving it (indexes into DOCTORS)).
LINES = (("A", 0.50, (0, 1, 2)), ("B", 0.20, (3,)), ("L", 0.20, (4,)), ("V", 0.10, (5, 3)))
DOCTORS = ("Dr 1", "Dr 2", "Dr 3", "Nurse 1", "Lab 1", "Vaccines 1")
# Arrivals over the local day: (from hour, to hour, weight): a morning peak, a quieter
# afternoon, nobody at night.
ARRIVALS = ((8, 9, 2.0), (9, 12, 3.0), (12, 14, 1.5), (14, 17, 1.8), (17, 20, 1.0))
# Outcomes, as shares of the visits.
NO_SHOW, CANCEL, NOT_SEEN, TRANSFER, UNDONE_CALL, RECALL, NOT_STARTED = (
    0.06,
    0.04,
    0.02,
    0.02,
    0.03,
    0.05,
    0.10,
)
WAIT_MEDIAN_MIN, WAIT_SIGMA = 18.0, 0.7
SERVICE_MEDIAN_MIN, SERVICE_SIGMA = 11.0, 0.5


def _previous(state: dict[str, Any]) -> str:
    return json.dumps(state)


def _arrival_hour(rng: random.Random) -> float:
    total = sum(w * (b - a) for a, b, w in ARRIVALS)
    pick = rng.random() * total
    for a, b, w in ARRIVALS:
        span = w * (b - a)
        if pick < span:
            return a + (pick / span) * (b - a)
        pick -= span
    return ARRIVALS[-1][1] - 0.01


class _Visit:
    """One generated visit's moves: (at, by, action, from, to, from line, to line)."""

    def __init__(self, line_id: int) -> None:
        self.line_id = line_id
        self.state: dict[str, Any] = {"status": "waiting", "line_id": line_id}
        self.moves: list[tuple[Any, ...]] = []

    def move(
        self, at: datetime, by: int | None, action: str, to: str, to_line: int | None = None
    ) -> None:
        self.moves.append(
            (
                at,
                by,
                action,
                self.state["status"],
                to,
                self.state["line_id"],
                to_line or self.line_id,
            )
        )
        self.state["status"] = to
        if to_line is not None:
            self.state["line_id"] = to_line


def generate(path: Path, days: int, per_day: int, seed: int, time_zone: str) -> dict[str, Any]:
    """The year (or `days`) ending yesterday in `time_zone`, written into `path` (a data
    directory's checkin.db made by the store's migrations). Returns what was made."""
    asyncio.run(_migrate(path))
    rng = random.Random(seed)
    tz = ZoneInfo(time_zone)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA foreign_keys = OFF")  # every reference is made right below
    now = format_time(datetime.now(UTC))
    conn.execute(
        "INSERT INTO settings (key, value) VALUES ('time_zone', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (json.dumps(time_zone),),
    )
    line_ids = {"A": 1}
    for position, (prefix, _share, _docs) in enumerate(LINES[1:], start=2):
        line_ids[prefix] = conn.execute(
            "INSERT INTO lines (prefix, name, colour, icon, active, position, created_at)"
            " VALUES (?, ?, '#1f6feb', NULL, 1, ?, ?)",
            (prefix, json.dumps({"en": prefix, "es": prefix}), position, now),
        ).lastrowid
    doctor_ids = []
    for number, label in enumerate(DOCTORS):
        doctor_ids.append(
            conn.execute(
                "INSERT INTO credentials (token, role, label, room, password_hash, created_at)"
                " VALUES (?, 'doctor', ?, ?, 'x', ?)",
                (f"9{number:07d}", label, f"Room {number + 1}", now),
            ).lastrowid
        )
    last_day = datetime.now(tz).date() - timedelta(days=1)
    first_day = last_day - timedelta(days=days - 1)
    entries: list[tuple[Any, ...]] = []
    moves: list[tuple[Any, ...]] = []
    patients: list[tuple[Any, ...]] = []
    entry_id = transition_id = 0
    shares = [share for _p, share, _d in LINES]
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        tickets: dict[str, int] = {}
        hours = sorted(_arrival_hour(rng) for _ in range(per_day))
        for hour in hours:
            entry_id += 1
            prefix, _share, serving = rng.choices(LINES, weights=shares)[0]
            line_id = line_ids[prefix]
            doctor = doctor_ids[rng.choice(serving)]
            local = datetime.combine(day, datetime.min.time(), tzinfo=tz) + timedelta(hours=hour)
            checked_in = local.astimezone(UTC)
            tickets[prefix] = tickets.get(prefix, 0) + 1
            ticket = f"{prefix}-{tickets[prefix]:03d}"
            visit = _Visit(line_id)
            state, visit_moves = visit.state, visit.moves
            move = visit.move

            wait = timedelta(minutes=WAIT_MEDIAN_MIN * math.exp(rng.gauss(0, WAIT_SIGMA)))
            service = timedelta(minutes=SERVICE_MEDIAN_MIN * math.exp(rng.gauss(0, SERVICE_SIGMA)))
            called = checked_in + wait
            roll = rng.random()
            undone = rng.random() < UNDONE_CALL
            called_by = None
            if roll < CANCEL:
                move(checked_in + wait / 2, None, "cancel", "cancelled")
            elif roll < CANCEL + NOT_SEEN:
                move(checked_in + timedelta(hours=12), None, "end_of_day", "not_seen")
            else:
                if undone:  # a call undone within seconds, then the real one
                    move(called - wait / 3, doctor, "call", "called")
                    visit_moves.append(
                        (
                            called - wait / 3 + timedelta(seconds=5),
                            doctor,
                            "undo",
                            "called",
                            "waiting",
                            line_id,
                            line_id,
                        )
                    )
                    state["status"] = "waiting"
                called_by = doctor
                move(called, doctor, "call", "called")
                if roll < CANCEL + NOT_SEEN + NO_SHOW:
                    move(called + timedelta(minutes=2), doctor, "recall", "called")
                    move(called + timedelta(minutes=5), None, "no_show", "no_show")
                else:
                    if rng.random() < RECALL:
                        called += timedelta(minutes=2)
                        move(called, doctor, "recall", "called")
                    if roll < CANCEL + NOT_SEEN + NO_SHOW + TRANSFER:
                        # sent on to the lab, called and served there
                        lab = line_ids["L"]
                        move(called + timedelta(minutes=1), doctor, "transfer", "waiting", lab)
                        called += timedelta(minutes=15)
                        called_by = doctor_ids[4]
                        move(called, called_by, "call", "called", lab)
                        line_id = visit.line_id = lab
                    started = called + timedelta(minutes=1)
                    if rng.random() < NOT_STARTED:
                        started = called
                    else:
                        move(started, called_by, "start", "in_service")
                    move(started + service, called_by, "done", "done")
            previous = _previous({"status": "waiting", "line_id": state["line_id"]})
            first_call = next((m[0] for m in visit_moves if m[2] == "call"), None)
            for at, by, action, from_status, to_status, from_line, to_line in visit_moves:
                transition_id += 1
                undone_by = None
                if action == "call" and undone and first_call == at and called_by is not None:
                    undone_by = transition_id + 1  # the undo right after it
                moves.append(
                    (
                        transition_id,
                        entry_id,
                        format_time(at),
                        by,
                        action,
                        from_status,
                        to_status,
                        from_line,
                        to_line,
                        None,
                        previous,
                        undone_by,
                    )
                )
            end = visit_moves[-1][0] if visit_moves else None
            # The visit's times as the box keeps them beside its moves (migration 0015): the
            # moves that stand, undone ones and the undos left out.
            standing = [
                m
                for m in visit_moves
                if m[2] != "undo"
                and not (undone and called_by is not None and m[2] == "call" and m[0] == first_call)
            ]
            first_called = min(
                (m[0] for m in standing if m[2] in ("call", "complete")), default=None
            )
            service_from = max(
                (m[0] for m in standing if m[4] in ("called", "in_service")), default=None
            )
            done_at = max((m[0] for m in standing if m[2] == "done"), default=None)
            patients.append((entry_id, "Bench", format_time(checked_in)))
            called_at = format_time(called) if called_by is not None else None
            entries.append(
                (
                    entry_id,
                    entry_id,
                    state["status"],
                    format_time(checked_in),
                    called_at,
                    called_at,
                    called_by,
                    state["line_id"],
                    day.isoformat(),
                    tickets[prefix],
                    ticket,
                    format_time(end) if end else None,
                    format_time(checked_in),
                    *(format_time(t) if t else None for t in (first_called, service_from, done_at)),
                )
            )
    with conn:
        conn.executemany("INSERT INTO patients (id, fname, created_at) VALUES (?, ?, ?)", patients)
        conn.executemany(
            "INSERT INTO queue_entries (id, patient_id, status, check_in_time, called_at,"
            " completed_at, called_by, line_id, ticket_day, ticket_number, ticket, updated_at,"
            " queue_time, first_called_at, service_from, done_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            entries,
        )
        conn.executemany(
            "INSERT INTO visit_transitions (id, entry_id, at, credential_id, action,"
            " from_status, to_status, from_line, to_line, room, previous, undone_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            moves,
        )
    conn.execute("ANALYZE")
    conn.close()
    return {
        "first_day": first_day.isoformat(),
        "last_day": last_day.isoformat(),
        "visits": len(entries),
        "transitions": len(moves),
        "lines": [p for p, _s, _d in LINES],
        "doctors": len(DOCTORS),
        "doctor_token": f"9{0:07d}",
    }


async def _migrate(path: Path) -> None:
    store = Store(path)
    await store.open()
    await store.close()


def ranges(first_day: date, last_day: date) -> dict[str, tuple[date, date]]:
    return {
        "day": (last_day, last_day),
        "week": (last_day - timedelta(days=6), last_day),
        "month": (last_day - timedelta(days=29), last_day),
        "year": (first_day, last_day),
    }


async def measure(
    base: str, headers: dict[str, str], made: dict[str, Any], runs: int
) -> list[dict[str, Any]]:
    first, last = date.fromisoformat(made["first_day"]), date.fromisoformat(made["last_day"])
    filters = {"all": {}, "line A": {"line": "A"}, "doctor": {"doctor": made["doctor_token"]}}
    cells = []
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        for endpoint in ENDPOINTS:
            for span, (start, end) in ranges(first, last).items():
                for label, extra in filters.items():
                    query = {"from": start.isoformat(), "to": end.isoformat(), **extra}
                    samples = []
                    for _ in range(runs):
                        began = time.perf_counter()
                        async with session.get(f"{base}/api/stats/{endpoint}/", params=query) as r:
                            body = await r.read()
                            if r.status != 200:
                                raise RuntimeError(f"{endpoint} {query} -> {r.status} {body!r}")
                        samples.append((time.perf_counter() - began) * 1000)
                    cells.append(
                        {
                            "endpoint": endpoint,
                            "range": span,
                            "days": (end - start).days + 1,
                            "filter": label,
                            "median_ms": round(statistics.median(samples), 1),
                            "max_ms": round(max(samples), 1),
                            "bytes": len(body),
                        }
                    )
    return cells


async def run_server(workdir: Path, made: dict[str, Any], runs: int) -> dict[str, Any]:
    server = ServerProcess("appliance", workdir, log_level="WARNING")
    password = "bench-stats-" + str(random.Random().getrandbits(64))
    token = await create_credential(server.data_dir, "admin", "Bench admin", password)
    server.start()
    try:
        async with aiohttp.ClientSession() as session:
            ready = await server.wait_healthy(session, 60)
            access = await login(session, f"http://{HOST}:{server.port}", token, password)
        cells = await measure(
            f"http://{HOST}:{server.port}", {"Authorization": f"Bearer {access}"}, made, runs
        )
    finally:
        code = server.stop()
    return {
        "ready_s": round(ready, 2),
        "cells": cells,
        "exit_code": code,
        "log": server.log_problems(),
    }


def print_table(result: dict[str, Any]) -> None:
    made = result["data"]
    print(
        f"data: {made['visits']} visits, {made['transitions']} transitions,"
        f" {made['first_day']} .. {made['last_day']} ({result['args']['time_zone']}),"
        f" generated in {result['generate_s']} s, file {result['db_mb']} MB"
    )
    print(f"{'endpoint':<10}{'range':<7}{'filter':<8}{'median ms':>10}{'max ms':>8}{'KB':>7}")
    for c in result["cells"]:
        print(
            f"{c['endpoint']:<10}{c['range']:<7}{c['filter']:<8}{c['median_ms']:>10.1f}"
            f"{c['max_ms']:>8.1f}{c['bytes'] / 1024:>7.1f}"
        )
    worst = max(result["cells"], key=lambda c: c["max_ms"])
    print(
        f"verdict (every answer < {TARGET_MS:.0f} ms, {result['args']['runs']} runs each):"
        f" {result['verdict']} (slowest: {worst['endpoint']} {worst['range']} {worst['filter']}"
        f" max {worst['max_ms']:.1f} ms)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--per-day", type=int, default=150)
    p.add_argument("--runs", type=int, default=5, help="requests per cell")
    p.add_argument("--seed", type=int, default=18)
    p.add_argument("--time-zone", default="Europe/Madrid")
    p.add_argument("--out", type=Path, help="JSON file (default bench/results/...-stats.json)")
    args = p.parse_args(argv)
    started = datetime.now(UTC)
    host = socket.gethostname()
    with tempfile.TemporaryDirectory(prefix="bench-stats-") as tmp:
        workdir = Path(tmp)
        db = workdir / "data" / "checkin.db"
        db.parent.mkdir(parents=True)
        t0 = time.monotonic()
        made = generate(db, args.days, args.per_day, args.seed, args.time_zone)
        generate_s = round(time.monotonic() - t0, 1)
        db_mb = round(db.stat().st_size / 1e6, 1)
        served = asyncio.run(run_server(workdir, made, args.runs))
    cells = served.pop("cells")
    result: dict[str, Any] = {
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": host,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "target_ms": TARGET_MS,
        "data": made,
        "generate_s": generate_s,
        "db_mb": db_mb,
        "server": served,
        "cells": cells,
        "verdict": "MET" if all(c["max_ms"] < TARGET_MS for c in cells) else "NOT MET",
    }
    result["elapsed_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    print_table(result)
    safe_host = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in host)
    out = args.out or RESULTS / f"{started.strftime('%Y-%m-%d')}-{safe_host}-stats.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"results: {out} ({result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
