"""The throughput sweep, the arm records and max_tokens at run start, against the simulator
(synthetic engine, small service times)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocrtui.compare.client import ModelTarget
from ocrtui.compare.events import Event, PhaseDone, PhaseProgress, PhaseStarted, RunStarted
from ocrtui.compare.launch import CompareRequest, fit_targets, resolve, start_comparison
from ocrtui.compare.results import PhaseStats
from ocrtui.compare.runner import RunPlan, start_run
from ocrtui.compare.store import RunStore
from ocrtui.config import Config, parse_config
from ocrtui.errors import ConfigError
from ocrtui.pod.local import LocalPod
from ocrtui.vllm.served import Served, probe_server
from tests.plugins.compare_inputs import MakePdf
from tests.plugins.sim import SimServer, SimServers

FAST = ["--sim-prefill-s", "0.01", "--sim-per-token-s", "0.0001", "--sim-tokens-per-page", "20"]
MTP = '{"method": "mtp", "num_speculative_tokens": 1}'


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SimServer]]:
    with SimServers(tmp_path_factory.mktemp("sim")) as sims:
        glm = sims.start(
            "zai-org/GLM-OCR", "--served-model-name", "glm-ocr", "--speculative-config", MTP,
            "--max-model-len", "6144", *FAST, wait=False,
        )  # fmt: skip
        # A pod on the vLLM the LightOnOCR makers say makes every model loop.
        lighton = sims.start(
            "lightonai/LightOnOCR-2-1B", "--served-model-name", "lighton-ocr",
            "--limit-mm-per-prompt", '{"image": 1}', "--sim-vllm-version", "0.27.1", *FAST,
            wait=False,
        )  # fmt: skip
        glm.wait_ready(90)
        lighton.wait_ready(90)
        yield {"glm-ocr": glm, "lighton-ocr": lighton}


def config(**compare: object) -> Config:
    return parse_config(
        {
            "pod": {"kind": "local"},
            "models": [
                {"name": "glm-ocr", "model": "zai-org/GLM-OCR", "port": 9200,
                 "gpu_memory_utilization": 0.4, "profile": "glm-ocr"},
                {"name": "lighton-ocr", "model": "lightonai/LightOnOCR-2-1B", "port": 9201,
                 "gpu_memory_utilization": 0.4, "profile": "lighton-ocr"},
            ],
            "compare": {"warm_runs": 2, "throughput_requests": 4, "concurrency": 2,
                        "sweep": [1, 4], "retries": 0, **compare},
        },
        "test",
    )  # fmt: skip


class Access:
    """What the Controller gives a comparison: model URLs and the probe of each server."""

    def __init__(self, cfg: Config, servers: dict[str, SimServer]) -> None:
        self.cfg = cfg
        self.servers = servers

    async def model_url(self, name: str) -> str:
        return self.servers[name].url

    async def served(self, name: str) -> Served:
        s = self.servers[name]
        return await probe_server(LocalPod(), self.cfg, self.cfg.model(name), s.url, s.pid)


def summary_of(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return data


async def test_sweep_events_summary_arms_and_report(
    servers: dict[str, SimServer], make_pdf: MakePdf, tmp_path: Path
) -> None:
    cfg = config()
    pdf = make_pdf("doc.pdf", ["Sweep page one."])
    request = CompareRequest(documents=(str(pdf),), out=str(tmp_path / "run"), sweep=True)
    setup = resolve(cfg, request)
    assert setup.concurrencies == (1, 2, 4)  # the sweep's levels plus the run's concurrency
    access = Access(cfg, servers)
    notes: list[str] = []
    run = await start_comparison(setup, access.model_url, served=access.served, note=notes.append)
    events: list[Event] = [ev async for ev in run.subscribe()]
    done = await run.wait()
    assert done.exit_code == 0, done.error

    # glm-ocr's profile default (8192) is capped to the server's max_model_len.
    assert notes == [
        "warning: glm-ocr: max_tokens capped from 8192 (the glm-ocr profile's default) to the "
        "server's max_model_len 6144"
    ]
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.arms[0].startswith("GLM-OCR · model only, full page, no layout · max_tokens")
    assert "MTP 1" in started.arms[0] and "vLLM 0.27.1" in started.arms[1]

    speed = [(e.model, e.phase, e.concurrency) for e in events if isinstance(e, PhaseStarted)]
    per_model = [("cold", None), ("warm", None), ("throughput", 1), ("throughput", 2),
                 ("throughput", 4)]  # fmt: skip
    assert speed[:10] == [(m, p, c) for m in ("glm-ocr", "lighton-ocr") for p, c in per_model]
    for e in events:
        if isinstance(e, PhaseProgress) and e.phase == "throughput":
            assert e.concurrency in (1, 2, 4) and e.total == 4
    levels = [e.stats.concurrency for e in events if isinstance(e, PhaseDone)
              and isinstance(e.stats, PhaseStats) and e.phase == "throughput"
              and e.model == "glm-ocr"]  # fmt: skip
    assert levels == [1, 2, 4]

    summary = summary_of(tmp_path / "run")
    assert summary["run"]["throughput_concurrencies"] == [1, 2, 4]
    for name in ("glm-ocr", "lighton-ocr"):
        points = summary["sweep"][name]
        assert [p["concurrency"] for p in points] == [1, 2, 4]
        for p in points:
            assert p["images_per_s"] > 0 and p["request_throughput"] == p["images_per_s"]
            assert 0 < p["p50"] <= p["p95"] and p["p95_e2el_ms"] == round(p["p95"] * 1000, 2)
            assert p["completed"] == 4 and p["failed"] == 0
        m = summary["models"][name]
        assert m["throughput_concurrency"] == 2 and m["throughput_c5_imgs_per_s"] is None
        assert m["throughput_imgs_per_s"] == points[1]["images_per_s"]
        assert m["knee_concurrency"] == 4  # every p95 is far within the 30 s bound
        assert m["saturation_imgs_per_s"] == max(p["images_per_s"] for p in points)

    glm, lighton = summary["models"]["glm-ocr"]["arm"], summary["models"]["lighton-ocr"]["arm"]
    assert glm["profile"]["max_tokens"] == 6144 and glm["profile"]["prompt"] == "Text Recognition:"
    assert "--speculative-config" in glm["serve_argv"]
    assert lighton["versions"]["server_vllm"] == "0.27.1"
    loop = [a for a in lighton["advisories"] if a["key"] == "lighton-vllm-0.27.1-loops"]
    assert loop and loop[0]["severity"] == "warning" and "LightOnOCR" in loop[0]["source"]
    assert not any(a["key"] == "lighton-vllm-0.27.1-loops" for a in glm["advisories"])

    md = (tmp_path / "run/report.md").read_text(encoding="utf-8")
    assert f"- **glm-ocr**: {glm['label']}" in md
    assert "## Throughput sweep" in md and "| lighton-ocr | 4 |" in md
    assert "vLLM 0.27.1 makes every LightOnOCR model loop" in md
    # The published figures, each with the configuration it came from, beside the run.
    assert "| GLM-OCR | OmniDocBench v1.5 overall | 94.62 | the GLM-OCR SDK's two-stage" in md
    assert "| LightOnOCR-2 | PDF parse speed | 5.71 pages/s | one H100" in md
    html = (tmp_path / "run/report.html").read_text(encoding="utf-8")
    assert "vLLM 0.27.1 makes every LightOnOCR model loop" in html
    assert glm["label"] in html and "no sweep in this run" not in html


async def test_a_run_killed_mid_sweep_resumes_the_levels_left(
    servers: dict[str, SimServer], make_pdf: MakePdf, tmp_path: Path
) -> None:
    cfg = config()
    pdf = make_pdf("doc.pdf", ["Resume page one."])
    setup = resolve(cfg, CompareRequest(documents=(str(pdf),), out=str(tmp_path / "run"),
                                        sweep=True, models=("lighton-ocr",)))  # fmt: skip
    targets = (ModelTarget(cfg.model("lighton-ocr"), servers["lighton-ocr"].url),)
    plan = RunPlan(setup.documents, targets, setup.settings, concurrencies=setup.concurrencies)
    run = start_run(plan, RunStore.create(setup.run_dir, setup.info))
    async for ev in run.subscribe():
        if isinstance(ev, PhaseDone) and ev.phase == "throughput" and ev.concurrency == 2:
            run.cancel()
            break
    assert (await run.wait()).cancelled
    # run.json remembers the sweep: --resume alone measures the levels left.
    again = resolve(cfg, CompareRequest(resume=str(setup.run_dir)))
    assert again.concurrencies == (1, 2, 4)
    plan = RunPlan(again.documents, targets, again.settings, concurrencies=again.concurrencies)
    run = start_run(plan, RunStore.resume(setup.run_dir))
    events = [ev async for ev in run.subscribe()]
    done = [(e.phase, e.concurrency, e.skipped) for e in events if isinstance(e, PhaseDone)]
    assert done[:5] == [("cold", None, True), ("warm", None, True), ("throughput", 1, True),
                        ("throughput", 2, True), ("throughput", 4, False)]  # fmt: skip
    started = [(e.phase, e.concurrency) for e in events if isinstance(e, PhaseStarted)]
    assert started == [("throughput", 4), ("documents", None)]
    points = summary_of(setup.run_dir)["sweep"]["lighton-ocr"]
    assert [p["concurrency"] for p in points] == [1, 2, 4]


async def test_max_tokens_over_the_servers_max_model_len_is_refused(
    servers: dict[str, SimServer],
) -> None:
    cfg = config()
    glm = cfg.model("glm-ocr").model_copy(update={"max_tokens": 7000})
    with pytest.raises(
        ConfigError, match=r"max_tokens 7000 is more than the server's max_model_len 6144"
    ):
        await fit_targets([ModelTarget(glm, servers["glm-ocr"].url)], print)
    # A default within the limit is left alone, with no note.
    notes: list[str] = []
    lighton = cfg.model("lighton-ocr")
    (fitted,) = await fit_targets([ModelTarget(lighton, servers["lighton-ocr"].url)], notes.append)
    assert fitted.config == lighton and notes == []
