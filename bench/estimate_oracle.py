"""How low can the estimate's error go? An oracle for bench/estimate.py's scenarios.

    .venv/bin/python -m bench.estimate_oracle [--scenario NAME] [--samples 61] [--seeds 17]

At each check-in of an evaluated day the oracle re-simulates the rest of the day `samples`
times from what a perfect box could know: everyone waiting and their order, the doctors and
their shifts, how long each visit in progress has run, and the scenario's TRUE parameters
(service times, no-shows, arrival rates by hour). What it cannot know is drawn afresh in each
sample: when the visits in progress end (given how long they have run), the visits to come,
and the arrivals still to come. It predicts the median of its samples, the best a single
number can do for a median absolute error. Its error, beside ours and baseline (a)'s, is the
floor for a target like "0.7 x (a)": a box that must learn the parameters from its own calls
can only come near it. Not part of `make bench` (it takes minutes); prints a table.
"""

from __future__ import annotations

import argparse
import copy
import heapq
import math
import random
import statistics
import sys
from typing import Any

from bench import estimate as bench
from checkin_appliance import ordering

MINUTE = bench.MINUTE


class OracleDay(bench.Day):
    """A simulated day that, at each check-in, also asks the oracle."""

    samples: int = 61
    oracle: dict[int, float]
    doctors: list[bench.Doctor]

    def run(self) -> None:
        self.oracle = {}
        self.doctors = []
        super().run()

    def dispatch(self, now: float, doctors: list[bench.Doctor]) -> None:
        self.doctors = doctors  # run()'s own list: the copies go on with it
        super().dispatch(now, doctors)

    def estimate(self, patient: bench.Patient, now: float) -> None:
        super().estimate(patient, now)
        waits = []
        for sample in range(self.samples):
            future = copy.deepcopy(self)
            future.rng = random.Random(f"oracle/{now}/{patient.entry_id}/{sample}")
            future.past = None  # no estimates inside a sample
            future.forget_the_future(now)
            future.go_on(now)
            again = next(p for p in future.patients if p.entry_id == patient.entry_id)
            assert again.first_call is not None
            waits.append((again.first_call - again.check_in) / MINUTE)
        self.oracle[patient.entry_id] = statistics.median(waits)

    def forget_the_future(self, now: float) -> None:
        """Visits in progress end at a fresh draw longer than they have run; the arrivals
        still to come are drawn afresh from the scenario's rates."""
        s = self.scenario
        kept = []
        for when, seq, kind, subject in self.events:
            if kind == "arrive":
                continue
            if kind == "end":
                record, _ = subject
                when = record.at + self.visit_length(longer_than=now - record.at)
            kept.append((when, seq, kind, subject))
        heapq.heapify(kept)
        self.events = kept
        entry_ids = iter(range(1_000_000, 2_000_000))
        for first, last, per_hour in s.arrivals:
            t = max(self.start + first * bench.HOUR, now)
            while (t := t + self.rng.expovariate(per_hour / bench.HOUR)) < (
                self.start + last * bench.HOUR
            ):
                draw = self.rng.random()
                priority = (
                    ordering.Priority.URGENT
                    if draw < s.urgent
                    else ordering.Priority.PRIORITY
                    if draw < s.urgent + s.priority
                    else ordering.Priority.NORMAL
                )
                self.at(t, "arrive", bench.Patient(next(entry_ids), priority, t, t))

    def visit_length(self, longer_than: float) -> float:
        """A visit's length as Day.visit draws it, given that it has run `longer_than`
        seconds already."""
        while (length := self.visit()[0]) <= longer_than:
            pass
        return length

    def go_on(self, now: float) -> None:
        """The rest of the day, from the check-in at `now` (whose estimate asked for it)."""
        self.dispatch(now, self.doctors)
        self.serve(self.doctors)


def errors(scenario: bench.Scenario, seed: int, weeks: int, days: int) -> dict[str, Any]:
    past: list[tuple[list[float], list[bench.Call]]] = []
    ours, oracle, baseline = [], [], []
    for index in range(weeks + days):
        rng = random.Random(f"{seed}/{scenario.name}/{index}")
        evaluated = index >= weeks
        history = past[-weeks:] if evaluated else None
        day = OracleDay(scenario, bench.DAY0 + index * bench.WEEK, rng, history)
        day.run()
        calls = [c.seen_at(math.inf) for c in day.calls]
        past.append(([c.at for c in calls], calls))
        if not evaluated:
            continue
        for patient in day.patients:
            if patient.estimate is None or patient.estimate[1] is None:
                continue
            _, low, high, average = patient.estimate
            if average is None:
                continue  # compared as bench.estimate compares: where (a) has a figure
            assert patient.first_call is not None
            actual = (patient.first_call - patient.check_in) / MINUTE
            ours.append(abs((low + high) / 2 - actual))
            oracle.append(abs(day.oracle[patient.entry_id] - actual))
            baseline.append(abs(average - actual))
    a = statistics.median(baseline)
    return {
        "compared": len(ours),
        "ours": statistics.median(ours) / a,
        "oracle": statistics.median(oracle) / a,
        "a_min": a,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="gp-morning-1-doctor", help="a bench.estimate name")
    parser.add_argument("--samples", type=int, default=61, help="re-simulations per check-in")
    parser.add_argument("--seeds", default="17", help="comma-separated, e.g. 17,1,4")
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--days", type=int, default=20)
    args = parser.parse_args(argv)
    scenario = next((s for s in bench.SCENARIOS if s.name == args.scenario), None)
    if scenario is None:
        parser.error(f"no scenario {args.scenario!r}: {', '.join(s.name for s in bench.SCENARIOS)}")
    OracleDay.samples = args.samples
    print(f"{scenario.name}: median absolute error as a share of baseline (a)'s")
    print(f"{'seed':>5} {'compared':>9} {'ours':>6} {'oracle':>7} {'(a) min':>8}")
    for seed in (int(s) for s in args.seeds.split(",")):
        r = errors(scenario, seed, args.weeks, args.days)
        print(
            f"{seed:>5} {r['compared']:>9} {r['ours']:>6.2f} {r['oracle']:>7.2f} {r['a_min']:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
