"""The statistics pages' figures: a range of local days, optionally one line and one doctor,
each beside the period before it. The store aggregates, insight.py does the arithmetic;
no patient's name is ever read (retention purges them; the figures must not need them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from checkin_appliance import errors, insight
from checkin_appliance.domain import InvalidInput, parse_time
from checkin_appliance.lines import zone
from checkin_appliance.store import Store


class ClinicStats:
    def __init__(self, store: Store, time_zone: str) -> None:
        self.store = store
        self.time_zone = time_zone

    async def arrivals(self, query: dict[str, str]) -> dict[str, Any]:
        """Check-ins as a 7 x 24 weekday x hour map (local time, Monday first) and a total."""

        async def figures(start: str, end: str, line: int | None, doctor: int | None) -> Any:
            quarters = await self.store.arrival_quarters(start, end, line, doctor)
            return {
                "total": sum(count for _, count in quarters),
                "heat_map": insight.heat_map(quarters, self.time_zone),
            }

        return await self._compare(query, figures)

    async def times(self, query: dict[str, str]) -> dict[str, Any]:
        """Waiting time (check-in to the first call) and service time (start or call to
        done): median and p90 (to 10 s: insight.BUCKET_SECONDS) and histogram, in all, per
        line and per doctor, all summed from the same counts per 10-second bucket."""
        names = await self._names()

        async def figures(start: str, end: str, line: int | None, doctor: int | None) -> Any:
            rows = await self.store.visit_time_buckets(
                start, end, line, doctor, insight.BUCKET_SECONDS
            )
            # kind ("waiting" or "service") -> bucket -> count, in all, per line, per doctor.
            every: dict[str, dict[int, int]] = {"waiting": {}, "service": {}}
            by_line: dict[int, dict[str, dict[int, int]]] = {}
            by_doctor: dict[int, dict[str, dict[int, int]]] = {}
            for row in rows:
                kind, bucket, n = row["kind"], row["bucket"], row["n"]
                for counts in (
                    every,
                    by_line.setdefault(row["line_id"], {"waiting": {}, "service": {}}),
                    by_doctor.setdefault(row["doctor"], {"waiting": {}, "service": {}}),
                ):
                    counts[kind][bucket] = counts[kind].get(bucket, 0) + n

            def both(counts: dict[str, dict[int, int]]) -> dict[str, Any]:
                return {
                    "waiting": insight.bucket_distribution(counts["waiting"]),
                    "service": insight.bucket_distribution(counts["service"]),
                }

            return {
                **both(every),
                "lines": [{**names.line(key), **both(v)} for key, v in names.lines_of(by_line)],
                "doctors": [
                    {**names.doctor(key), **both(v)} for key, v in names.doctors_of(by_doctor)
                ],
            }

        return await self._compare(query, figures)

    async def outcomes(self, query: dict[str, str]) -> dict[str, Any]:
        """Visits by final state and the no-show and cancel shares, in all, per line and per
        doctor (the credential whose call the visit ended with; cancelled visits were never
        called, so they count in `all` and their line only)."""
        names = await self._names()

        async def figures(start: str, end: str, line: int | None, doctor: int | None) -> Any:
            every: dict[str, int] = {}
            by_line: dict[int, dict[str, int]] = {}
            by_doctor: dict[int, dict[str, int]] = {}
            for row in await self.store.outcome_counts(start, end, line, doctor):
                status, n = row["status"], row["n"]
                targets = [every, by_line.setdefault(row["line_id"], {})]
                if row["doctor"] is not None:
                    targets.append(by_doctor.setdefault(row["doctor"], {}))
                for counts in targets:
                    counts[status] = counts.get(status, 0) + n
            return {
                "all": insight.outcomes(every),
                "lines": [
                    {**names.line(key), **insight.outcomes(v)} for key, v in names.lines_of(by_line)
                ],
                "doctors": [
                    {**names.doctor(key), **insight.outcomes(v)}
                    for key, v in names.doctors_of(by_doctor)
                ],
            }

        return await self._compare(query, figures)

    async def _compare(
        self,
        query: dict[str, str],
        figures: Callable[[str, str, int | None, int | None], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        today = parse_time(self.store.now()).astimezone(zone(self.time_zone)).date()
        chosen = insight.period(query.get("from"), query.get("to"), today)
        line_id, line = await self._line(query.get("line"))
        doctor_id, doctor = await self._doctor(query.get("doctor"))
        result: dict[str, Any] = {
            **chosen.as_json(),
            "time_zone": self.time_zone,
            "line": line,
            "doctor": doctor,
        }
        for key, span in (("current", chosen), ("previous", chosen.previous())):
            start, end = span.utc_bounds(self.time_zone)
            result[key] = {**span.as_json(), **await figures(start, end, line_id, doctor_id)}
        return result

    async def _line(self, prefix: str | None) -> tuple[int | None, str | None]:
        if prefix is None:
            return None, None
        for line in await self.store.list_lines():
            if line.prefix == prefix:
                return line.id, line.prefix
        raise InvalidInput("No line has that prefix.", errors.STATS_LINE_UNKNOWN)

    async def _doctor(self, token: str | None) -> tuple[int | None, str | None]:
        if token is None:
            return None, None
        for credential in await self.store.list_credentials():
            if credential.token == token:
                return credential.id, credential.token
        raise InvalidInput("No credential has that token.", errors.STATS_DOCTOR_UNKNOWN)

    async def _names(self) -> _Names:
        return _Names(
            {line.id: (line.prefix, line.position) for line in await self.store.list_lines()},
            {c.id: (c.token, c.label) for c in await self.store.list_credentials()},
        )


class _Names:
    """Lines and credentials as the figures name them: a line by its prefix (in the lines'
    order), a doctor by its credential's token and label."""

    def __init__(self, lines: dict[int, tuple[str, int]], doctors: dict[int, tuple[str, str]]):
        self._lines = lines
        self._doctors = doctors

    def line(self, line_id: int) -> dict[str, Any]:
        return {"line": self._lines.get(line_id, (None, 0))[0]}

    def doctor(self, credential_id: int) -> dict[str, Any]:
        token, label = self._doctors.get(credential_id, (None, None))
        return {"doctor": token, "label": label}

    def lines_of(self, by_line: dict[int, Any]) -> list[tuple[int, Any]]:
        return sorted(
            by_line.items(), key=lambda item: (self._lines.get(item[0], ("", 0))[1], item[0])
        )

    def doctors_of(self, by_doctor: dict[int, Any]) -> list[tuple[int, Any]]:
        return sorted(
            by_doctor.items(), key=lambda item: (self._doctors.get(item[0], ("", ""))[1], item[0])
        )
