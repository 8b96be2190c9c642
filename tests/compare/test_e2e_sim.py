"""End to end against the project's vLLM simulator (ocrtui sim-vllm)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from ocrtui.cli import _parser
from ocrtui.compare.cli import request_from_args, run_headless
from ocrtui.compare.launch import ModelUrl, resolve
from ocrtui.config import Config, ListenAddress, parse_config
from ocrtui.export import MetricsExporter
from ocrtui.status import PodStatus, Snapshot
from tests.plugins.compare_inputs import MakePdf
from tests.plugins.scrape import FixedSource, arm_series, scrape
from tests.plugins.sim import SimServers, start_pair

FAST = ["--sim-prefill-s", "0.01", "--sim-per-token-s", "0.0001", "--sim-tokens-per-page", "40"]


def config(models: list[tuple[str, str]], **compare: object) -> Config:
    return parse_config(
        {
            "pod": {"kind": "local"},
            "models": [
                {"name": n, "model": f"org/{n}", "port": 9100 + i, "gpu_memory_utilization": 0.4,
                 "profile": p}
                for i, (n, p) in enumerate(models)
            ],
            "compare": compare,
        },
        "test",
    )  # fmt: skip


def urls_of(names: list[str], urls: list[str]) -> ModelUrl:
    by_name = dict(zip(names, urls, strict=True))

    async def model_url(name: str) -> str:
        return by_name[name]

    return model_url


async def test_synthetic_born_digital_pdf_with_text_layer(
    sim_servers: SimServers, make_pdf: MakePdf, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = start_pair(sim_servers, ("synthetic", "synthetic"), *FAST)
    pdf = make_pdf("paper.pdf", ["Born digital page one.", "Page two of the paper."])
    cfg = config([("glm-ocr", "glm-ocr"), ("lighton-ocr", "lighton-ocr")],
                 warm_runs=2, throughput_requests=3)  # fmt: skip
    args = _parser().parse_args(
        ["compare", "--headless", "--out", str(tmp_path / "run"), "--reference", "text-layer",
         str(pdf)]
    )  # fmt: skip
    setup = resolve(cfg, request_from_args(args))
    model_url = urls_of([m.name for m in setup.models], urls)
    # Wide enough that the table's cells are not wrapped.
    assert await run_headless(setup, model_url, Console(width=250)) == 0
    out = capsys.readouterr().out
    assert "Warm latency p50 / p95" in out and "Throughput at 5 concurrent" in out
    rows = [json.loads(x) for x in (tmp_path / "run/results.jsonl").read_text().splitlines()]
    assert sorted((r["page"], r["model"]) for r in rows) == [
        (1, "glm-ocr"), (1, "lighton-ocr"), (2, "glm-ocr"), (2, "lighton-ocr")
    ]  # fmt: skip
    assert all(r["ok"] and r["text"] and r["cer"] is not None for r in rows)
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    for m in ("glm-ocr", "lighton-ocr"):
        s = summary["models"][m]
        assert s["latency_cold_s"] > 0 and s["latency_warm_p50_s"] > 0
        assert s["throughput_c5_imgs_per_s"] > 0 and s["pages_per_s"] > 0


@pytest.mark.slow
@pytest.mark.timeout(240)  # about 60 s on a busy 2-core machine
async def test_real_cpu_ocr_on_the_sample_suite(
    sim_servers: SimServers, sample_suite: Path, tmp_path: Path
) -> None:
    urls = start_pair(sim_servers, ("rapidocr", "tesseract"))
    cfg = config([("glm-ocr", "glm-ocr"), ("lighton-ocr", "lighton-ocr")],
                 warm_runs=1, throughput_requests=1, concurrency=2)  # fmt: skip
    args = _parser().parse_args(
        ["compare", "--headless", "--suite", str(sample_suite), "--out", str(tmp_path / "run")]
    )
    setup = resolve(cfg, request_from_args(args))
    assert await run_headless(setup, urls_of([m.name for m in setup.models], urls)) == 0
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    # Measured here: rapidocr 0-1.3 % CER per category, tesseract 3-9 %.
    limits = {"glm-ocr": 0.10, "lighton-ocr": 0.25}
    for m, limit in limits.items():
        s = summary["models"][m]
        assert s["pages_ok"] == 5 and s["pages_failed"] == 0
        assert set(s["by_category"]) == {"zh_contract", "en_latex", "table", "id_card"}
        for cat, v in s["by_category"].items():
            assert v["cer"] is not None and v["cer"] < limit, (m, cat, v)
        assert s["critical_pass_rate"] >= 0.6
    report = (tmp_path / "run/report.md").read_text()
    assert "中文 / zh accuracy" in report and "ID card" in report


async def test_the_metrics_endpoint_serves_each_arms_progress(
    sim_servers: SimServers, make_pdf: MakePdf, tmp_path: Path
) -> None:
    """``ocrtui compare --headless`` feeds the [export] endpoint: scraped, each arm's pages
    done and failed and CER so far are what results.jsonl holds, with a pages/s figure."""
    urls = start_pair(sim_servers, ("synthetic", "synthetic"), *FAST)
    pdf = make_pdf("paper.pdf", ["Born digital page one.", "Page two of the paper."])
    cfg = config([("glm-ocr", "glm-ocr"), ("lighton-ocr", "lighton-ocr")],
                 warm_runs=1, throughput_requests=2)  # fmt: skip
    args = _parser().parse_args(
        ["compare", "--headless", "--out", str(tmp_path / "run"), "--reference", "text-layer",
         str(pdf)]
    )  # fmt: skip
    setup = resolve(cfg, request_from_args(args))
    model_url = urls_of([m.name for m in setup.models], urls)
    pod = PodStatus("test", "connected", 0.0, None, simulated_gpu=True, demo=False)
    exporter = MetricsExporter([FixedSource(Snapshot(pod, (), (), ()))])
    bound = exporter.serve(ListenAddress("127.0.0.1", 0))
    try:
        assert arm_series(await scrape(bound), "glm-ocr") == {}
        code = await run_headless(
            setup, model_url, Console(width=250), on_progress=exporter.arm_progress
        )
        assert code == 0
        samples = await scrape(bound)
    finally:
        await exporter.close()
    rows = [json.loads(x) for x in (tmp_path / "run/results.jsonl").read_text().splitlines()]
    for arm in ("glm-ocr", "lighton-ocr"):
        mine = [r for r in rows if r["model"] == arm]
        cers = [r["cer"] for r in mine if r["cer"] is not None]
        series = arm_series(samples, arm)
        assert series.pop("ocrtui_compare_images_per_second") > 0
        assert series == {
            "ocrtui_compare_pages_done_total": sum(r["ok"] for r in mine),
            "ocrtui_compare_pages_failed_total": sum(not r["ok"] for r in mine),
            "ocrtui_compare_cer": pytest.approx(sum(cers) / len(cers)),
        }
