"""The comparison screen's page pane, header, plots and report key."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image as PILImage
from textual.widgets import DataTable, Static
from textual_image.widget import Image as AutoImage

from ocrtui.compare import page_files
from ocrtui.compare.render import RenderTarget
from ocrtui.compare.results import PhaseStats
from ocrtui.compare.store import PageResult
from ocrtui.config import ModelConfig
from ocrtui.tui.comparing import probe_versions
from ocrtui.tui.run_view import RunView
from ocrtui.tui.screens.compare import CompareScreen
from ocrtui.tui.widgets import page_pane, run_plots
from ocrtui.tui.widgets.page_pane import NO_LINE_POSITIONS, PageImages, PagePane
from ocrtui.tui.widgets.run_header import run_header_content, serve_flags
from ocrtui.tui.widgets.run_plots import RunPlot, throughput_points
from tests.plugins import recorded
from tests.plugins.run_dirs import page_image
from tests.plugins.tui_app import AppFactory, until

MODELS = ["glm-ocr", "lighton-ocr"]
WIDE = (160, 48)
NARROW = (130, 40)
RUN_DIR = "runs/20261126-150000"


def result(doc: str, page: int, model: str, latency: float) -> PageResult:
    return PageResult(
        doc=doc,
        page=page,
        model=model,
        ok=True,
        error=None,
        latency_s=latency,
        prompt_tokens=900,
        completion_tokens=60,
        finish_reason="stop",
        text=f"{doc} page {page} by {model}",
        cer=0.01,
        category="other",
        flags=(),
    )


def kept_run(root: Path, pages: int = 2) -> RunView:
    """A finished view whose run directory (relative, under ``root``) keeps each page."""
    for page in range(1, pages + 1):
        image = page_image(label=f"page {page}")
        page_files.save_page_image(root / RUN_DIR, "contract", page, RenderTarget(dpi=200), image)
    run = RunView(MODELS, "sample suite")
    run.facts = recorded.run_facts()
    for page in range(1, pages + 1):
        for i, m in enumerate(MODELS):
            run.add(result("contract", page, m, 1.0 + page / 10 + i / 3))
    run.out_dir = RUN_DIR
    run.speed[("glm-ocr", "throughput")] = PhaseStats(8, 8, 0, concurrency=5, images_per_s=2.4)
    run.speed[("lighton-ocr", "throughput")] = PhaseStats(8, 8, 0, concurrency=5, images_per_s=3.1)
    run.finish()
    return run


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # RUN_DIR is relative, as the screen shows it
    return tmp_path


async def test_page_pane_shows_the_kept_page_decoded_off_the_loop(
    make_app: AppFactory, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoders: list[int] = []
    decoded: list[str] = []
    real_decode = page_pane.decode

    def decode(path: Path, box: tuple[int, int]) -> PILImage.Image:
        decoders.append(threading.get_ident())
        decoded.append(path.name)
        return real_decode(path, box)

    drawers: list[int] = []
    real_draw = page_pane.draw_halfblocks

    def draw(image: PILImage.Image, cells: tuple[int, int]) -> page_pane.HalfBlocks:
        drawers.append(threading.get_ident())
        return real_draw(image, cells)

    monkeypatch.setattr(page_pane, "decode", decode)
    monkeypatch.setattr(page_pane, "draw_halfblocks", draw)
    app, _ = make_app(recorded.READY, page_graphics="halfblock")
    async with app.run_test(size=WIDE) as pilot:
        app.run_view = kept_run(in_tmp, pages=5)
        app.show_comparison()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        pane = screen.query_one(PagePane)
        assert pane.display  # on by default at 160 columns
        await until(pilot, lambda: bool(pane.query("#page-image")), what="page image shown")
        assert pane.shown == "contract#1"
        assert pane.border_subtitle == NO_LINE_POSITIONS
        await until(pilot, lambda: "2-dpi200.jpg" in decoded, what="the next page decoded ahead")
        assert drawers and decoders
        assert threading.get_ident() not in decoders + drawers  # never on the loop's thread

        table = screen.query_one("#pages", DataTable)
        table.move_cursor(row=1)
        await until(pilot, lambda: pane.shown == "contract#2", what="second page shown")
        assert decoded.count("2-dpi200.jpg") == 1  # shown from the cache
        for row in (2, 3, 4):
            table.move_cursor(row=row)

            def shown(want: str = f"contract#{row + 1}") -> bool:
                return pane.shown == want

            await until(pilot, shown)
        assert len(pane.images) <= 3


async def test_page_pane_says_when_no_image_is_kept(make_app: AppFactory, in_tmp: Path) -> None:
    app, _ = make_app(recorded.READY, page_graphics="halfblock")
    async with app.run_test(size=WIDE) as pilot:
        run = kept_run(in_tmp)
        run.add(result("unkept", 1, "glm-ocr", 1.0))
        app.run_view = run
        app.show_comparison()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        screen.query_one("#pages", DataTable).move_cursor(row=2)
        pane = screen.query_one(PagePane)
        note = pane.query_one("#page-note")
        await until(
            pilot,
            lambda: (
                "No kept image for unkept p.1" in str(note.render())
                and not pane.query("#page-image")
            ),  # the previous page's image is gone
            what="the note, and no image",
        )
        assert pane.shown == "unkept#1"


def test_page_images_keep_only_the_last_three(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}-dpi200.jpg"
        path.write_bytes(page_image(label=str(i)).data)
        paths.append(path)
    images = PageImages()
    box = (200, 300)
    for path in paths:
        image = images.get(path, box)
        assert image.width <= 200 and image.height <= 300  # scaled in the loader
    assert len(images) == 3
    again = images.get(paths[-1], box)
    assert again is images.get(paths[-1], box)  # a hit: not decoded again
    assert len(images) == 3


async def test_page_pane_key_and_default_by_width(make_app: AppFactory, in_tmp: Path) -> None:
    app, _ = make_app(recorded.READY, page_graphics="halfblock")
    async with app.run_test(size=NARROW) as pilot:
        app.run_view = kept_run(in_tmp)
        app.show_comparison()
        await pilot.pause()
        pane = app.screen.query_one(PagePane)
        assert not pane.display  # too narrow: off by default
        await pilot.press("p")
        assert pane.display
        await until(pilot, lambda: bool(pane.query("#page-image")), what="page image shown")
        assert isinstance(pane.query_one("#page-image"), Static)  # drawn ahead, in the loader
        await pilot.press("g")  # cycles: halfblock -> auto
        assert pane.graphics == "auto"
        await until(pilot, lambda: isinstance(pane.query_one("#page-image"), AutoImage))
        for _ in range(3):  # -> kitty -> sixel -> halfblock
            await pilot.press("g")
        assert pane.graphics == "halfblock"
        await until(pilot, lambda: isinstance(pane.query_one("#page-image"), Static))
        await pilot.press("p")
        assert not pane.display


async def test_report_key_hands_the_file_to_xdg_open(
    make_app: AppFactory, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = in_tmp / "opened.txt"
    opener = in_tmp / "xdg-open"
    opener.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')
    opener.chmod(0o755)
    monkeypatch.setattr("ocrtui.tui.app.shutil.which", lambda name: str(opener))
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=NARROW) as pilot:
        app.run_view = kept_run(in_tmp)
        app.show_comparison()
        await pilot.pause()
        await pilot.press("o")
        await until(
            pilot, lambda: any("No report.html yet" in (n.title or "") for n in app._notifications)
        )
        report = in_tmp / RUN_DIR / "report.html"
        report.write_text("<html></html>")
        await pilot.press("o")
        await until(
            pilot,
            lambda: opened.exists() and opened.read_text() == str(Path(RUN_DIR) / "report.html"),
        )
        assert any("opened with xdg-open" in n.message for n in app._notifications)


def test_header_names_pod_gpu_models_and_settings() -> None:
    text = run_header_content(recorded.run_facts(), recorded.READY, MODELS).plain
    for expected in (
        "demo-pod",
        "NVIDIA A40 (simulated)",
        "DEMO",
        "simulated GPU",
        "zai-org/GLM-OCR",
        "lightonai/LightOnOCR-2-1B",
        "profile generic",
        "gmu 0.40 seqs 16",
        "vLLM 0.11.0 (simulated)",  # the demo pod's servers are simulated
        "vLLM ?",  # lighton-ocr's /version is unknown
        "concurrency 5",
        "schedule sequential",
        "references: sidecar files",
    ):
        assert expected in text, expected


def test_serve_flags_hide_secret_values() -> None:
    m = ModelConfig(
        name="m",
        model="org/m",
        port=8000,
        gpu_memory_utilization=0.5,
        extra_args=("--api-key", "sk-secret", "--hf-token=hf_secret"),
    )
    flags = serve_flags(m)
    assert "secret" not in flags
    assert flags.endswith("--api-key *** --hf-token=***")


def test_serve_flags_count_max_num_seqs_per_data_parallel_rank() -> None:
    m = ModelConfig(
        name="m",
        model="org/m",
        port=8000,
        gpu_memory_utilization=0.5,
        max_num_seqs=16,
        extra_args=("-dp", "2"),
    )
    assert serve_flags(m).startswith("gmu 0.50 seqs 16x2 ")


def test_throughput_points_from_phase_stats() -> None:
    speed = {
        ("a", "warm"): PhaseStats(3, 3, 0, latency_p50_s=1.0),
        ("a", "throughput"): PhaseStats(8, 8, 0, concurrency=4, images_per_s=2.5),
        ("b", "throughput"): PhaseStats(8, 0, 8, concurrency=4, images_per_s=None),
    }
    assert throughput_points(speed) == {"a": [(4.0, 2.5)]}


async def test_plots_redraw_only_on_new_data_and_off_the_loop(
    make_app: AppFactory, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builders: list[int] = []
    real_plot = run_plots.Plot

    def counting_plot() -> Any:
        builders.append(threading.get_ident())
        return real_plot()

    monkeypatch.setattr(run_plots, "Plot", counting_plot)
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=NARROW) as pilot:
        run = kept_run(in_tmp)
        app.run_view = run
        app.show_comparison()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        plot = screen.query_one("#latency-plot", RunPlot)
        assert plot.series is not None and len(plot.series["glm-ocr"]) == 2
        draws = plot.draws
        screen._tick()
        assert plot.draws == draws
        run.add(result("contract", 3, "glm-ocr", 2.0))
        screen._tick()
        assert plot.draws == draws + 1 and len(plot.series["glm-ocr"]) == 3
        await until(pilot, lambda: not plot.pending, what="the plot built")
        assert builders and threading.get_ident() not in builders


async def test_header_asks_each_server_for_its_vllm_version() -> None:
    body = b'{"version": "0.11.2"}'

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        writer.write(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def model_url(name: str) -> str:
        if name != "glm-ocr":
            raise KeyError(name)  # no URL for the other model: it stays "vLLM ?"
        return f"http://127.0.0.1:{port}"

    run = RunView(MODELS, "live")
    run.facts = recorded.run_facts()
    run.facts.vllm.clear()
    changes: list[object] = []
    run.subscribe(changes.append)
    pod = SimpleNamespace(source=SimpleNamespace(model_url=model_url))
    app = SimpleNamespace(pod_of=lambda _name: pod)
    async with server:
        await asyncio.wait_for(probe_versions(app, run), 10)  # type: ignore[arg-type]
    assert run.facts.vllm == {"glm-ocr": "0.11.2"}
    assert changes  # the screen repaints
    text = run_header_content(run.facts, recorded.READY, MODELS).plain
    assert "vLLM 0.11.2 (simulated)" in text and "vLLM ?" in text


async def test_diff_follows_the_second_models_text(make_app: AppFactory) -> None:
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=NARROW) as pilot:
        run = RunView(MODELS, "live")
        run.add(result("contract", 1, "glm-ocr", 1.0))
        app.run_view = run
        app.show_comparison()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)

        def diff() -> str:
            return str(screen.query_one("#diff").render())

        await until(pilot, lambda: "Waiting for both models' text" in diff())
        run.add(result("contract", 1, "lighton-ocr", 1.2))
        await until(pilot, lambda: "(struck) vs" in diff(), what="the diff of both texts")
