"""report.html in a real browser: Debian's chromium (./dev setup installs it) driven by
Playwright, never a browser Playwright downloads. A screenshot is kept in the test's tmp
directory (its path is printed; `pytest -s` shows it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ocrtui.compare.report_html import write_html_report
from tests.plugins.run_dirs import SynthPage, page_image

if TYPE_CHECKING:
    from playwright.sync_api import Dialog

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
HOSTILE = "<script>alert(1)</script></textarea><img src=x onerror=alert(2)>"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (./dev setup installs it)"
)


def pages() -> list[SynthPage]:
    out = [
        SynthPage("lease.pdf", p, {"glm-ocr": f"第{p}条 租金¥4,500.00",
                                   "lighton-ocr": f"第{p}条 租金¥4,5OO.0{p}"},
                  f"第{p}条 租金¥4,500.00", "zh_contract")
        for p in range(1, 6)
    ]  # fmt: skip
    out.append(SynthPage("scan.png", 1, {"glm-ocr": HOSTILE, "lighton-ocr": "clean"}))
    return out


def test_report_in_chromium(make_run_dir: Callable[..., Path], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    synth = pages()
    sweep = {
        m: [{"concurrency": c, "images_per_s": c / (1 + i), "p50": 1.0, "p95": 1.5}
            for c in (1, 2, 4, 8)]
        for i, m in enumerate(("glm-ocr", "lighton-ocr"))
    }  # fmt: skip
    report = write_html_report(make_run_dir(synth, image=page_image(), sweep=sweep))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            dialogs: list[str] = []

            def on_dialog(d: Dialog) -> None:
                dialogs.append(d.message)
                d.dismiss()

            page.on("dialog", on_dialog)
            fetched: list[str] = []
            page.on("request", lambda r: fetched.append(r.url))
            page.goto(report.as_uri())

            assert page.locator("table.index tr").count() == len(synth) + 1
            assert page.locator("section.page").count() == len(synth)
            assert page.locator("section.page img").count() == len(synth)
            assert page.locator(".plots img").count() == 3
            loaded = "() => [...document.images].map(i => i.complete && i.naturalWidth > 0)"
            assert page.evaluate(loaded) == [True] * (len(synth) + 3)

            hostile = page.locator("section.page", has_text="scan.png p.1")
            expect(hostile).to_contain_text(HOSTILE)
            assert page.evaluate("document.scripts.length") == 0
            assert dialogs == []
            assert all(u.startswith(("file:", "data:")) for u in fetched)

            shot = tmp_path / "report-html.png"
            page.screenshot(path=str(shot))
            print(f"report.html screenshot: {shot}")
        finally:
            browser.close()

        # Navigation needs no script: anchors only.
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(java_script_enabled=False)
            page = context.new_page()
            page.goto(report.as_uri())
            last = f"p{len(synth)}"
            section = page.locator(f"#{last}")
            expect(section).not_to_be_in_viewport()
            page.locator(f'table.index a[href="#{last}"]').click()
            expect(section).to_be_in_viewport()
            assert page.url.endswith(f"#{last}")
            page.locator(f"#{last} a.up").click()
            expect(page.locator("#pages")).to_be_in_viewport()
        finally:
            browser.close()
