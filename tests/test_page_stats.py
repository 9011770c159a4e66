"""/admin/stats in real Chromium against the real server: a small known fortnight, the page's
charts drawn, its figures and tables equal to what /api/stats/… answers for the same query,
the filters changing both, and no console error nor CSP violation (Chart.js runs under
script-src 'self', style-src 'self').

The subprocess server's clock cannot be moved, so the fortnight is written first by the real
app in-process on the same data directory (the store's clock moved to each step, every step
through the API), and the server then serves that file: waits and services of minutes, in
several bins, on days of this week and of the week before."""

from __future__ import annotations

import re
import urllib.parse
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect

from checkin_appliance.config import Config
from checkin_appliance.domain import Role, format_time
from checkin_appliance.lines import zone
from checkin_appliance.web.keys import STORE
from tests.browser import ARTIFACTS, screenshot, sign_in
from tests.conftest import StartClinic
from tests.serverproc import Server, http_json, running

# Collects CSP violations from the first script on: Chromium also logs them to the console,
# but the event says which directive refused what.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


async def a_known_fortnight(start_clinic: StartClinic) -> str:
    """Line A (Dr Rivera) and B (Dr Lee). Three days ago at 09:00 and yesterday at 14:00
    (this week), and eight days ago at 10:00 (the week before), local time; every visit
    ended, none left open. Returns Dr Rivera's credential token.

    This week: 7 visits, 1 no-show (Bob) and 1 cancelled (Cid): 14.3 % each; A 25 % each,
    B none; Dr Rivera 1 no-show in 3. Waits 2, 4, 7, 25, 33, 50 min (median 16 min, p90
    41 min 30 s); services 7, 12, 13, 30, 32 min. The week before: 2 visits, 1 no-show."""
    clinic = await start_clinic()
    admin = clinic.headers(Role.ADMIN)

    async def call(headers: dict[str, str], method: str, path: str, body: Any = None) -> Any:
        resp = await clinic.client.request(method, path, json=body, headers=headers)
        assert resp.status in (200, 201), (path, resp.status, await resp.text())
        return await resp.json()

    await call(
        admin,
        "POST",
        "/api/lines/",
        {"prefix": "B", "name": {"en": "Lab", "es": "Lab"}, "colour": "#1e6b34", "icon": "lab"},
    )
    doctors = {}
    for label, line in (("Dr Rivera", "A"), ("Dr Lee", "B")):
        token = await clinic.add_credential(Role.DOCTOR, label)
        await call(admin, "PATCH", f"/api/credentials/{token}/", {"lines": [line]})
        doctors[label] = (token, {"Authorization": f"Bearer {await clinic.login(token)}"})
    rivera, lee = doctors["Dr Rivera"][1], doctors["Dr Lee"][1]
    settings = await call(admin, "GET", "/api/settings/")
    local = zone(settings["time_zone"])
    today = datetime.now(UTC).astimezone(local).date()
    ids: dict[str, int] = {}

    def at(days_ago: int, hour: int, minute: int) -> None:
        moment = datetime.combine(today - timedelta(days=days_ago), time(hour, minute), local)
        clinic.app[STORE].set_clock(lambda: format_time(moment))

    async def check_in(*people: tuple[str, str]) -> None:
        for name, line in people:
            body = {"fname": name, "line": line}
            ids[name] = (await call(clinic.headers(Role.FORM), "POST", "/api/patients/", body))[
                "id"
            ]

    # The week before: Hal waits 15 min and is served 5; Ivy is called after 3 and missed.
    at(8, 10, 0)
    await check_in(("Hal", "A"), ("Ivy", "B"))
    for minute, doctor, action, name in (
        (3, lee, "call_next", "Ivy"),
        (4, lee, "no_show", "Ivy"),
        (15, rivera, "call_next", "Hal"),
        (20, rivera, "done", "Hal"),
    ):
        at(8, 10, minute)
        await step(call, doctor, action, name, ids)
    # This week, three days ago at 09:00.
    at(3, 9, 0)
    await check_in(("Ann", "A"), ("Bob", "A"), ("Eve", "B"))
    for minute, doctor, action, name in (
        (2, lee, "call_next", "Eve"),
        (3, lee, "start", "Eve"),
        (4, rivera, "call_next", "Ann"),
        (10, lee, "done", "Eve"),
        (16, rivera, "done", "Ann"),
        (25, rivera, "call_next", "Bob"),
        (26, rivera, "no_show", "Bob"),
    ):
        at(3, 9, minute)
        await step(call, doctor, action, name, ids)
    # Yesterday at 14:00: Cid leaves, the others are served.
    at(1, 14, 0)
    await check_in(("Cid", "A"), ("Dee", "A"), ("Fay", "B"), ("Gus", "B"))
    for minute, doctor, action, name in (
        (1, rivera, "cancel", "Cid"),
        (7, lee, "call_next", "Fay"),
        (20, lee, "done", "Fay"),
        (33, lee, "call_next", "Gus"),
        (50, rivera, "call_next", "Dee"),
        (65, lee, "done", "Gus"),
        (80, rivera, "done", "Dee"),
    ):
        at(1, 14 + minute // 60, minute % 60)
        await step(call, doctor, action, name, ids)
    await clinic.client.close()
    return doctors["Dr Rivera"][0]


async def step(
    call: Any, doctor: dict[str, str], action: str, name: str, ids: dict[str, int]
) -> None:
    """One doctor's move on `name`; a call_next must call exactly that patient."""
    if action == "call_next":
        answer = await call(doctor, "POST", "/api/doctors/", {"action": action})
        assert answer["patient"]["id"] == ids[name], (name, answer)
        return
    body = {"action": action, "patient_id": ids[name]}
    if action == "cancel":
        body["reason"] = "left"
    await call(doctor, "POST", "/api/doctors/", body)


class Clinic:
    """The served box, seen through the API as an admin."""

    def __init__(self, server: Server, rivera_token: str) -> None:
        self.server = server
        self.admin = server.login(server.create_token("admin", "Setup admin"))
        self.rivera_token = rivera_token

    def stats(self, kind: str, **query: str) -> dict[str, Any]:
        path = f"/api/stats/{kind}/?{urllib.parse.urlencode(query)}"
        status, answer = http_json(
            "GET", f"{self.server.base_url}{path}", None, {"Authorization": f"Bearer {self.admin}"}
        )
        assert status == 200, (path, status, answer)
        return answer


# The page's formats (stats-page.js), for English: the figures as a person reads them.
def duration(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    minutes, rest = divmod(seconds, 60)
    if minutes == 0:
        return f"{rest} s"
    return f"{minutes} min" if rest == 0 else f"{minutes} min {rest} s"


def share(value: float | None) -> str:
    # Intl.NumberFormat("en", {maximumFractionDigits: 1}); the seeded shares have no ties.
    return "—" if value is None else f"{value * 100:.1f}".removesuffix(".0") + "%"


async def shown(page: Page, query: dict[str, str]) -> None:
    """Waits until the page shows the figures of exactly this query."""
    await expect(page.locator("body")).to_have_attribute(
        "data-shown", urllib.parse.urlencode(query)
    )


async def figure(page: Page, key: str) -> tuple[str, float | None, str]:
    """(text, raw value as a number, text of the period before) of one figure."""
    node = page.locator(f'[data-figure="{key}"]')
    before = page.locator(f'[data-before="{key}"]')
    return (
        (await node.text_content() or "").strip(),
        float(value) if (value := await node.get_attribute("data-value")) else None,
        (await before.text_content() or "").strip(),
    )


async def assert_page_matches(page: Page, clinic: Clinic, query: dict[str, str]) -> None:
    """Every figure, chart dataset and table row the page shows equals the API's answer."""
    arrivals = clinic.stats("arrivals", **query)
    times = clinic.stats("times", **query)
    outcomes = clinic.stats("outcomes", **query)
    now, before = arrivals["current"], arrivals["previous"]
    assert await figure(page, "arrivals.total") == (
        str(now["total"]),
        now["total"],
        f"before: {before['total']}",
    )
    for kind in ("waiting", "service"):
        now_d, before_d = times["current"][kind], times["previous"][kind]
        for key, field in (("median", "median_seconds"), ("p90", "p90_seconds")):
            assert await figure(page, f"{kind}.{key}") == (
                duration(now_d[field]),
                now_d[field],
                f"before: {duration(before_d[field])}",
            ), (kind, key)
        assert (await figure(page, f"{kind}.count"))[:2] == (str(now_d["count"]), now_d["count"])
        drawn = await page.evaluate(
            "id => Chart.getChart(id).data.datasets.map(set => set.data)", f"chart-{kind}"
        )
        assert drawn == [
            [b["count"] for b in now_d["bins"]],
            [b["count"] for b in before_d["bins"]],
        ]
    all_now, all_before = outcomes["current"]["all"], outcomes["previous"]["all"]
    assert await figure(page, "outcomes.visits") == (
        str(all_now["visits"]),
        all_now["visits"],
        f"before: {all_before['visits']}",
    )
    for key in ("no_show_share", "cancel_share"):
        assert await figure(page, f"outcomes.{key}") == (
            share(all_now[key]),
            all_now[key],
            f"before: {share(all_before[key])}",
        ), key

    # The heat map: the matrix dataset holds the API's 7 x 24 counts, Monday first.
    cells = await page.evaluate(
        "() => Chart.getChart('chart-heat').data.datasets[0].data.map(cell => cell.v)"
    )
    assert cells == [n for row in now["heat_map"] for n in row]

    # Per line and per doctor: the outcome counts and shares and the times, from both answers.
    for table, group, key, name in (
        ("by-line", "lines", "line", "line"),
        ("by-doctor", "doctors", "doctor", "label"),
    ):
        rows = await page.locator(f"#{table} tbody tr").evaluate_all(
            """rows => rows.map(row => [row.dataset.key, Object.fromEntries(
                [...row.querySelectorAll('td[data-col]')].map(td => [td.dataset.col,
                                                                     td.textContent.trim()]))])"""
        )
        spans = {row[key]: row for row in times["current"][group]}
        expected = []
        for row in outcomes["current"][group]:
            span = spans.get(row[key], {"waiting": {}, "service": {}})
            columns = {c: str(row[c]) for c in ("visits", "done", "no_show", "cancelled")}
            columns |= {c: share(row[c]) for c in ("no_show_share", "cancel_share")}
            for kind in ("waiting", "service"):
                columns[f"{kind}_median"] = duration(span[kind].get("median_seconds"))
                columns[f"{kind}_p90"] = duration(span[kind].get("p90_seconds"))
            expected.append([row[name], columns])
        assert rows == expected, table


async def test_the_charts_and_figures_are_the_apis(
    browser, start_clinic: StartClinic, config: Config, tmp_path: Path
) -> None:
    rivera = await a_known_fortnight(start_clinic)
    with running(tmp_path / "server", config.data_dir) as server:
        await the_page_shows_the_apis_figures(browser, server, Clinic(server, rivera))


async def the_page_shows_the_apis_figures(
    browser: Browser, appliance: Server, clinic: Clinic
) -> None:
    today = clinic.stats("arrivals")["to"]  # the clinic's today, as the server reckons it
    week = {"from": (date.fromisoformat(today) - timedelta(days=6)).isoformat(), "to": today}

    page = await sign_in(browser, appliance, "admin", "Manager")
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: console.append(str(error)))
    await page.add_init_script(CSP_WATCH)
    await page.goto("/admin")
    await page.get_by_role("link", name="Statistics", exact=True).click()
    await page.wait_for_url("**/admin/stats")

    # The last 7 days by default, with every line and doctor.
    await shown(page, week)
    await expect(page.get_by_label("From", exact=True)).to_have_value(week["from"])
    await expect(page.locator('[data-figure="outcomes.visits"]')).to_have_text("7")
    await expect(page.locator('[data-figure="outcomes.no_show_share"]')).to_have_text("14.3%")
    await expect(page.locator('[data-figure="outcomes.cancel_share"]')).to_have_text("14.3%")
    await expect(page.locator('[data-before="outcomes.no_show_share"]')).to_have_text("before: 50%")
    await expect(page.locator('[data-before="outcomes.cancel_share"]')).to_have_text("before: 0%")
    await expect(page.locator('[data-figure="waiting.median"]')).to_have_text("16 min")
    await expect(page.locator('[data-figure="waiting.p90"]')).to_have_text("41 min 30 s")
    await expect(page.locator('[data-before="waiting.median"]')).to_have_text("before: 9 min")
    await expect(page.locator('[data-figure="service.median"]')).to_have_text("13 min")
    await expect(page.locator("#by-line tbody tr")).to_have_count(2)
    await expect(page.locator("#by-doctor tbody th")).to_have_text(["Dr Lee", "Dr Rivera"])
    await assert_page_matches(page, clinic, week)

    # Drawn: every chart's canvas has painted pixels, and says in words what it shows.
    for chart in ("chart-heat", "chart-heat-previous", "chart-waiting", "chart-service"):
        painted = await page.evaluate(
            """id => {
                const canvas = document.getElementById(id);
                const pixels = canvas.getContext("2d")
                    .getImageData(0, 0, canvas.width, canvas.height).data;
                let painted = 0;
                for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
                return painted;
            }""",
            chart,
        )
        assert painted > 1000, (chart, painted)
    for chart, period in (("chart-heat", "current"), ("chart-heat-previous", "previous")):
        summary = heat_summary(clinic.stats("arrivals", **week)[period]["heat_map"])
        await expect(page.locator(f"#{chart}")).to_have_attribute("aria-label", summary)
    await expect(page.locator("#chart-heat")).to_have_attribute("aria-label", re.compile("^7 "))
    await screenshot(page, "stats-week")
    await page.screenshot(path=str(ARTIFACTS / "stats-week-full.png"), full_page=True)

    # One line: the figures are that line's (3 visits, nobody missed).
    await page.get_by_label("Line", exact=True).select_option("B")
    await shown(page, {**week, "line": "B"})
    await expect(page.locator('[data-figure="outcomes.visits"]')).to_have_text("3")
    await expect(page.locator('[data-figure="outcomes.no_show_share"]')).to_have_text("0%")
    await assert_page_matches(page, clinic, {**week, "line": "B"})

    # And one doctor, every line: Dr Rivera's three called visits, one of them a no-show.
    await page.get_by_label("Line", exact=True).select_option("")
    await page.get_by_label("Doctor", exact=True).select_option(label="Dr Rivera")
    rivera = {**week, "doctor": clinic.rivera_token}
    await shown(page, rivera)
    await expect(page.locator('[data-figure="outcomes.visits"]')).to_have_text("3")
    await expect(page.locator('[data-figure="outcomes.no_show_share"]')).to_have_text("33.3%")
    await assert_page_matches(page, clinic, rivera)

    assert console == [], console
    assert await page.evaluate("window.__cspViolations") == []

    # A range that ends before it starts: the page's own words for stats_range_invalid (the
    # refused requests are the only lines Chromium logs).
    tomorrow = (date.fromisoformat(today) + timedelta(days=1)).isoformat()
    await page.get_by_label("From", exact=True).fill(tomorrow)
    await expect(page.locator("#stats-status")).to_have_text(
        "Pick a start on or before the end, at most 366 days apart."
    )

    refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert console and set(console) == {refused}, console  # 1-3: the first refusal is shown
    assert await page.evaluate("window.__cspViolations") == []


def heat_summary(heat: list[list[int]]) -> str:
    """What a heat map's canvas says to a screen reader: the total and the busiest hour (the
    first of equals, Monday 00:00 onwards), from the API's 7 x 24 counts."""
    if not any(map(any, heat)):
        return "No check-ins in this period."
    n, day, hour = max((heat[d][h], -d, -h) for d in range(7) for h in range(24))
    name = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[-day]
    total = sum(map(sum, heat))
    return f"{total} check-ins; the busiest hour: {name} {-hour:02d}:00 with {n}."
