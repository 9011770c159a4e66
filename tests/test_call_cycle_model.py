"""The call cycle against a model (issue 16): random sequences of check-ins, calls, every
transition, undo (window and superseding included), the no-show grace, the end of day and
restarts, on a real SQLite file through the real Store; after every step the states, call
counts, history rows and audit rows match the model's."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from checkin_appliance.domain import (
    CLI,
    OPEN_STATES,
    TRANSITIONS,
    Actor,
    Conflict,
    NotFound,
    Role,
    format_time,
)
from checkin_appliance.security import new_credential_token
from checkin_appliance.store import Store

UNDO_SECONDS = 120
DOCTORS = 2
ACTIONS = sorted(TRANSITIONS)


@dataclass(frozen=True)
class Visit:
    status: str = "waiting"
    call_count: int = 0
    line: int = 1


@dataclass(frozen=True)
class Done:
    """A doctor's last action, as an undo needs it."""

    patient: int
    before: Visit
    at: datetime
    seq: int  # the visit's transition number when it was made


class CallCycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "checkin.db"
        self.loop = asyncio.new_event_loop()
        self.clock = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
        self.store = self._open()
        self.doctors = [
            Actor(self.run(self._credential(Role.DOCTOR, n)), "test") for n in range(DOCTORS)
        ]
        self.form = Actor(self.run(self._credential(Role.FORM, 9)), "test")
        self.admin = Actor(self.run(self._credential(Role.ADMIN, 8)), "test")
        self.visits: dict[int, Visit] = {}
        self.history: dict[int, int] = {}  # transitions per visit
        self.touched: dict[int, datetime] = {}  # each visit's last transition
        self.last: dict[int, Done | None] = {}  # by doctor index
        self.audit_rows = self._audit_rows()
        self.transitions = 0

    # --- plumbing ------------------------------------------------------------------------

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def _open(self) -> Store:
        store = Store(self.path)
        self.loop.run_until_complete(store.open())
        store.set_clock(lambda: format_time(self.clock))
        return store

    async def _credential(self, role: Role, n: int) -> int:
        made = await self.store.create_credential(
            new_credential_token, role, f"{role} {n}", f"Room {n}", "x", actor=CLI
        )
        assert made is not None
        return made.id

    def _audit_rows(self) -> int:
        return self._count("SELECT count(*) FROM audit_log")

    def _count(self, sql: str) -> int:
        conn = sqlite3.connect(self.path)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()
        self.dir.cleanup()

    def _moved(self, patient: int, visit: Visit, doctor: int | None, before: Visit | None) -> None:
        self.visits[patient] = visit
        self.history[patient] = self.history.get(patient, 0) + 1
        self.touched[patient] = self.clock
        self.transitions += 1
        self.audit_rows += 1
        if doctor is not None:
            assert before is not None
            self.last[doctor] = Done(patient, before, self.clock, self.history[patient])

    # --- rules ---------------------------------------------------------------------------

    @rule()
    def check_in(self) -> None:
        entry, _, _ = self.run(self.store.check_in("Pat Example", None, self.form))
        self.visits[entry.patient_id] = Visit()
        self.audit_rows += 1

    @rule(doctor=st.integers(0, DOCTORS - 1))
    def call_next(self, doctor: int) -> None:
        entry = self.run(self.store.complete(None, self.doctors[doctor], f"Room {doctor}"))
        waiting = [p for p, v in self.visits.items() if v.status == "waiting"]
        if entry is None:
            assert waiting == []
            return
        assert entry.patient_id in waiting
        before = self.visits[entry.patient_id]
        self._moved(
            entry.patient_id, replace(before, status="called", call_count=1), doctor, before
        )

    @precondition(lambda self: self.visits)
    @rule(
        doctor=st.integers(0, DOCTORS - 1),
        pick=st.integers(0, 10**6),
        action=st.sampled_from(ACTIONS),
        position=st.sampled_from(["front", "back"]),
        line=st.sampled_from(["A", "B"]),
    )
    def transition(self, doctor: int, pick: int, action: str, position: str, line: str) -> None:
        patients = sorted(self.visits)
        patient = patients[pick % len(patients)]
        before = self.visits[patient]
        sources, target = TRANSITIONS[action]
        to_line = 1 if line == "A" else 2
        allowed = before.status in sources and not (
            action == "transfer" and before.status == "waiting" and before.line == to_line
        )
        try:
            entry, from_status, _ = self.run(
                self.store.transition(
                    patient,
                    action,
                    self.doctors[doctor],
                    room=f"Room {doctor}",
                    position=position,
                    reason="left",
                    line=line,
                )
            )
        except NotFound as exc:  # a transfer to line B before it exists
            assert exc.code.code == "line_not_found"
            assert action == "transfer" and line == "B" and not hasattr(self, "_lines_made")
            assert before.status in sources
            return
        except Conflict as exc:
            assert not allowed, (action, before, exc.code)
            assert exc.code.code == "transition_not_allowed"
            return
        assert allowed, (action, before)
        after = replace(
            before,
            status=target,
            call_count=before.call_count + (action == "recall"),
            line=to_line if action == "transfer" else before.line,
        )
        assert (from_status, entry.status, entry.call_count) == (
            before.status,
            after.status,
            after.call_count,
        )
        self._moved(patient, after, doctor, before)

    @rule(doctor=st.integers(0, DOCTORS - 1))
    def undo(self, doctor: int) -> None:
        done = self.last.get(doctor)
        expected = "ok"
        if done is None:
            expected = "nothing_to_undo"
        elif (self.clock - done.at).total_seconds() > UNDO_SECONDS:
            expected = "undo_expired"
        elif self.history[done.patient] != done.seq:
            expected = "undo_superseded"
        try:
            entry, _, _ = self.run(self.store.undo(self.doctors[doctor], UNDO_SECONDS))
        except Conflict as exc:
            assert exc.code.code == expected
            return
        assert expected == "ok", expected
        assert done is not None
        assert entry.patient_id == done.patient and entry.status == done.before.status
        self._moved(done.patient, done.before, None, self.visits[done.patient])
        self.last[doctor] = None  # an undo is not undone

    @rule(seconds=st.sampled_from([1, 30, 100, 200]))
    def time_passes(self, seconds: int) -> None:
        self.clock += timedelta(seconds=seconds)

    @rule()
    def end_of_day(self) -> None:
        closed = self.run(self.store.end_of_day(self.admin))
        open_ones = [p for p, v in self.visits.items() if v.status in OPEN_STATES]
        assert closed == len(open_ones)
        for patient in open_ones:
            self.visits[patient] = replace(self.visits[patient], status="not_seen")
            self.history[patient] = self.history.get(patient, 0) + 1
            self.touched[patient] = self.clock
            self.transitions += 1
        if open_ones:
            self.audit_rows += 1

    @rule(minutes=st.sampled_from([1, 3]), seconds=st.sampled_from([0, 90, 200]))
    def no_show_grace(self, minutes: int, seconds: int) -> None:
        """The no_show_minutes timer's look, `seconds` on: the box's own transition, audited
        per visit."""
        self.clock += timedelta(seconds=seconds)
        idle_since = self.clock - timedelta(minutes=minutes)
        day_start = self.clock.replace(hour=0, minute=0, second=0, microsecond=0)
        marked = self.run(
            self.store.no_show_overdue(
                Actor(None, "no_show_grace"), format_time(idle_since), format_time(day_start)
            )
        )
        overdue = [
            p
            for p, v in self.visits.items()
            if v.status == "called" and day_start <= self.touched[p] <= idle_since
        ]
        assert marked == len(overdue)
        for patient in overdue:
            self._moved(patient, replace(self.visits[patient], status="no_show"), None, None)

    @rule()
    def restart(self) -> None:
        self.run(self.store.close())
        self.store = self._open()

    @precondition(lambda self: not hasattr(self, "_lines_made"))
    @rule()
    def second_line(self) -> None:
        self.run(self.store.create_line({"prefix": "B", "name": {"en": "Lab"}}, actor=self.admin))
        self._lines_made = True
        self.audit_rows += 1

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def the_database_agrees(self) -> None:
        conn = sqlite3.connect(self.path)
        try:
            rows = conn.execute(
                "SELECT patient_id, status, call_count, line_id FROM queue_entries"
            ).fetchall()
        finally:
            conn.close()
        assert {p: Visit(s, c, ln) for p, s, c, ln in rows} == self.visits
        assert self._count("SELECT count(*) FROM visit_transitions") == self.transitions
        assert self._audit_rows() == self.audit_rows
        assert self._kept_times() == self._times_from_moves()

    def _kept_times(self) -> list[tuple[object, ...]]:
        """Each visit's times as its row keeps them for the statistics (migration 0015)."""
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(
                "SELECT id, first_called_at, service_from, done_at FROM queue_entries ORDER BY id"
            ).fetchall()
        finally:
            conn.close()

    def _times_from_moves(self) -> list[tuple[object, ...]]:
        """The same times worked out from the visit's moves that stand (undone ones and the
        undos left out): what the row must always agree with, whatever was undone."""
        standing = "FROM visit_transitions t WHERE t.entry_id = e.id AND t.undone_by IS NULL"
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(
                f"SELECT e.id, (SELECT min(t.at) {standing} AND t.action IN ('call', 'complete')),"  # noqa: S608 (our own SQL)
                f" (SELECT max(t.at) {standing} AND t.action != 'undo'"
                " AND t.to_status IN ('called', 'in_service')),"
                f" (SELECT max(t.at) {standing} AND t.action = 'done')"
                " FROM queue_entries e ORDER BY e.id"
            ).fetchall()
        finally:
            conn.close()


CallCycle.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCallCycle = CallCycle.TestCase
