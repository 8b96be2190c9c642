"""A comparison's streamed timings and server counters, end to end against the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from ocrtui.cli import _parser
from ocrtui.compare.cli import request_from_args, run_headless
from ocrtui.compare.launch import resolve
from tests.compare.test_e2e_sim import FAST, config, urls_of
from tests.plugins.compare_inputs import MakePdf
from tests.plugins.sim import SimServers, start_pair

SPEC = ["--speculative-config", '{"method": "mtp", "num_speculative_tokens": 1}']


async def test_summary_and_reports_have_streamed_timings_and_server_counters(
    sim_servers: SimServers, make_pdf: MakePdf, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = start_pair(sim_servers, ("synthetic", "synthetic"), *FAST, *SPEC)
    pdf = make_pdf("paper.pdf", ["Born digital page one.", "Page two of the paper."])
    cfg = config([("glm-ocr", "glm-ocr"), ("lighton-ocr", "lighton-ocr")],
                 warm_runs=2, throughput_requests=3)  # fmt: skip
    args = _parser().parse_args(["compare", "--headless", "--out", str(tmp_path / "run"), str(pdf)])
    setup = resolve(cfg, request_from_args(args))
    model_url = urls_of([m.name for m in setup.models], urls)
    assert await run_headless(setup, model_url, Console(width=250)) == 0
    assert "glm-ocr: warm: p50" in (out := capsys.readouterr().out) and "TTFT p50" in out

    summary = json.loads((tmp_path / "run/summary.json").read_text())
    phases = {"cold": 1, "warm": 2, "throughput@5": 3, "documents": 2}  # requests each
    for m in ("glm-ocr", "lighton-ocr"):
        s = summary["models"][m]
        assert set(s["streaming"]) == set(phases) == set(s["server"])
        for phase, n in phases.items():
            st = s["streaming"][phase]
            assert st["pages"] == n and st["output_tokens"] > 0
            for metric in ("ttft", "tpot", "itl", "e2el"):
                assert 0 < st[f"median_{metric}_ms"] <= st[f"p99_{metric}_ms"]
            server = s["server"][phase]
            assert not server["restarted"]
            # Every request of the phase finished at the server, and no other.
            assert sum(server["finished_by_reason"].values()) == n
            assert server["spec_decode"]["drafts"] is not None  # --speculative-config
            assert server["kv_cache_usage_peak"] is not None
    rows = [json.loads(x) for x in (tmp_path / "run/results.jsonl").read_text().splitlines()]
    for r in rows:
        assert 0 < r["ttft_s"] <= r["e2el_s"] and r["output_tokens"] > 0
        assert r["itl_p50_s"] <= r["itl_p90_s"] <= r["itl_p99_s"]
    report = (tmp_path / "run/report.md").read_text()
    assert "## Streamed timings and server counters" in report
    assert "TTFT median" in report and "| glm-ocr | throughput@5 |" in report
    # The counters' row of the warm phase: its third cell is preemptions, not a time.
    warm_counters = next(
        line for line in report.splitlines()
        if line.startswith("| glm-ocr | warm |") and "ms" not in line.split("|")[3]
    )  # fmt: skip
    assert "Finished by reason" in report and warm_counters.rstrip(" |").endswith("stop 2")
    html = (tmp_path / "run/report.html").read_text()
    assert 'id="streaming"' in html and "ITL p99" in html and "Finished by reason" in html

    # Resumed with every page done: the speed phases are skipped, their measures kept.
    args = _parser().parse_args(["compare", "--headless", "--resume", str(tmp_path / "run")])
    setup = resolve(cfg, request_from_args(args))
    assert await run_headless(setup, model_url, Console(width=250)) == 0
    again = json.loads((tmp_path / "run/summary.json").read_text())
    for m in ("glm-ocr", "lighton-ocr"):
        for phase in ("cold", "warm", "throughput@5"):
            assert (
                again["models"][m]["streaming"][phase] == summary["models"][m]["streaming"][phase]
            )
            assert again["models"][m]["server"][phase] == summary["models"][m]["server"][phase]


async def test_a_run_reads_the_same_text_streamed_and_not(
    sim_servers: SimServers, make_pdf: MakePdf, tmp_path: Path
) -> None:
    urls = start_pair(sim_servers, ("synthetic", "synthetic"), *FAST)
    pdf = make_pdf("paper.pdf", ["Born digital page one.", "Page two of the paper."])
    runs = {}
    for stream in (True, False):
        cfg = config([("glm-ocr", "glm-ocr"), ("lighton-ocr", "lighton-ocr")],
                     warm_runs=1, throughput_requests=1)  # fmt: skip
        models = tuple(m.model_copy(update={"stream": stream}) for m in cfg.models)
        cfg = cfg.model_copy(update={"models": models})
        out = tmp_path / f"run-{stream}"
        args = _parser().parse_args(["compare", "--headless", "--out", str(out), str(pdf)])
        setup = resolve(cfg, request_from_args(args))
        model_url = urls_of([m.name for m in setup.models], urls)
        assert await run_headless(setup, model_url, Console(width=250)) == 0
        lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
        runs[stream] = {(r["doc"], r["page"], r["model"]): r for r in lines}
        summary = json.loads((out / "summary.json").read_text())
        for s in summary["models"].values():
            assert bool(s["streaming"]) is stream  # timings only where it streamed
            assert set(s["server"]) == {"cold", "warm", "throughput@5", "documents"}
    assert runs[True].keys() == runs[False].keys() and len(runs[True]) == 4
    for key, streamed in runs[True].items():
        plain = runs[False][key]
        assert streamed["text"] == plain["text"] and streamed["text"]
        assert streamed["cer"] == plain["cer"] and streamed["flags"] == plain["flags"]
        assert streamed["finish_reason"] == plain["finish_reason"]
        assert streamed["ttft_s"] is not None and plain["ttft_s"] is None
