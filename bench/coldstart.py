"""Start-up time of the frozen program: the one-file download against the folder the .deb installs.

    .venv/bin/python -m bench.coldstart [--runs 5] [--onefile FILE] [--onedir FILE] [--out FILE]

Each run starts `<program> serve` on a loopback port with a fresh, empty data directory and
times exec to the first 200 from /healthz (polled every 10 ms). Cold runs first drop the page
cache (`echo 3 > /proc/sys/vm/drop_caches`, root only; otherwise cold runs are skipped and the
JSON says so), as after a reboot; warm runs follow one untimed start. Each run gets its own
TMPDIR, and the bytes the program wrote there by the time it answered are recorded (the
one-file build unpacks itself there; the folder build should write nothing). Needs what
`make package` built. Prints a table, writes bench/results/<date>-<host>-coldstart.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from checkin_appliance import __version__

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DIST = ROOT / "dist"
HOST = "127.0.0.1"
POLL = 0.01
START_TIMEOUT = 60.0
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def drop_caches() -> bool:
    """Empties the page cache, as a reboot does; False where that is not allowed."""
    try:
        os.sync()
        DROP_CACHES.write_text("3\n")
    except OSError:
        return False
    return True


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_once(program: Path, work: Path) -> dict[str, float]:
    """One start: seconds from exec to /healthz 200, bytes written into TMPDIR by then, and the
    CPU seconds of the whole run (start, the polls, SIGTERM, exit): steadier than the wall
    clock on a busy machine."""
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=work))
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=work))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["TMPDIR"] = str(tmp)
    command = [str(program), "serve", "--host", HOST, "--port", str(port)]
    cpu_before = children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        while not healthy(port):
            if proc.poll() is not None:
                raise RuntimeError(f"{program} exited with {proc.returncode}")
            if time.perf_counter() - started > START_TIMEOUT:
                raise RuntimeError(f"{program}: no /healthz 200 within {START_TIMEOUT} s")
            time.sleep(POLL)
        elapsed = time.perf_counter() - started
        unpacked = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    cpu = children_cpu() - cpu_before
    return {"seconds": round(elapsed, 4), "cpu_s": round(cpu, 3), "tmpdir_bytes": unpacked}


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    seconds = [r["seconds"] for r in runs]
    return {
        "median_s": round(statistics.median(seconds), 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
        "cpu_median_s": round(statistics.median(r["cpu_s"] for r in runs), 3),
        "tmpdir_mb": round(max(r["tmpdir_bytes"] for r in runs) / 1e6, 1),
    }


def main() -> int:
    arch = platform.machine()
    onefile = DIST / f"checkin-appliance-{__version__}-linux-{arch}"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="timed starts per program and mode")
    p.add_argument("--onefile", type=Path, default=onefile)
    p.add_argument("--onedir", type=Path, default=Path(f"{onefile}-onedir/checkin-appliance"))
    p.add_argument("--out", type=Path, help="JSON file (default bench/results/...)")
    args = p.parse_args()
    programs = {"onefile": args.onefile, "onedir": args.onedir}
    for program in programs.values():
        if not program.is_file():
            sys.exit(f"{program} is missing: run `make package` first")

    can_drop = os.geteuid() == 0 and drop_caches()
    cells: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="coldstart-") as scratch:
        work = Path(scratch)
        for kind, program in programs.items():
            for mode in ("cold", "warm"):
                if mode == "cold" and not can_drop:
                    continue
                if mode == "warm":
                    start_once(program, work)  # fills the page cache
                runs = []
                for _ in range(args.runs):
                    if mode == "cold":
                        drop_caches()
                    runs.append(start_once(program, work))
                cells[f"{kind}-{mode}"] = {**summary(runs), "runs": runs}
                cell = cells[f"{kind}-{mode}"]
                print(
                    f"{kind:8} {mode:5} median {cell['median_s']:.3f} s "
                    f"(min {cell['min_s']:.3f}, max {cell['max_s']:.3f}; "
                    f"CPU {cell['cpu_median_s']:.3f} s; "
                    f"{cell['tmpdir_mb']} MB written to TMPDIR)",
                    flush=True,
                )

    now = datetime.now(UTC)
    host = socket.gethostname()
    result = {
        "bench": "coldstart",
        "date": now.isoformat(timespec="seconds"),
        "host": host,
        "machine": arch,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "version": __version__,
        "cold_runs": "page cache dropped before each" if can_drop else "skipped: not root",
        "programs": {k: str(v) for k, v in programs.items()},
        "cells": cells,
    }
    safe_host = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in host)
    out = args.out or RESULTS / f"{now.strftime('%Y-%m-%d')}-{safe_host}-coldstart.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
