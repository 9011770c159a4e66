"""/admin/stats in real Chromium against the real server: a small known clinic seeded through
the API today (the subprocess server's clock cannot be moved), the page's charts drawn, its
figures and tables equal to what /api/stats/… answers for the same query, the filters
changing both, and no console error nor CSP violation (Chart.js runs under script-src
'self', style-src 'self')."""

from __future__ import annotations

import urllib.parse
from datetime import date, timedelta
from typing import Any

from playwright.async_api import Page, expect

from tests.browser import ARTIFACTS, screenshot, sign_in
from tests.serverproc import Server, http_json

# Collects CSP violations from the first script on: Chromium also logs them to the console,
# but the event says which directive refused what.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


class Clinic:
    """The seeded box, seen through the API as an admin."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.admin = server.login(server.create_token("admin", "Setup admin"))
        self.kiosk = server.login(server.create_token("form", "Kiosk"))
        self.rivera_token = server.create_token("doctor", "Dr Rivera", room="Room 3")
        self.lee_token = server.create_token("doctor", "Dr Lee", room="Room 4")
        self.rivera = server.login(self.rivera_token)
        self.lee = server.login(self.lee_token)

    def call(self, access: str, method: str, path: str, body: Any = None) -> Any:
        status, answer = http_json(
            method, f"{self.server.base_url}{path}", body, {"Authorization": f"Bearer {access}"}
        )
        assert status in (200, 201), (path, status, answer)
        return answer

    def stats(self, kind: str, **query: str) -> dict[str, Any]:
        return self.call(self.admin, "GET", f"/api/stats/{kind}/?{urllib.parse.urlencode(query)}")

    def seed(self) -> None:
        """Line A (Dr Rivera): done, no-show, cancelled, waiting; line B (Dr Lee): started
        then done, done, waiting. 7 visits: 1 no-show and 1 cancel in all (14.3 % each),
        25 % each in A, none in B."""
        body = {"prefix": "B", "name": {"en": "Lab", "es": "Laboratorio"}}
        self.call(self.admin, "POST", "/api/lines/", {**body, "colour": "#1e6b34", "icon": "lab"})
        for token, lines in ((self.rivera_token, ["A"]), (self.lee_token, ["B"])):
            self.call(self.admin, "PATCH", f"/api/credentials/{token}/", {"lines": lines})
        ids = {}
        visits = [("Ann", "A"), ("Bob", "A"), ("Cid", "A"), ("Dee", "A")]
        visits += [("Eve", "B"), ("Fay", "B"), ("Gus", "B")]
        for name, line in visits:
            ids[name] = self.call(
                self.kiosk, "POST", "/api/patients/", {"fname": name, "line": line}
            )["id"]

        def act(doctor: str, action: str, **fields: Any) -> Any:
            return self.call(doctor, "POST", "/api/doctors/", {"action": action, **fields})

        assert act(self.rivera, "call_next")["patient"]["id"] == ids["Ann"]
        act(self.rivera, "done", patient_id=ids["Ann"])
        assert act(self.rivera, "call_next")["patient"]["id"] == ids["Bob"]
        act(self.rivera, "no_show", patient_id=ids["Bob"])
        act(self.rivera, "cancel", patient_id=ids["Cid"], reason="left")
        assert act(self.lee, "call_next")["patient"]["id"] == ids["Eve"]
        act(self.lee, "start", patient_id=ids["Eve"])
        act(self.lee, "done", patient_id=ids["Eve"])
        assert act(self.lee, "call_next")["patient"]["id"] == ids["Fay"]
        act(self.lee, "done", patient_id=ids["Fay"])


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

    # Per line: the outcome shares and the median wait, from both answers.
    rows = await page.locator("#by-line tbody tr").evaluate_all(
        """rows => rows.map(row => [row.dataset.key, Object.fromEntries(
            [...row.querySelectorAll('td[data-col]')].map(td => [td.dataset.col,
                                                                 td.textContent.trim()]))])"""
    )
    waits = {row["line"]: row["waiting"] for row in times["current"]["lines"]}
    expected = [
        (
            row["line"],
            {
                "visits": str(row["visits"]),
                "no_show_share": share(row["no_show_share"]),
                "cancel_share": share(row["cancel_share"]),
                "waiting_median": duration(waits.get(row["line"], {}).get("median_seconds")),
            },
        )
        for row in outcomes["current"]["lines"]
    ]
    assert [(key, {k: cols[k] for k in expected[0][1]}) for key, cols in rows] == expected


async def test_the_charts_and_figures_are_the_apis(browser, appliance: Server) -> None:
    clinic = Clinic(appliance)
    clinic.seed()
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
    await expect(page.locator('[data-before="outcomes.no_show_share"]')).to_have_text("before: —")
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
    await expect(page.locator("#chart-heat")).to_have_attribute(
        "aria-label", heat_summary(clinic, week)
    )
    await expect(page.locator("#chart-heat-previous")).to_have_attribute(
        "aria-label", "No check-ins in this period."
    )
    await screenshot(page, "stats-week")
    await page.screenshot(path=str(ARTIFACTS / "stats-week-full.png"), full_page=True)

    # One line: the figures are that line's (3 visits, nobody missed).
    await page.get_by_label("Line", exact=True).select_option("B")
    await shown(page, {**week, "line": "B"})
    await expect(page.locator('[data-figure="outcomes.visits"]')).to_have_text("3")
    await expect(page.locator('[data-figure="outcomes.no_show_share"]')).to_have_text("0%")
    await assert_page_matches(page, clinic, {**week, "line": "B"})

    # And one doctor, every line: Dr Rivera's two called visits, one of them a no-show.
    await page.get_by_label("Line", exact=True).select_option("")
    await page.get_by_label("Doctor", exact=True).select_option(label="Dr Rivera")
    rivera = {**week, "doctor": clinic.rivera_token}
    await shown(page, rivera)
    await expect(page.locator('[data-figure="outcomes.visits"]')).to_have_text("2")
    await expect(page.locator('[data-figure="outcomes.no_show_share"]')).to_have_text("50%")
    await assert_page_matches(page, clinic, rivera)

    assert console == [], console
    assert await page.evaluate("window.__cspViolations") == []

    # A range that ends before it starts: the page's own words for stats_range_invalid (the
    # three refused requests are the only lines Chromium logs).
    tomorrow = (date.fromisoformat(today) + timedelta(days=1)).isoformat()
    await page.get_by_label("From", exact=True).fill(tomorrow)
    await expect(page.locator("#stats-status")).to_have_text(
        "Pick a start on or before the end, at most 366 days apart."
    )

    refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert console == [refused] * 3, console
    assert await page.evaluate("window.__cspViolations") == []


def heat_summary(clinic: Clinic, query: dict[str, str]) -> str:
    """What the heat map's canvas says to a screen reader: the total and the busiest hour
    (the first of equals, Monday 00:00 onwards), from the API's answer."""
    heat = clinic.stats("arrivals", **query)["current"]["heat_map"]
    n, day, hour = max((heat[d][h], -d, -h) for d in range(7) for h in range(24))
    name = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[-day]
    total = sum(map(sum, heat))
    return f"{total} check-ins; the busiest hour: {name} {-hour:02d}:00 with {n}."
