"""How long a line's call order takes to compute: next_up and call_order for 500 waiting.

    .venv/bin/python -m bench.ordering [--waiting 500] [--rounds 300] [--out FILE.json]

The target (issue 15 item 4): call_order for 500 waiting in under 2 ms, since the store
computes it for every change that moves anyone's place. Prints a table and writes
bench/results/<date>-<host>-ordering.json. Not part of `make bench` (no server involved).
Exit code 0 whatever the verdict; the JSON and the table say it.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import socket
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from checkin_appliance.ordering import (
    DEFAULT_RULE,
    Priority,
    Rule,
    Waiting,
    call_order,
    next_up,
    streak_of,
)

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_MS = 2.0
NOW = 1_800_000_000.0


def line(size: int, seed: int) -> list[Waiting]:
    """A busy line: arrivals over the last 3 hours (some aged at 45 minutes), 5 % urgent,
    30 % priority, shuffled as a store query might hand them over."""
    rng = random.Random(seed)
    classes = [Priority.URGENT] * 5 + [Priority.PRIORITY] * 30 + [Priority.NORMAL] * 65
    waiting = [
        Waiting(entry_id, rng.choice(classes), NOW - rng.uniform(0, 3 * 3600))
        for entry_id in range(1, size + 1)
    ]
    rng.shuffle(waiting)
    return waiting


def timed(work: Callable[[], object], rounds: int) -> dict[str, float]:
    for _ in range(20):  # warm-up
        work()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        work()
        samples.append((time.perf_counter_ns() - started) / 1e6)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 4),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 4),
        "max_ms": round(samples[-1], 4),
    }


def run(size: int, rounds: int) -> dict[str, Any]:
    waiting = line(size, seed=15)
    streak = streak_of(["priority", "urgent", "priority"])
    rules: dict[str, Rule] = {
        "interleave 2:1, 45 min": DEFAULT_RULE,
        "interleave 1:3, no ageing": Rule.from_json(
            {"mode": "interleave", "priority": 1, "normal": 3, "max_wait_minutes": None}
        ),
        "strict, 45 min": Rule.from_json({"mode": "strict"}),
    }
    cells = []
    for name, rule in rules.items():
        for function, work in (
            ("call_order", lambda rule=rule: call_order(waiting, rule, streak, NOW)),
            ("next_up", lambda rule=rule: next_up(waiting, rule, streak, NOW)),
        ):
            cells.append({"rule": name, "function": function, **timed(work, rounds)})
    return {
        "waiting": size,
        "rounds": rounds,
        "streak": {"run": streak.run, "length": streak.length},
        "cells": cells,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--waiting", type=int, default=500)
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--out", type=Path, help="JSON file (default bench/results/...-ordering.json)")
    args = p.parse_args(argv)
    started = datetime.now(UTC)
    host = socket.gethostname()
    result = {
        "started": started.isoformat(timespec="seconds"),
        "host": host,
        "python": platform.python_version(),
        "target_ms": TARGET_MS,
        **run(args.waiting, args.rounds),
    }
    print(f"{'rule':<28}{'function':<12}{'median ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for cell in result["cells"]:
        print(
            f"{cell['rule']:<28}{cell['function']:<12}"
            f"{cell['median_ms']:>10.3f}{cell['p95_ms']:>10.3f}{cell['max_ms']:>10.3f}"
        )
    worst = max(c["p95_ms"] for c in result["cells"] if c["function"] == "call_order")
    result["verdict"] = "pass" if worst < TARGET_MS else "fail"
    print(
        f"call_order for {args.waiting} waiting: p95 {worst:.3f} ms (target < {TARGET_MS} ms): "
        f"{result['verdict'].upper()}"
    )
    safe_host = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in host)
    out = args.out or RESULTS / f"{started.strftime('%Y-%m-%d')}-{safe_host}-ordering.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
