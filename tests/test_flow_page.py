"""The flow page in a real browser: Debian's headless Chromium opens the page ``adapter/flow/page.py``
renders from a figures dict built here, and the DOM it rendered holds the figures in the right
places, the bars are drawn to scale, the banner is red on screen, and not one request leaves the page.

Chromium is a real part like promtool: ``.ci/run`` installs it, and in CI (``MMR_CI``, set by
``.ci/run``) a missing browser fails. On a machine without it, outside CI, the browser tests skip,
saying why. The browser
starts once for the page (the DOM and a screenshot from one run) and once for the control page that
shows the network check can fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
import zlib
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from adapter.flow import page
from adapter.mappings import load
from tests.support.flow_figures import HOSTILE, HSA_H, HSA_L, HSA_S, figures

RED = (192, 0, 0)  # the alarm banner's background, #c00000
# Chromium's own services, which it calls from a fresh profile whatever it shows (sign-in, component
# updates, network time) despite the flags that ask it not to: not the page's requests. A font or
# script CDN is none of these hosts.
BROWSER_SERVICES = frozenset(
    {
        "accounts.google.com",
        "clients2.google.com",
        "clientservices.googleapis.com",
        "update.googleapis.com",
        "optimizationguide-pa.googleapis.com",
        "safebrowsing.googleapis.com",
        "redirector.gvt1.com",
        "edgedl.me.gvt1.com",
    }
)


# ------------------------------------------------------------------ the browser and what it asked for


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("MMR_CI"):
        pytest.fail("chromium is missing in CI: .ci/run installs Debian's chromium")
    pytest.skip("chromium is not installed (apt-get install -y chromium); CI installs it and runs this")


@dataclass
class Recorder:
    """A proxy that answers nothing and writes down every request the browser sends it."""

    server: socket.socket
    requests: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        host, port = self.server.getsockname()
        return f"http://{host}:{port}"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    line = conn.recv(4096).split(b"\r\n", 1)[0]
                except OSError:
                    line = b"(no request line)"
                self.requests.append(line.decode("latin-1"))


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    server = socket.create_server(("127.0.0.1", 0))
    rec = Recorder(server)
    threading.Thread(target=rec.serve, daemon=True).start()
    yield rec
    server.close()


@dataclass
class Rendered:
    dom: lxml.html.HtmlElement
    screenshot: Path
    requests: list[str]


def open_in_chromium(html: str, folder: Path, recorder: Recorder) -> tuple[str, Path, list[str]]:
    """Open ``html`` from a file in headless Chromium, every request routed to ``recorder`` (loopback
    too); return the DOM it rendered, its screenshot and the requests it made."""
    folder.mkdir(parents=True, exist_ok=True)
    path, shot = folder / "page.html", folder / "page.png"
    path.write_text(html, encoding="utf-8")
    before = len(recorder.requests)
    run = subprocess.run(
        [
            chromium(),
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,AutofillServerCommunication",
            f"--user-data-dir={folder / 'profile'}",
            f"--proxy-server={recorder.address}",
            "--proxy-bypass-list=<-loopback>",
            "--window-size=1280,2000",
            "--dump-dom",
            f"--screenshot={shot}",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "<html" in run.stdout, run.stderr[-2000:]
    return run.stdout, shot, [r for r in recorder.requests[before:] if not browser_service(r)]


def browser_service(request_line: str) -> bool:
    """A request of Chromium's own (see BROWSER_SERVICES), or a connection that sent nothing
    (a preconnect the browser makes for them)."""
    parts = request_line.split()
    if len(parts) < 2:
        return True
    target = parts[1].split("://", 1)[-1]
    return target.split("/", 1)[0].rsplit(":", 1)[0] in BROWSER_SERVICES


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, recorder: Recorder) -> Rendered:
    dom, shot, requests = open_in_chromium(page.render(figures()), tmp_path_factory.mktemp("page"), recorder)
    return Rendered(lxml.html.fromstring(dom), shot, requests)


# ------------------------------------------------------------------ reading the rendered DOM


def text(element: Any) -> str:
    return " ".join(element.text_content().split())


def chart(dom: Any, kind: str, organization: str) -> Any:
    (found,) = dom.xpath(f'//figure[contains(@class, "{kind}") and @data-organization="{organization}"]')
    return found


def bars(figure: Any) -> dict[str, tuple[float, float, str]]:
    """Per bar of a chart: (its height, its width, its class)."""
    return {
        r.get("data-key"): (float(r.get("height")), float(r.get("width")), r.get("class"))
        for r in figure.xpath('.//*[local-name()="rect"]')
    }


# ------------------------------------------------------------------ the figures, where they belong


def test_the_table_holds_every_figure_under_its_organisation(rendered: Rendered) -> None:
    table = rendered.dom.xpath('//table[@class="figures"]')[0]
    columns = [th.get("data-organization") for th in table.xpath("./thead/tr/th")[1:]]
    assert columns == ["", HSA_H, HSA_L, HSA_S]  # the region first
    words = load("flow-page")["table"]["rows"]

    def row(key: str) -> list[str]:
        (tr,) = table.xpath(f'./tbody/tr[@data-key="{key}"]')
        if key in words:  # the row says what it is, in the words of mappings/flow-page.yaml
            assert text(tr.xpath("./th")[0]) == " ".join(words[key].split())
        return [text(td) for td in tr.xpath("./td")]

    assert row("reviews_decided") == ["16", "12", "4", "0"]
    assert row("reviews_within_deadline") == ["13", "11", "2", "0"]
    assert row("review_median_working_days") == ["–", "2,5", "–", "–"]  # Swedish decimals; null is a dash
    assert row("reviews_overdue_now") == ["1", "1", "0", "0"]
    assert row("waiting_over_90") == ["5", "5", "0", "0"]
    assert row("waiting_61_90") == ["10", "7", "0", "3"]
    assert row("waiting_patient_chosen") == ["2", "2", "0", "0"]
    assert row("first_visit_p90_days") == ["–", "80,5", "–", "–"]
    assert row("first_visit_max_days") == ["–", "95", "–", "–"]
    assert row("on_hold_median_days.referrer") == ["–", "4,5", "–", "–"]
    assert row("on_hold_median_days.patient") == ["–", "9,0", "–", "–"]
    assert row("re_referrals_after_rejection") == ["0", "1", "0", "0"]
    assert row("nobody_responsible") == ["1", "1", "0", "0"]
    assert len(table.xpath("./tbody/tr")) == len(page.TABLE_ROWS) + 1  # on_hold: one row per reason


def test_the_heading_names_the_snapshot_the_period_and_the_guarantee(rendered: Rendered) -> None:
    (h1,) = rendered.dom.xpath("//h1")
    assert text(h1) == load("flow-page")["title"]
    (sub,) = rendered.dom.xpath('//p[@class="sub"]')
    assert text(sub) == "Läget 2026-12-01 00:00 · perioden 2026-11-01 – 2026-11-30 · vårdgaranti 90 dagar"


def test_the_waiting_bars_are_drawn_to_scale_against_the_guarantee(rendered: Rendered) -> None:
    hassleholm, site = chart(rendered.dom, "waiting", HSA_H), chart(rendered.dom, "waiting", HSA_S)
    drawn = bars(hassleholm)
    # Hässleholm's 10 is the largest waiting bar of any organisation: the full plot height; the rest in proportion.
    assert {k: h for k, (h, _, _) in drawn.items()} == {
        "waiting_0_30": page.PLOT_H,
        "waiting_31_60": page.PLOT_H * 8 / 10,
        "waiting_61_90": page.PLOT_H * 7 / 10,
        "waiting_over_90": page.PLOT_H * 5 / 10,
        "waiting_patient_chosen": page.PLOT_H * 2 / 10,
    }
    assert bars(site)["waiting_61_90"][0] == page.PLOT_H * 3 / 10  # the same scale in every organisation's chart
    classes = {k: c for k, (_, _, c) in drawn.items()}
    assert classes["waiting_over_90"] == "bar beyond" and classes["waiting_61_90"] == "bar"
    assert classes["waiting_patient_chosen"] == "bar chosen"  # apart, not counted against the guarantee
    # The guarantee line stands at day 90: between the 61-90 bar and the one beyond it.
    (line,) = hassleholm.xpath('.//*[local-name()="line" and @class="guarantee"]')
    x = float(line.get("x1"))
    rects = {r.get("data-key"): r for r in hassleholm.xpath('.//*[local-name()="rect"]')}
    end_61_90 = float(rects["waiting_61_90"].get("x")) + float(rects["waiting_61_90"].get("width"))
    assert end_61_90 < x < float(rects["waiting_over_90"].get("x"))
    assert "vårdgaranti 90 d" in text(hassleholm)
    # The numbers as text: on the bars and in the table under the chart.
    cells = [text(td) for td in hassleholm.xpath('.//table[@class="numbers"]//td')]
    assert cells == ["10", "8", "7", "5", "2"]
    region = bars(chart(rendered.dom, "waiting", ""))
    assert region["waiting_0_30"][0] == page.PLOT_H and region["waiting_over_90"][0] == page.PLOT_H * 5 / 16


def test_the_weekly_review_bars_show_the_share_within_the_deadline(rendered: Rendered) -> None:
    hassleholm = chart(rendered.dom, "reviews", HSA_H)
    drawn = bars(hassleholm)
    assert drawn["2026-W45"][0] == page.PLOT_H and drawn["2026-W45"][2] == "bar"
    assert drawn["2026-W46"][0] == page.PLOT_H * 3 / 4 and drawn["2026-W46"][2] == "bar moved"
    assert [text(td) for td in hassleholm.xpath('.//table[@class="numbers"]//td')] == [
        "Inom fristen / bedömda",
        "3/3",
        "3/4",
    ]
    lund = chart(rendered.dom, "reviews", HSA_L)
    assert set(bars(lund)) == {"2026-W46"} and bars(lund)["2026-W46"][0] == page.PLOT_H / 2
    assert [text(td) for td in lund.xpath('.//table[@class="numbers"]//td')][1:] == ["–", "2/4"]  # no reviews in W45
    assert not bars(chart(rendered.dom, "reviews", HSA_S))  # no reviews at all: no bar
    region = bars(chart(rendered.dom, "reviews", ""))
    assert region["2026-W46"][0] == page.PLOT_H * 5 / 8  # the region: 3 + 2 within of 4 + 4 decided


def test_the_owners_bars_show_how_often_a_referral_changed_hands(rendered: Rendered) -> None:
    hassleholm = bars(chart(rendered.dom, "owners", HSA_H))
    assert {k: w for k, (_, w, _) in hassleholm.items()} == {
        "1": page.OWNERS_BAR_W,
        "2": page.OWNERS_BAR_W * 5 / 20,
        "3": page.OWNERS_BAR_W * 1 / 20,
    }
    assert hassleholm["1"][2] == "bar" and hassleholm["2"][2] == "bar moved"
    assert bars(chart(rendered.dom, "owners", HSA_L))["1"][1] == page.OWNERS_BAR_W * 4 / 20
    assert "Inga remisser kom under perioden." in text(chart(rendered.dom, "owners", HSA_S))


def test_every_chart_is_named_and_described_with_its_numbers(rendered: Rendered) -> None:
    svgs = rendered.dom.xpath('//*[local-name()="svg"]')
    assert len(svgs) == 3 * 4  # three charts for the region and each of the three organisations
    for svg in svgs:
        assert svg.get("role") == "img"
        title, desc = svg.get("aria-labelledby").split()
        assert rendered.dom.xpath(f'//*[@id="{title}" and local-name()="title"]'), title
        assert rendered.dom.xpath(f'//*[@id="{desc}" and local-name()="desc"]'), desc
    (desc,) = chart(rendered.dom, "waiting", HSA_H).xpath('.//*[local-name()="desc"]')
    assert "0–30 d: 10; 31–60 d: 8; 61–90 d: 7; över 90 d: 5; patientvald: 2" in text(desc)
    assert "bortom vårdgarantin: 5" in text(desc)


def test_the_banner_names_the_referrals_nobody_holds_and_is_red_on_screen(rendered: Rendered) -> None:
    (banner,) = rendered.dom.xpath('//*[@id="responsibility"]')
    assert banner.get("role") == "alert" and "alarm" in banner.get("class")
    assert [text(li) for li in banner.xpath(".//li")] == ["MMR-2026-0042"]
    assert "Remisser utan ansvarig: 1" in text(banner)
    pixels = png_pixels(rendered.screenshot)
    assert len(set(pixels)) > 20, "the screenshot is blank"
    assert pixels.count(RED) > 1280 * 40, "the alarm banner is not on screen"


def test_no_request_leaves_the_page_and_the_check_would_see_one(
    rendered: Rendered, recorder: Recorder, tmp_path: Path
) -> None:
    assert rendered.requests == []
    # The hostile name is text in the page, not an element: escaped.
    assert HOSTILE in text(chart(rendered.dom, "waiting", HSA_L).xpath("./figcaption")[0])
    assert not rendered.dom.xpath("//img | //script | //iframe | //link | //*[@src]")
    # The control: the same page with the name unescaped does ask the network, and the recorder sees it.
    leaky = page.render(figures()).replace(page._e(HOSTILE), HOSTILE, 1)
    leaky = leaky.replace("default-src 'none'", "default-src *")  # the page's own guard, removed for the control
    _, _, requests = open_in_chromium(leaky, tmp_path, recorder)
    assert any("flow-page.invalid" in r for r in requests), requests


# ------------------------------------------------------------------ without the browser


def test_a_shorter_guarantee_moves_the_line_and_reddens_the_bars_beyond_it() -> None:
    shorter = deepcopy(figures())
    shorter["guarantee_days"] = 60
    dom = lxml.html.fromstring(page.render(shorter))
    drawn = bars(chart(dom, "waiting", HSA_H))
    assert drawn["waiting_61_90"][2] == drawn["waiting_over_90"][2] == "bar beyond"
    assert drawn["waiting_31_60"][2] == "bar"
    assert "vårdgaranti 60 d" in text(chart(dom, "waiting", HSA_H))


def test_a_quiet_banner_when_everyone_is_held() -> None:
    held = deepcopy(figures())
    held["nobody_responsible"] = []
    dom = lxml.html.fromstring(page.render(held))
    (banner,) = dom.xpath('//*[@id="responsibility"]')
    assert banner.get("class") == "banner ok" and banner.get("role") is None
    assert text(banner) == load("flow-page")["banner"]["everyone"]


# ------------------------------------------------------------------ a PNG read without an imaging library


def png_pixels(path: Path, rows: int = 400) -> list[tuple[int, int, int]]:
    """The RGB pixels of the top ``rows`` of an 8-bit RGB or RGBA PNG (what Chromium writes), scanline
    filters undone (the banner is at the top; decoding all of it in Python would take seconds)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    previous, pixels = bytearray(stride), []
    for y in range(min(height, rows)):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        pixels += [tuple(line[i : i + 3]) for i in range(0, stride, bpp)]
        previous = line
    return pixels  # type: ignore[return-value]
