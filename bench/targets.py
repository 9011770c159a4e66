"""The issue's targets as verdicts over one run's results, and the original system's figures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MIB = 1024 * 1024

# Issue 6, "Targets on this machine (same matrix, same run as the baseline)".
CHECKINS_200_C8 = 250.0  # check-ins/s, 200 subscribers, concurrency 8
CHECKINS_200_C8_OF_BASELINE = 0.70
CHECKINS_1_C8 = 1000.0  # check-ins/s, 1 subscriber, concurrency 8
FANOUT_P99_200_C1_MS = 30.0
FANOUT_P99_200_C8_MS = 80.0
FANOUT_P99_OF_BASELINE = 1.5  # never worse than this multiple of the baseline's p99
PHOTO_CHECKINS_C2 = 60.0  # photo check-ins/s at concurrency 2
MIXED_JSON_P99_MS = 50.0  # JSON fan-out p99 with photos running, 50 subscribers
RSS_200_SUBS = 60 * MIB
RSS_PER_SUBSCRIBER = 50 * 1024
MATRIX_SECONDS = 600.0

# The original Django + Channels system, as measured in the issue (same matrix cells).
DJANGO = [
    {"cell": (1, "json", 1), "checkins_per_s": 43, "p50": 12, "p99": 46, "note": ""},
    {"cell": (200, "json", 1), "checkins_per_s": 11, "p50": 62, "p99": 190, "note": ""},
    {
        "cell": (200, "json", 8),
        "checkins_per_s": 15,
        "p50": 3378,
        "p99": 4151,
        "note": "22-40 % of call-nexts answered 500",
    },
    {"cell": (200, "photo", 1), "checkins_per_s": 9, "p50": 79, "p99": 213, "note": ""},
]
DJANGO_RSS_MIB = 376
DJANGO_RECONNECT = "0/10"


def cells(result: dict[str, Any], target: str = "ours") -> Iterator[dict[str, Any]]:
    for level in result.get("levels", []):
        if level["target"] == target:
            yield from level.get("cells", [])


def find_cell(
    result: dict[str, Any], target: str, subscribers: int, kind: str, concurrency: int
) -> dict[str, Any] | None:
    for cell in cells(result, target):
        if (cell["subscribers"], cell["kind"], cell["concurrency"]) == (
            subscribers,
            kind,
            concurrency,
        ):
            return cell
    return None


def find_level(result: dict[str, Any], target: str, subscribers: int) -> dict[str, Any] | None:
    for level in result.get("levels", []):
        if level["target"] == target and level["subscribers"] == subscribers:
            return level
    return None


def verdict(goal: str, where: str, measured: str, met: bool | None) -> dict[str, Any]:
    """met: True / False, or None when the run did not measure it (cell not in the matrix)."""
    return {"goal": goal, "where": where, "measured": measured, "met": met}


def _p99(cell: dict[str, Any] | None, key: str = "fanout_ms") -> float | None:
    return None if cell is None else cell[key]["p99"]


def _at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "not measured" if value is None else f"{value:.{digits}f}{unit}"


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []

    def rate(target: str, subs: int, kind: str, c: int) -> float | None:
        cell = find_cell(result, target, subs, kind, c)
        return None if cell is None else cell["checkins_per_s"]

    ours = rate("ours", 200, "json", 8)
    base = rate("baseline", 200, "json", 8)
    out.append(
        verdict(
            f"check-ins/s >= {CHECKINS_200_C8:.0f}",
            "200 subs, C=8, JSON",
            _num(ours, "/s"),
            _at_least(ours, CHECKINS_200_C8),
        )
    )
    share = None if ours is None or not base else ours / base
    out.append(
        verdict(
            f"check-ins/s >= {CHECKINS_200_C8_OF_BASELINE:.0%} of the baseline",
            "200 subs, C=8, JSON",
            "not measured" if share is None else f"{share:.0%} ({ours:.0f} of {base:.0f}/s)",
            _at_least(share, CHECKINS_200_C8_OF_BASELINE),
        )
    )
    ours = rate("ours", 1, "json", 8)
    out.append(
        verdict(
            f"check-ins/s >= {CHECKINS_1_C8:,.0f}",
            "1 sub, C=8, JSON",
            _num(ours, "/s"),
            _at_least(ours, CHECKINS_1_C8),
        )
    )
    for c, limit in ((1, FANOUT_P99_200_C1_MS), (8, FANOUT_P99_200_C8_MS)):
        p99 = _p99(find_cell(result, "ours", 200, "json", c))
        base_p99 = _p99(find_cell(result, "baseline", 200, "json", c))
        where = f"200 subs, C={c}, JSON"
        out.append(
            verdict(f"fan-out p99 <= {limit:.0f} ms", where, _num(p99, " ms"), _at_most(p99, limit))
        )
        times = None if p99 is None or not base_p99 else p99 / base_p99
        out.append(
            verdict(
                f"fan-out p99 <= {FANOUT_P99_OF_BASELINE}x the baseline's",
                where,
                "not measured"
                if times is None
                else f"{times:.2f}x ({p99:.1f} vs {base_p99:.1f} ms)",
                _at_most(times, FANOUT_P99_OF_BASELINE),
            )
        )
    photo = find_cell(result, "ours", 50, "photo", 2)
    photo_rate = None if photo is None else photo["checkins_per_s"]
    out.append(
        verdict(
            f"photo check-ins/s >= {PHOTO_CHECKINS_C2:.0f}",
            "50 subs, C=2, photo",
            _num(photo_rate, "/s"),
            _at_least(photo_rate, PHOTO_CHECKINS_C2),
        )
    )
    mixed_p99 = _p99(find_cell(result, "ours", 50, "mixed", 2), "fanout_json_ms")
    out.append(
        verdict(
            f"JSON fan-out p99 <= {MIXED_JSON_P99_MS:.0f} ms while photos are processed",
            "50 subs, photo C=2 + JSON",
            _num(mixed_p99, " ms"),
            _at_most(mixed_p99, MIXED_JSON_P99_MS),
        )
    )
    level = find_level(result, "ours", 200)
    peak = None if level is None else level.get("rss_peak_kb")
    json_peaks = (
        [c["rss_peak_kb"] or 0 for c in level.get("cells", []) if c["kind"] == "json"]
        if level
        else []
    )
    measured = _num(None if peak is None else peak / 1024, " MiB")
    if peak is not None and json_peaks:
        measured += f" (JSON cells alone: {max(json_peaks) / 1024:.1f} MiB)"
    out.append(
        verdict(
            f"server RSS <= {RSS_200_SUBS // MIB} MiB (peak, photo cells included)",
            "200 subs",
            measured,
            _at_most(None if peak is None else peak * 1024, RSS_200_SUBS),
        )
    )
    level = find_level(result, "ours", 500)
    per_sub = None if level is None else level.get("rss_per_extra_sub_bytes")
    out.append(
        verdict(
            f"RSS per extra subscriber <= {RSS_PER_SUBSCRIBER // 1024} KiB",
            "1 -> 500 subs",
            _num(None if per_sub is None else per_sub / 1024, " KiB"),
            _at_most(per_sub, RSS_PER_SUBSCRIBER),
        )
    )
    out.extend(correctness(result))
    elapsed = result.get("elapsed_s")
    out.append(
        verdict(
            f"the whole run < {MATRIX_SECONDS / 60:.0f} min",
            "this run",
            _num(None if elapsed is None else elapsed / 60, " min"),
            None
            if elapsed is None or result.get("aborted") or result["args"].get("quick")
            else elapsed < MATRIX_SECONDS,
        )
    )
    return out


def cell_name(cell: dict[str, Any]) -> str:
    return f"{cell['subscribers']} subs C={cell['concurrency']} {cell['kind']}"


def correctness(result: dict[str, Any]) -> list[dict[str, Any]]:
    """0 errors, 0 missed, 0 duplicated in every cell of ours; the reconnect probe k/k."""
    ours = list(cells(result))
    out = []
    for key, goal in (
        ("errors", "0 errors (non-2xx, failed requests, a patient called twice)"),
        ("missed", "0 missed events"),
        ("duplicated", "0 duplicated events"),
    ):
        bad = []
        for cell in ours:
            n = cell[key] + (cell["same_patient_twice"] if key == "errors" else 0)
            if key == "missed":
                n += cell["unexpected_frames"]
            if n:
                bad.append(f"{cell_name(cell)}: {n}")
        measured = f"0 in all {len(ours)} cells" if not bad else "; ".join(bad)
        out.append(verdict(goal, "every cell", measured, (not bad) if ours else None))
    probes = [
        (lv["subscribers"], lv["reconnect"])
        for lv in result.get("levels", [])
        if lv["target"] == "ours" and "reconnect" in lv
    ]
    passed = [
        p["received"] == p["k"] and not p["duplicated"] and p["in_order"] and p.get("live_after")
        for _, p in probes
    ]
    measured = ", ".join(f"{p['received']}/{p['k']} ({n} subs)" for n, p in probes)
    out.append(
        verdict(
            "reconnect probe: all k events after ?since=, in order, then live",
            "every level",
            measured or "not measured",
            all(passed) if probes else None,
        )
    )
    return out
