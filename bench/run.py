"""`make bench`: the benchmark matrix of our server against a bare aiohttp baseline.

For every subscriber count N, a fresh appliance (`python -m checkin_appliance serve`, 127.0.0.1,
its own temporary data directory, credentials made with the CLI) and a fresh baseline
(bench/baseline_server.py) are each prepared the same way:

  warm-up; RSS idle; 1 subscriber, RSS; all N subscribers, RSS;

then their cells alternate, ours then the baseline's, one per (kind, concurrency): M check-ins
(JSON, or multipart with a ~200 KB 1600x1200 JPEG) by C workers, then M call-nexts; every
subscriber must receive every event exactly once. With 50 subscribers two more cells: photo
check-ins at concurrency 2, and the same with JSON check-ins running alongside ("mixed": photo
work must not delay the feed). Each appliance level ends with the reconnect probe. The table,
the verdicts against the issue's targets and the JSON file follow; bench/README.md tells how to
read them.

    .venv/bin/python -m bench.run            # the full matrix (what `make bench` runs)
    .venv/bin/python -m bench.run --quick    # 1 and 50 subscribers, few check-ins
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench import report as reporting
from bench import targets
from bench.loadgen import (
    Deadline,
    Level,
    Sampler,
    Stream,
    Subscribers,
    call_next_stream,
    check_in_stream,
    make_photo,
    new_api_session,
    quantiles_ms,
    reconnect_probe,
    summary_ms,
)
from bench.servers import (
    HOST,
    ServerProcess,
    Target,
    authorise,
    create_credentials,
    external_target,
    fs_type,
    git_commit,
    loadavg,
    raise_fd_limit,
    rss_kb,
)

RESULTS = Path(__file__).resolve().parent / "results"
MATRIX_SUBSCRIBERS = [1, 50, 200, 500]
MATRIX_CONCURRENCY = [1, 8]
MATRIX_KINDS = ["json", "photo"]
QUICK_SUBSCRIBERS = [1, 50]
MIXED_JSON_INTERVAL = 0.02  # the JSON check-ins beside the photos: at most 50/s
WARM_ROUND = 10  # check-ins (and call-nexts) after connecting subscribers, before RSS

# Every server started, so the outermost `finally` can make sure none survives.
_servers: list[ServerProcess] = []


# --- one cell -----------------------------------------------------------------------------


async def run_cell(
    level: Level, kind: str, concurrency: int, args: argparse.Namespace
) -> dict[str, Any]:
    """M check-ins of one kind at concurrency C, then as many call-nexts; one result."""
    target = level.target
    count = args.checkins if kind == "json" else args.photo_checkins
    if kind == "mixed":
        streams = [
            check_in_stream(target, "photo", count, concurrency, level.photo),
            check_in_stream(
                target,
                "json",
                10 * count,
                1,
                level.photo,
                background=True,
                interval=MIXED_JSON_INTERVAL,
            ),
        ]
    else:
        streams = [check_in_stream(target, kind, count, concurrency, level.photo)]
    added = await level.phase(streams, "PATIENT_ADDED")
    called = await level.phase(
        [call_next_stream(target, added["ok"], concurrency)], "PATIENT_COMPLETED"
    )
    return cell_result(target.name, len(level.subs), kind, concurrency, added, called)


def cell_result(
    target: str,
    subscribers: int,
    kind: str,
    concurrency: int,
    added: dict[str, Any],
    called: dict[str, Any],
) -> dict[str, Any]:
    lat_added = added.pop("_latencies")
    lat_called = called.pop("_latencies")
    every = [x for values in (*lat_added.values(), *lat_called.values()) for x in values]
    main = "photo" if kind == "mixed" else kind
    phases = (added, called)
    statuses: dict[str, int] = {}
    for phase in phases:
        for stream in phase["streams"].values():
            for status, n in stream["statuses"].items():
                statuses[status] = statuses.get(status, 0) + n
    cpu = [p["cpu"] for p in phases]
    window = sum(c["window_s"] for c in cpu)

    def pct(key: str) -> float | None:
        values = [c[key] for c in cpu]
        if window <= 0 or any(v is None for v in values):
            return None
        return round(100 * sum(values) / window, 1)

    result: dict[str, Any] = {
        "target": target,
        "subscribers": subscribers,
        "kind": kind,
        "concurrency": concurrency,
        "checkins_per_s": added["streams"][main]["per_s"],
        "callnexts_per_s": called["streams"]["call_next"]["per_s"],
        "fanout_ms": summary_ms(every),
        "fanout_check_in_ms": summary_ms([x for v in lat_added.values() for x in v]),
        "fanout_call_next_ms": summary_ms(lat_called.get("call_next", [])),
        "cdf_ms": quantiles_ms(every),
        "statuses": statuses,
        "errors": sum(s["errors"] for p in phases for s in p["streams"].values()),
        "same_patient_twice": sum(
            s["same_patient_twice"] for p in phases for s in p["streams"].values()
        ),
        "missed": added["fanout"]["missed"] + called["fanout"]["missed"],
        "duplicated": added["fanout"]["duplicated"] + called["fanout"]["duplicated"],
        "unexpected_frames": sum(
            p["fanout"][k] for p in phases for k in ("unexpected_frames", "seq_backwards")
        ),
        "seq_gaps": added["fanout"]["seq_gaps"] + called["fanout"]["seq_gaps"],
        "generator_cpu_pct": pct("generator_cpu_s"),
        "generator_cpu_pct_max": max((c["generator_cpu_pct"] or 0) for c in cpu),
        "server_cpu_pct": pct("server_cpu_s"),
        "other_cpu_pct": pct("other_cpu_s"),
        "rss_peak_kb": max((p["rss_peak_kb"] or 0) for p in phases) or None,
        "check_in": added,
        "call_next": called,
    }
    if kind == "mixed":
        result["json_per_s"] = added["streams"]["json"]["per_s"]
        result["fanout_json_ms"] = summary_ms(lat_added.get("json", []))
        result["cdf_json_ms"] = quantiles_ms(lat_added.get("json", []))
    return result


# --- one level: one server, one subscriber count -------------------------------------------


def level_cells(args: argparse.Namespace, subscribers: int) -> list[tuple[str, int]]:
    cells = [(kind, c) for kind in args.kinds for c in args.concurrency]
    if subscribers == args.mixed_subscribers:
        cells += [("photo", args.photo_concurrency), ("mixed", args.photo_concurrency)]
    return list(dict.fromkeys(cells))  # photo at C=2 may already be in the matrix


async def start_target(
    name: str,
    record: dict[str, Any],
    api: aiohttp.ClientSession,
    args: argparse.Namespace,
    deadline: Deadline,
    workdir: Path,
) -> tuple[Target, ServerProcess | None]:
    """Starts the server of this level (or uses --base-url) and makes it ready to measure."""
    if name == "ours" and args.base_url:
        target = external_target(args.base_url, args.server_pid)
        await authorise(target, api, await external_credentials(args))
        return target, None
    server = ServerProcess(name, workdir, args.server_log_level)
    _servers.append(server)
    server.start()
    record["startup_s"] = round(await server.wait_healthy(api, deadline.left()), 3)
    target = Target(name, HOST, server.port, server.pid, supports_since=name == "ours")
    if name == "ours":
        record["data_dir_fs"] = fs_type(workdir)
        await authorise(target, api, await create_credentials(server.data_dir))
    return target, server


async def external_credentials(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    if args.credentials:
        raw = json.loads(args.credentials.read_text())
        return {
            role: (str(raw[role][0]), str(raw[role][1])) for role in ("form", "doctor", "queue")
        }
    return await create_credentials(args.data_dir)


@contextlib.asynccontextmanager
async def prepared_level(
    record: dict[str, Any], args: argparse.Namespace, photo: bytes, deadline: Deadline, tmp: Path
) -> AsyncIterator[Level]:
    """A started, warmed-up server with all its subscribers connected; stopped on exit.

    Fills `record` in place (RSS on the way), so a run cut short still reports what it measured.
    """
    name, n_subs = record["target"], record["subscribers"]
    api = new_api_session()
    server: ServerProcess | None = None
    subs: Subscribers | None = None
    sampler_task: asyncio.Task[None] | None = None
    try:
        target, server = await start_target(
            name, record, api, args, deadline, tmp / f"{name}-{n_subs}"
        )
        record["rss_start_kb"] = rss_kb(target.pid)
        subs = Subscribers(target)
        sampler = Sampler(target.pid, args.sample_interval)
        sampler_task = asyncio.create_task(sampler.run(deadline))
        level = Level(target, api, subs, sampler, photo, deadline, args.drain_timeout)
        if server is None:
            record["patients_called_before"] = await level.empty_queue()

        # Warm-up with nobody listening: imports, thread pool, SQLite pages.
        warm: list[Stream] = [check_in_stream(target, "json", args.warmup, 1, photo)]
        if {"photo", "mixed"} & {kind for kind, _ in level_cells(args, n_subs)}:
            warm.append(check_in_stream(target, "photo", 2, 1, photo))
        ok = sum(r.patient_id is not None for r in await level.unmeasured(warm))
        await level.unmeasured([call_next_stream(target, ok, 1)])
        await asyncio.sleep(0.3)
        record["rss_idle_kb"] = rss_kb(target.pid)

        # Memory per subscriber, in this one process: 1 subscriber, then all of them.
        t = time.perf_counter()
        await subs.connect(1, deadline)
        await warm_round(level)
        record["rss_one_sub_kb"] = rss_kb(target.pid)
        await subs.connect(n_subs - 1, deadline)
        record["connect_s"] = round(time.perf_counter() - t, 3)
        record["connected"] = len(subs)
        record["connect_errors"] = len(subs.connect_errors)
        record["first_connect_errors"] = subs.connect_errors[:5]
        await warm_round(level)
        record["rss_all_subs_kb"] = rss_kb(target.pid)
        one, every = record["rss_one_sub_kb"], record["rss_all_subs_kb"]
        if one is not None and every is not None and len(subs) > 1:
            record["rss_per_extra_sub_bytes"] = round((every - one) * 1024 / (len(subs) - 1))

        yield level

        record["rss_peak_kb"] = sampler.peak_kb or None
        record["rss_hwm_kb"] = sampler.hwm_kb()
        record["rss_end_kb"] = rss_kb(target.pid)
        record["closed_by_server"] = subs.closed_by_server()
    finally:
        if sampler_task is not None:
            sampler_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler_task
        if subs is not None:
            await subs.close()
        await api.close()
        if server is not None:
            record["exit_code"] = await asyncio.to_thread(server.stop)
            record["server_log"] = server.log_problems()


async def warm_round(level: Level) -> None:
    """A little traffic, so the subscribers' send paths have run before RSS is read."""
    target = level.target
    records = await level.unmeasured([check_in_stream(target, "json", WARM_ROUND, 1, level.photo)])
    ok = sum(r.patient_id is not None for r in records)
    await level.unmeasured([call_next_stream(target, ok, 1)])
    await asyncio.sleep(0.3)


async def run_subscriber_count(
    n_subs: int,
    args: argparse.Namespace,
    result: dict[str, Any],
    photo: bytes,
    deadline: Deadline,
    tmp: Path,
) -> None:
    """Ours and the baseline up at once, their cells alternating: each pair of cells sees the
    same machine within seconds, which a busy machine needs for a fair ratio."""
    names = ["ours", "baseline"] if args.baseline else ["ours"]
    async with contextlib.AsyncExitStack() as stack:
        levels: dict[str, Level] = {}
        records: dict[str, dict[str, Any]] = {}
        for name in names:
            deadline.check("starting servers")
            print(f"... {name}: {n_subs} subscriber(s)", flush=True)
            record: dict[str, Any] = {"target": name, "subscribers": n_subs, "cells": []}
            result["levels"].append(record)
            records[name] = record
            levels[name] = await stack.enter_async_context(
                prepared_level(record, args, photo, deadline, tmp)
            )
        for kind, concurrency in level_cells(args, n_subs):
            for name, level in levels.items():
                deadline.check("the matrix")
                cell = await run_cell(level, kind, concurrency, args)
                records[name]["cells"].append(cell)
                print(reporting.progress_line(cell), flush=True)
        if "ours" in levels and args.reconnect_k:
            probe = await reconnect_probe(levels["ours"], args.reconnect_k)
            records["ours"]["reconnect"] = probe
            print(f"      ours  reconnect probe: {probe['received']}/{probe['k']}", flush=True)


async def run_matrix(args: argparse.Namespace, result: dict[str, Any], photo: bytes) -> None:
    deadline = Deadline(args.timeout)
    async with asyncio.timeout(args.timeout + 30):  # belt and braces over Deadline
        with tempfile.TemporaryDirectory(prefix="checkin-bench-", dir=args.tmp_dir) as tmp:
            for n_subs in args.subscribers:
                await run_subscriber_count(n_subs, args, result, photo, deadline, Path(tmp))


# --- command line -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="a short run: 1 and 50 subscribers, M=40")
    p.add_argument("--base-url", help="measure this running server instead of starting ours")
    p.add_argument(
        "--data-dir", type=Path, help="with --base-url: its data directory (the CLI makes logins)"
    )
    p.add_argument(
        "--credentials",
        type=Path,
        help='with --base-url: JSON {"form": [token, password], "doctor": …, "queue": …}',
    )
    p.add_argument("--server-pid", type=int, help="with --base-url: its pid, for RSS and CPU")
    p.add_argument("--subscribers", type=int, nargs="+", metavar="N", help="default: 1 50 200 500")
    p.add_argument("--concurrency", type=int, nargs="+", metavar="C", help="default: 1 8")
    p.add_argument("--kinds", nargs="+", choices=["json", "photo"], help="default: json photo")
    p.add_argument("--checkins", type=int, help="check-ins (and call-nexts) per JSON cell (200)")
    p.add_argument(
        "--photo-checkins", type=int, help="per photo or mixed cell (60): each costs a decode"
    )
    p.add_argument(
        "--mixed-subscribers",
        type=int,
        default=50,
        help="subscriber count of the photo C=2 and mixed cells (50; 0: none)",
    )
    p.add_argument("--photo-concurrency", type=int, default=2, help="of those two cells (2)")
    p.add_argument("--reconnect-k", type=int, default=10, help="check-ins while dropped (10)")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--charts", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", type=Path, help="JSON file (default bench/results/<date>-<host>.json)")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured check-ins first (20)")
    p.add_argument("--timeout", type=float, help="overall limit in s (900; --quick 300)")
    p.add_argument("--drain-timeout", type=float, default=10.0, help="per phase, s (10)")
    p.add_argument("--sample-interval", type=float, default=0.1, help="RSS sampling, s (0.1)")
    p.add_argument(
        "--server-log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    p.add_argument("--tmp-dir", type=Path, help="where the data directories go")
    args = p.parse_args(argv)
    args.subscribers = args.subscribers or (QUICK_SUBSCRIBERS if args.quick else MATRIX_SUBSCRIBERS)
    args.concurrency = args.concurrency or MATRIX_CONCURRENCY
    args.kinds = args.kinds or MATRIX_KINDS
    args.checkins = args.checkins or (40 if args.quick else 200)
    args.photo_checkins = args.photo_checkins or (10 if args.quick else 60)
    args.timeout = args.timeout or (300.0 if args.quick else 900.0)
    if args.base_url and not (args.data_dir or args.credentials):
        p.error("--base-url needs --data-dir or --credentials to log in")
    for name, low, high in (
        ("checkins", 1, 100_000),
        ("photo_checkins", 1, 100_000),
        ("warmup", 0, 10_000),
        ("timeout", 1, 7200),
        ("drain_timeout", 0.1, 600),
        ("sample_interval", 0.01, 10),
        ("reconnect_k", 0, 1000),
        ("photo_concurrency", 1, 1000),
    ):
        if not low <= getattr(args, name) <= high:
            p.error(f"--{name.replace('_', '-')} must be within {low}..{high}")
    if any(not 1 <= n <= 10_000 for n in args.subscribers):
        p.error("--subscribers must be within 1..10000")
    if any(not 1 <= c <= 1_000 for c in args.concurrency):
        p.error("--concurrency must be within 1..1000")
    return args


def default_out(started: datetime, host: str, quick: bool) -> Path:
    safe_host = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in host)
    suffix = "-quick" if quick else ""
    return RESULTS / f"{started.strftime('%Y-%m-%d')}-{safe_host}{suffix}.json"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fd_limit = raise_fd_limit()
    need = max(args.subscribers) + max(args.concurrency) + 64
    if fd_limit < need:
        print(f"warning: open-files limit {fd_limit} < ~{need} needed", file=sys.stderr)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    photo = make_photo() if {"photo"} & set(args.kinds) or args.mixed_subscribers else b""
    result: dict[str, Any] = {
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "commit": git_commit(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "photo_bytes": len(photo),
        "method": (
            "subscribers run in the generator process (raw RFC 6455 protocol, frames timestamped "
            "on arrival); fan-out latency = arrival minus perf_counter just before the HTTP "
            "request; one fresh server per (target, subscriber count); nearest-rank percentiles"
        ),
        "loadavg_start": loadavg(),
        "levels": [],
    }
    code = 0
    try:
        asyncio.run(run_matrix(args, result, photo))
    except (TimeoutError, RuntimeError, OSError, ValueError) as exc:
        result["aborted"] = f"{type(exc).__name__}: {exc}"
        code = 2
    except KeyboardInterrupt:
        result["aborted"] = "interrupted"
        code = 130
    finally:
        for server in _servers:  # normally stopped already; never leave one behind
            server.stop()
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    result["loadavg_end"] = loadavg()
    result["verdicts"] = targets.evaluate(result)

    out = args.out or default_out(started, result["host"], args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(reporting.to_json(result) + "\n")
    reporting.print_report(result)
    if args.charts:
        for path in reporting.draw_charts(result, out.with_suffix("")):
            print(f"chart: {path}")
    print(f"results: {out}")
    if code == 0 and reporting.problems(result):
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
