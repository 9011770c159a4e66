"""The printed table, the verdicts, the list of problems and the PNG charts of one run.

Also re-prints and re-draws a saved run:  .venv/bin/python -m bench.report bench/results/X.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from bench import targets

GENERATOR_BUSY_PCT = 90.0  # the load generator near one full core: its latency tail, not ours
OTHER_CPU_WARN_PCT = 20.0  # background CPU above which figures are not comparable


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def mib(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def ratio(a: float | None, b: float | None, style: str) -> str:
    if a is None or not b:
        return "-"
    return f"{a / b:.0%}" if style == "%" else f"{a / b:.1f}x"


NUMBER_LISTS = re.compile(r"\[[\s\d.,eE+\-\[\]]*\]")  # spans only numbers and brackets


def to_json(result: dict[str, Any]) -> str:
    """Indented JSON with each list of numbers (CDF points) on one line: diffable, not 20k lines."""
    text = json.dumps(result, indent=1)
    return NUMBER_LISTS.sub(lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", "), text)


def progress_line(cell: dict[str, Any]) -> str:
    fan = cell["fanout_ms"]
    return (
        f"      {cell['target']:<8} {cell['kind']:<5} C={cell['concurrency']:<2} "
        f"{fmt(cell['checkins_per_s']):>7} check-ins/s {fmt(cell['callnexts_per_s']):>7} "
        f"call-nexts/s  fan-out p50/p99 "
        f"{fmt(fan['p50'])}/{fmt(fan['p99'])} ms  missed {cell['missed']} dup "
        f"{cell['duplicated']} err {cell['errors']}  gen {fmt(cell['generator_cpu_pct'], 0)}%"
    )


# --- the table ----------------------------------------------------------------------------


def print_matrix(result: dict[str, Any]) -> None:
    head = (
        f"{'subs':>4} {'C':>2} {'kind':<5} | {'ck/s':>6} {'cn/s':>6} | {'p50':>6} {'p95':>6} "
        f"{'p99':>6} {'max':>6} | {'miss':>4} {'dup':>3} {'err':>3} | {'srv%':>4} {'gen%':>5} "
        f"{'oth%':>4} | {'RSS':>5} || {'ck/s':>6} {'p99':>6} || {'ck/s':>5} {'p99':>5}"
    )
    groups = (
        f"{'':<14}| {'ours: rates':<14}| {'fan-out latency, ms':<28}| {'events':<13}| "
        f"{'CPU, % of a core':<17}| {'MiB':<6}|| {'baseline':<14}|| ours / base"
    )
    print(groups)
    print(head)
    print("-" * len(head))
    for cell in targets.cells(result):
        base = targets.find_cell(
            result, "baseline", cell["subscribers"], cell["kind"], cell["concurrency"]
        )
        fan = cell["fanout_ms"]
        base_rate = base["checkins_per_s"] if base else None
        base_p99 = base["fanout_ms"]["p99"] if base else None
        gen = fmt(cell["generator_cpu_pct"], 0)
        if (cell["generator_cpu_pct_max"] or 0) >= GENERATOR_BUSY_PCT:
            gen += "!"
        print(
            f"{cell['subscribers']:>4} {cell['concurrency']:>2} {cell['kind']:<5} | "
            f"{fmt(cell['checkins_per_s']):>6} {fmt(cell['callnexts_per_s']):>6} | "
            f"{fmt(fan['p50']):>6} {fmt(fan['p95']):>6} {fmt(fan['p99']):>6} "
            f"{fmt(fan['max']):>6} | {cell['missed']:>4} {cell['duplicated']:>3} "
            f"{cell['errors']:>3} | {fmt(cell['server_cpu_pct'], 0):>4} {gen:>5} "
            f"{fmt(cell['other_cpu_pct'], 0):>4} | {mib(cell['rss_peak_kb']):>5} || "
            f"{fmt(base_rate):>6} {fmt(base_p99):>6} || "
            f"{ratio(cell['checkins_per_s'], base_rate, '%'):>5} "
            f"{ratio(fan['p99'], base_p99, 'x'):>5}"
        )
        if cell["kind"] == "mixed":
            json_fan = cell["fanout_json_ms"]
            print(
                f"{'':>14}   ^ photo check-ins at C={cell['concurrency']} with "
                f"{fmt(cell['json_per_s'])} JSON check-ins/s beside them: JSON fan-out "
                f"p50/p99/max {fmt(json_fan['p50'])}/{fmt(json_fan['p99'])}/"
                f"{fmt(json_fan['max'])} ms"
            )
    print(
        "ck/s, cn/s: check-ins and call-nexts per second. Fan-out: request sent -> frame\n"
        "received, over every (event, subscriber) pair of the cell (check-ins and call-nexts).\n"
        "miss/dup: events a subscriber never got / got twice; err: non-2xx or failed requests.\n"
        "CPU: srv = the server process, gen = this load generator (subscribers included;\n"
        f"'!' = a phase above {GENERATOR_BUSY_PCT:.0f} %: the tail is the generator's), "
        "oth = the rest of the machine."
    )


def print_memory(result: dict[str, Any]) -> None:
    head = (
        f"{'target':<8} {'subs':>4} | {'start':>6} {'idle':>6} {'1 sub':>6} {'all':>6} "
        f"{'peak':>6} {'VmHWM':>6} | {'KiB/sub':>7} | {'connect s':>9} | {'log W/E/TB':<10} | "
        "closed by server"
    )
    print("Server RSS, MiB (peak: sampled every 100 ms during the cells)")
    print(head)
    print("-" * len(head))
    for lv in result.get("levels", []):
        log = lv.get("server_log", {})
        per = lv.get("rss_per_extra_sub_bytes")
        closed = lv.get("closed_by_server") or []
        log_counts = "/".join(str(log.get(k, "-")) for k in ("warnings", "errors", "tracebacks"))
        print(
            f"{lv['target']:<8} {lv['subscribers']:>4} | {mib(lv.get('rss_start_kb')):>6} "
            f"{mib(lv.get('rss_idle_kb')):>6} {mib(lv.get('rss_one_sub_kb')):>6} "
            f"{mib(lv.get('rss_all_subs_kb')):>6} {mib(lv.get('rss_peak_kb')):>6} "
            f"{mib(lv.get('rss_hwm_kb')):>6} | {fmt(None if per is None else per / 1024):>7} | "
            f"{fmt(lv.get('connect_s'), 2):>9} | "
            f"{log_counts:<10} | "
            f"{len(closed) or '-'}"
        )


def print_django(result: dict[str, Any]) -> None:
    print("Against the original Django system (figures from the issue): ck/s, fan-out p50/p99 ms")
    head = f"{'cell':<22} | {'Django':<16} | {'ours':<16} | {'baseline':<16} | note"
    print(head)
    print("-" * len(head))

    def figures(cell: dict[str, Any] | None) -> str:
        if cell is None:
            return "-"
        fan = cell["fanout_ms"]
        return f"{fmt(cell['checkins_per_s'], 0)}/s {fmt(fan['p50'], 0)}/{fmt(fan['p99'], 0)}"

    for ref in targets.DJANGO:
        subs, kind, c = ref["cell"]
        ours = targets.find_cell(result, "ours", subs, kind, c)
        base = targets.find_cell(result, "baseline", subs, kind, c)
        note = ref["note"]
        if ours is not None and ref["note"]:
            fails = {k: v for k, v in ours["statuses"].items() if not k.startswith("2")}
            note += f"; ours: {fails or 'none'}"
        django = f"{ref['checkins_per_s']}/s {ref['p50']}/{ref['p99']}"
        print(
            f"{subs:>3} subs C={c} {kind:<5}    | {django:<16} | {figures(ours):<16} | "
            f"{figures(base):<16} | {note}"
        )
    peaks = [lv.get("rss_peak_kb") or 0 for lv in result["levels"] if lv["target"] == "ours"]
    probes = [lv["reconnect"] for lv in result["levels"] if "reconnect" in lv]
    probe = min(probes, key=lambda p: p["received"]) if probes else None
    print(
        f"{'server RSS, peak':<22} | {targets.DJANGO_RSS_MIB} MiB{'':<9} | "
        f"{mib(max(peaks, default=0) or None)} MiB"
    )
    print(
        f"{'reconnect probe':<22} | {targets.DJANGO_RECONNECT:<16} | "
        f"{'-' if probe is None else str(probe['received']) + '/' + str(probe['k'])} (worst level)"
    )


def print_verdicts(result: dict[str, Any]) -> None:
    print("Targets (issue 6), this machine, this run:")
    for v in result.get("verdicts", []):
        mark = {True: "MET    ", False: "NOT MET", None: "n/a    "}[v["met"]]
        print(f"  {mark}  {v['goal']}  [{v['where']}]: {v['measured']}")


def caveats(result: dict[str, Any]) -> list[str]:
    out = []
    busy = [
        f"{c['target']} {targets.cell_name(c)} {c['other_cpu_pct']:.0f}%"
        for lv in result.get("levels", [])
        for c in lv.get("cells", [])
        if (c.get("other_cpu_pct") or 0) > OTHER_CPU_WARN_PCT
    ]
    if busy:
        out.append(
            "other processes used the CPU during the run (rerun on a quiet machine): "
            + "; ".join(busy[:8])
            + (f" and {len(busy) - 8} more" if len(busy) > 8 else "")
        )
    saturated = [
        f"{c['target']} {targets.cell_name(c)}"
        for lv in result.get("levels", [])
        for c in lv.get("cells", [])
        if (c.get("generator_cpu_pct_max") or 0) >= GENERATOR_BUSY_PCT
    ]
    if saturated:
        out.append(
            "the load generator was near one full core (its figures are a floor): "
            + "; ".join(saturated)
        )
    if (result.get("cpus") or 0) < 4:
        out.append(
            f"{result.get('cpus')} CPUs: server, generator and subscribers share them; "
            "rates are lower and tails longer than on a machine with cores to spare"
        )
    return out


def problems(result: dict[str, Any]) -> list[str]:
    """Anything that makes the run invalid (exit code 1), for ours and the baseline alike."""
    found = []
    if result.get("aborted"):
        found.append(f"aborted: {result['aborted']}")
    for lv in result.get("levels", []):
        where = f"{lv['target']} {lv['subscribers']} subs"
        if lv.get("connect_errors"):
            found.append(
                f"{where}: {lv['connect_errors']} subscribers failed to connect "
                f"({lv.get('first_connect_errors')})"
            )
        if lv.get("closed_by_server"):
            found.append(
                f"{where}: the server closed {len(lv['closed_by_server'])} subscribers "
                f"(codes {sorted(set(map(str, lv['closed_by_server'])))})"
            )
        log = lv.get("server_log", {})
        if log.get("warnings") or log.get("errors") or log.get("tracebacks"):
            first = (log.get("first_errors") or log.get("first_warnings") or [""])[0]
            found.append(
                f"{where}: server logged W/E/TB {log['warnings']}/{log['errors']}/"
                f"{log['tracebacks']}: {first}"
            )
        probe = lv.get("reconnect")
        if probe and not (
            probe["received"] == probe["k"]
            and not probe["duplicated"]
            and probe["in_order"]
            and probe.get("live_after")
        ):
            found.append(f"{where}: reconnect probe {probe}")
        for cell in lv.get("cells", []):
            name = f"{lv['target']} {targets.cell_name(cell)}"
            if cell["errors"]:
                found.append(f"{name}: statuses {cell['statuses']}")
            for key in (
                "same_patient_twice",
                "missed",
                "duplicated",
                "unexpected_frames",
                "seq_gaps",
            ):
                if cell[key]:
                    found.append(f"{name}: {key}={cell[key]}")
    return found


def print_report(result: dict[str, Any]) -> None:
    args = result["args"]
    print()
    print(
        f"checkin-appliance bench  {result['started_utc']}  host={result['host']}  "
        f"cpus={result['cpus']}  python={result['python']}  aiohttp={result['aiohttp']}  "
        f"commit={result['commit']}"
    )
    print(
        f"M={args['checkins']} check-ins + M call-nexts per JSON cell, "
        f"{args['photo_checkins']} per photo cell (photo {result['photo_bytes']:,} bytes),\n"
        f"warm-up {args['warmup']}, server log {args['server_log_level']}, "
        f"took {fmt(result.get('elapsed_s'))} s, loadavg {result.get('loadavg_start')} -> "
        f"{result.get('loadavg_end')}"
    )
    print()
    print_matrix(result)
    print()
    print_memory(result)
    print()
    print_django(result)
    print()
    print_verdicts(result)
    for line in caveats(result):
        print(f"CAVEAT: {line}")
    found = problems(result)
    print()
    if found:
        print("PROBLEMS (the run is not valid):")
        for line in found:
            print(f"  - {line}")
    else:
        print("no errors, no missed or duplicated events, no server warnings")


# --- charts -------------------------------------------------------------------------------


def draw_charts(result: dict[str, Any], stem: Path) -> list[Path]:
    """<stem>-fanout-cdf.png and <stem>-throughput.png; nothing (with a note) without
    matplotlib (pip install -e '.[bench]')."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # headless; its bundled DejaVu fonts, nothing from the network
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        print("charts skipped: matplotlib is not installed (pip install -e '.[bench]')")
        return []
    levels = sorted({c["subscribers"] for c in targets.cells(result)})
    if not levels:
        return []
    series = sorted({(c["kind"], c["concurrency"]) for c in targets.cells(result)})
    colours = {key: plt.get_cmap("tab10")(i % 10) for i, key in enumerate(series)}
    written = []

    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels), 4.8), squeeze=False)
    for ax, subs in zip(axes[0], levels, strict=True):
        for kind, c in series:
            for target, style in (("ours", "-"), ("baseline", "--")):
                cell = targets.find_cell(result, target, subs, kind, c)
                if cell is None:
                    continue
                key = "cdf_json_ms" if kind == "mixed" else "cdf_ms"
                points = cell.get(key) or []
                if not points:
                    continue
                label = f"{target} {'mixed: JSON' if kind == 'mixed' else kind} C={c}"
                ax.plot(
                    [max(ms, 0.01) for _, ms in points],
                    [p / 100 for p, _ in points],
                    style,
                    color=colours[(kind, c)],
                    label=label,
                    linewidth=1.4,
                )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_title(f"{subs} subscriber{'s' if subs != 1 else ''}")
        ax.set_xlabel("fan-out latency, ms (request sent -> frame received)")
        ax.set_ylim(0, 1.0)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("fraction of (event, subscriber) pairs")
    legend: dict[str, Any] = {}  # one entry per line style, from whichever panel has it
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend.keys()), loc="lower center", ncol=6, fontsize=8)
    fig.suptitle(
        "fan-out latency CDF over check-ins and call-nexts (solid: ours, dashed: aiohttp "
        f"baseline) - {result['host']}, {result['started_utc']}"
    )
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path = Path(f"{stem}-fanout-cdf.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in (
        (axes[0], "checkins_per_s", "check-ins/s"),
        (axes[1], "callnexts_per_s", "call-nexts/s"),
    ):
        for kind, c in series:
            if kind == "mixed":
                continue
            for target, style in (("ours", "-o"), ("baseline", "--s")):
                xs, ys = [], []
                for subs in levels:
                    cell = targets.find_cell(result, target, subs, kind, c)
                    if cell is not None and cell[key] is not None:
                        xs.append(subs)
                        ys.append(cell[key])
                if xs:
                    ax.plot(
                        xs,
                        ys,
                        style,
                        color=colours[(kind, c)],
                        label=f"{target} {kind} C={c}",
                        markersize=4,
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(levels, [str(n) for n in levels])
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("subscribers")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle("throughput vs subscribers (solid: ours, dashed: aiohttp baseline)")
    fig.tight_layout()
    path = Path(f"{stem}-throughput.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Re-print a saved run and re-draw its charts next to it."""
    paths = argv if argv is not None else sys.argv[1:]
    if len(paths) != 1:
        print("usage: python -m bench.report bench/results/<date>-<host>.json", file=sys.stderr)
        return 2
    path = Path(paths[0])
    result = json.loads(path.read_text())
    print_report(result)
    for chart in draw_charts(result, path.with_suffix("")):
        print(f"chart: {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
