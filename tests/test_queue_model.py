"""The queue against a model, by Hypothesis: any mix of check-ins, calls and restarts.

Runs the real Reception and Store on a real SQLite file; a restart closes and reopens it.
Invariants: nobody is called twice, call_next takes strictly the longest-waiting patient,
every check-in is either waiting or completed (counts conserved across restarts), and the
event log has exactly one event per change, in order, without gaps.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from checkin_appliance.domain import CLI, NotFound
from checkin_appliance.reception import Reception
from checkin_appliance.store import Store

NAMES = st.text(alphabet="abcdefghij ", min_size=1, max_size=12).filter(str.strip)


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = Path(tempfile.mkdtemp(prefix="queue-model-"))
        self.waiting: list[int] = []  # patient ids in check-in order (the model)
        self.called: list[int] = []
        self.events = 0
        self.store, self.reception = self.run(self.open())

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    async def open(self) -> tuple[Store, Reception]:
        store = Store(self.folder / "checkin.db")
        await store.open()
        return store, Reception(store)

    @rule(name=NAMES)
    def check_in(self, name: str) -> None:
        done = self.run(self.reception.check_in({"fname": name}, None, CLI))
        entry, position = done.entry, done.position
        self.waiting.append(entry.patient_id)
        self.events += 1
        assert position == len(self.waiting)

    @rule()
    def call_next(self) -> None:
        try:
            entry = self.run(self.reception.call(None, CLI))
        except NotFound:
            assert not self.waiting
            return
        assert self.waiting, "called someone from an empty queue"
        assert entry.patient_id == self.waiting.pop(0), "not the longest-waiting patient"
        self.called.append(entry.patient_id)
        self.events += 1

    @precondition(lambda self: bool(self.waiting) or bool(self.called))
    @rule(data=st.data())
    def complete_by_id(self, data: st.DataObject) -> None:
        patient_id = data.draw(st.sampled_from(self.waiting + self.called))
        try:
            entry = self.run(self.reception.call(patient_id, CLI))
        except NotFound:
            assert patient_id in self.called, "a waiting patient was not found"
            return
        assert patient_id in self.waiting, "a called patient was called again"
        assert entry.patient_id == patient_id
        self.waiting.remove(patient_id)
        self.called.append(patient_id)
        self.events += 1

    @rule()
    def restart(self) -> None:
        self.run(self.store.close())
        self.store, self.reception = self.run(self.open())

    @invariant()
    def store_agrees_with_the_model(self) -> None:
        seq, waiting, _ = self.run(self.store.snapshot())
        assert [entry.patient_id for entry in waiting] == self.waiting
        assert len(set(self.called)) == len(self.called)
        assert seq == self.events
        log = self.run(self.store.events_after(0, 10_000))
        assert [event.seq for event in log] == list(range(1, self.events + 1))

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()
        shutil.rmtree(self.folder, ignore_errors=True)


QueueMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_queue_behaves_like_its_model = QueueMachine.TestCase
