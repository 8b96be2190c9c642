"""A serve sweep end to end against the simulator: the model restarted through the lifecycle
once per flag set, one run with an arm per flag set, the flags' effect on speed in the
right order, the Pareto front in both reports, and the model back on its configured flags
at the end, also after a flag set that cannot start and a cancellation."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from ocrtui.compare import launch
from ocrtui.compare.events import ModelStopped, PhaseDone, RunDone
from ocrtui.compare.launch import CompareRequest, resolve, start_comparison
from ocrtui.compare.runner import CompareRun
from ocrtui.config import CompareConfig, Config, ModelConfig
from ocrtui.control import Controller
from ocrtui.vllm.flags import json_option, serve_options
from tests.plugins.sim import free_port
from tests.plugins.sim_pod import SIM_FLAGS, SimPod

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]

# Decode dominates a page (40 tokens x 20 ms), so MTP's accepted drafts show in latency.
SPEED = ("--sim-prefill-s", "0.05", "--sim-per-token-s", "0.02", "--sim-tokens-per-page", "40")
COMPARE = CompareConfig(warm_runs=2, throughput_requests=4, concurrency=4, retries=0)


@pytest.fixture
def transport() -> str:
    return "local"  # the lifecycle over SSH is tests/control's; this is the sweep


def page(tmp_path: Path) -> str:
    p = tmp_path / "page.png"
    Image.new("RGB", (600, 400), "white").save(p)
    return str(p)


def sweep_file(tmp_path: Path, flags: str) -> str:
    p = tmp_path / "sweep.toml"
    p.write_text(f'model = "glm"\nconcurrencies = [4]\n{flags}', encoding="utf-8")
    return str(p)


async def controller(sim_pod: SimPod) -> tuple[Controller, Config]:
    model = sim_pod.model(
        "glm", profile="glm-ocr", max_num_seqs=16, extra_args=[*SIM_FLAGS, *SPEED]
    )
    cfg = sim_pod.config(model).model_copy(update={"compare": COMPARE})
    ctl = Controller(cfg)
    await ctl.start()
    await ctl.up()
    return ctl, cfg


async def start(ctl: Controller, cfg: Config, request: CompareRequest) -> CompareRun:
    setup = resolve(cfg, request)

    async def restart(name: str, serve: ModelConfig | None) -> None:
        await ctl.restart(name, serve=serve)

    gate = launch.gate_for(setup, [ctl], cfg.ui.refresh_s)
    return await start_comparison(setup, ctl.model_url, gate, served=ctl.served, restart=restart)


async def serving_options(ctl: Controller) -> dict[str, object]:
    served = await ctl.served("glm")
    assert served is not None and served.server_argv is not None
    return serve_options(served.server_argv)


async def test_a_sweep_runs_one_arm_per_flag_set_and_restores_the_model(
    sim_pod: SimPod, tmp_path: Path
) -> None:
    ctl, cfg = await controller(sim_pod)
    try:
        path = sweep_file(
            tmp_path,
            "[[flags]]\nmax_num_seqs = 1\n"
            "[[flags]]\nmax_num_seqs = 4\n"
            "[[flags]]\nmax_num_seqs = 4\nspeculative_tokens = 3\n",
        )
        out = tmp_path / "run"
        run = await start(
            ctl, cfg, CompareRequest(documents=(page(tmp_path),), out=str(out), serve_sweep=path)
        )
        done = await run.wait()
        assert done.exit_code == 0, done.error

        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        arms = ["glm[max_num_seqs=1]", "glm[max_num_seqs=4]", "glm[mtp=3 max_num_seqs=4]"]
        assert list(summary["models"]) == arms
        assert [a["name"] for a in summary["serve_sweep"]["arms"]] == arms
        m = {name: summary["models"][name] for name in arms}
        # Each arm ran on a server started with its flags (read back from its argv).
        argv = {name: serve_options(m[name]["arm"]["serve_argv"]) for name in arms}
        assert [argv[n]["--max-num-seqs"] for n in arms] == ["1", "4", "4"]
        assert "--speculative-config" not in argv[arms[0]]
        assert json_option(argv[arms[2]], "--speculative-config") == {
            "method": "mtp",
            "num_speculative_tokens": 3,
        }
        assert "MTP 3" in m[arms[2]]["arm"]["label"]
        for name in arms:
            assert m[name]["pages_ok"] == 1 and m[name]["pages_failed"] == 0
        # The flags change speed the way they do in vLLM: 4 sequences at once serve 4
        # concurrent requests ~4x faster than 1; MTP's accepted drafts cut decode time.
        rate = {n: m[n]["throughput_imgs_per_s"] for n in arms}
        assert rate[arms[1]] > 2 * rate[arms[0]]
        p50 = {n: m[n]["speed"]["throughput@4"]["latency_p50_s"] for n in arms}
        assert p50[arms[2]] < p50[arms[1]]
        # Time per output token, prefill and HTTP aside: 1.3 / 2.53 of a plain step's.
        tpot = {n: m[n]["streaming"]["throughput@4"]["median_tpot_ms"] for n in arms}
        assert tpot[arms[2]] < 0.75 * tpot[arms[1]]
        accepted = m[arms[2]]["server"]["throughput@4"]["spec_decode"]["acceptance"]
        assert accepted == pytest.approx((0.7 + 0.49 + 0.343) / 3, abs=0.01)

        md = (out / "report.md").read_text(encoding="utf-8")
        section = md.split("## Serve sweep", 1)[1].split("\n## ", 1)[0]
        rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| glm[")]
        assert [r[0].removeprefix("| ") for r in rows] == arms
        # max_num_seqs=1 is beaten on both axes; MTP 3 is the fastest at every point.
        assert [r[6].strip() for r in rows] == ["", "", "yes"]
        html = (out / "report.html").read_text(encoding="utf-8")
        assert 'id="serve-sweep"' in html and "Pareto front ringed" in html

        # Back on the configured flags.
        now = await serving_options(ctl)
        assert now["--max-num-seqs"] == "16" and "--speculative-config" not in now
    finally:
        await ctl.close()


async def test_a_flag_set_that_cannot_start_a_cancel_and_a_resume_restore_the_model(
    sim_pod: SimPod, tmp_path: Path
) -> None:
    ctl, cfg = await controller(sim_pod)
    try:
        path = sweep_file(
            tmp_path,
            '[[flags]]\nname = "huge"\nmax_model_len = 100000000\n'
            "[[flags]]\nspeculative_tokens = 1\n",
        )
        out = tmp_path / "run"
        run = await start(
            ctl, cfg, CompareRequest(documents=(page(tmp_path),), out=str(out), serve_sweep=path)
        )
        stopped: list[ModelStopped] = []
        async for ev in run.subscribe():
            if isinstance(ev, ModelStopped):
                stopped.append(ev)
            if isinstance(ev, PhaseDone) and (ev.model, ev.phase) == ("glm[mtp=1]", "warm"):
                served = await serving_options(ctl)  # the second flag set is being measured
                assert json_option(served, "--speculative-config") == {
                    "method": "mtp",
                    "num_speculative_tokens": 1,
                }
                run.cancel()
            if isinstance(ev, RunDone):
                break
        done = await run.wait()
        assert done.cancelled
        assert [e.model for e in stopped] == ["glm[huge]"]
        assert stopped[0].reason.startswith("could not serve its flags: glm failed to start")
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        assert summary["models"]["glm[huge]"]["error"] == stopped[0].reason

        snap = ctl.snapshot.model("glm")
        assert snap is not None and snap.state == "ready"
        now = await serving_options(ctl)
        assert now["--max-num-seqs"] == "16" and "--speculative-config" not in now
        assert now["--max-model-len"] == "8192"

        # --resume takes the sweep from run.json: each flag set is served again and measures
        # only what the run lacks.
        again = await start(ctl, cfg, CompareRequest(resume=str(out)))
        events = [ev async for ev in again.subscribe()]
        await again.wait()
        done_phases = [(e.phase, e.skipped) for e in events
                       if isinstance(e, PhaseDone) and e.model == "glm[mtp=1]"]  # fmt: skip
        assert done_phases == [
            ("cold", True),
            ("warm", True),
            ("throughput", False),
            ("documents", False),
        ]
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        resumed = summary["models"]["glm[mtp=1]"]
        assert resumed["pages_ok"] == 1 and "MTP 1" in resumed["arm"]["label"]
        assert summary["models"]["glm[huge]"]["error"].startswith("could not serve its flags")
        now = await serving_options(ctl)
        assert now["--max-num-seqs"] == "16" and "--speculative-config" not in now
    finally:
        await ctl.close()


# The command's wiring (its restart, the terminal's lines, SIGINT) on top of the cancel test
# above: ./dev test runs it, the fast lane does not (40 s of simulator starts).
@pytest.mark.slow
def test_ctrl_c_during_a_sweep_of_the_command_serves_the_configured_flags_again(
    sim_pod: SimPod, tmp_path: Path
) -> None:
    fields = sim_pod.pod_fields()
    cfg = tmp_path / "ocrtui.toml"
    cfg.write_text(
        f"""
[pod]
kind = "local"
workdir = "{fields["workdir"]}"
vllm_command = ["{fields["vllm_command"][0]}"]
sim_gpu = "{fields["sim_gpu"]}"
agent_interval_s = 0.25
[ui]
refresh_s = 0.25
[[models]]
name = "glm"
model = "zai-org/GLM-OCR"
port = {free_port()}
gpu_memory_utilization = 0.4
max_model_len = 8192
profile = "glm-ocr"
ready_timeout_s = 60.0
extra_args = {json.dumps([*SIM_FLAGS, *SPEED])}
[compare]
warm_runs = 3
throughput_requests = 4
concurrency = 2
""",
        encoding="utf-8",
    )
    # The second flag set decodes slowly (its pages take seconds): Ctrl-C lands inside it.
    path = sweep_file(
        tmp_path,
        "[[flags]]\nmax_num_seqs = 2\n"
        '[[flags]]\nname = "slow-mtp1"\nspeculative_tokens = 1\n'
        'extra_args = ["--sim-per-token-s", "0.2"]\n',
    )
    log = tmp_path / "log.txt"
    argv = ["--config", str(cfg), "compare", "--serve-sweep", path, page(tmp_path)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ocrtui", *argv, "--out", str(tmp_path / "run")],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A suite started as a background job inherits SIGINT ignored: give it back.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        # The model was down: the sweep starts it for each flag set. Ctrl-C once the second
        # flag set's server answered its first page.
        deadline = time.monotonic() + 120
        while "glm[slow-mtp1]: cold:" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    text = log.read_text(errors="replace")
    assert "--serve-sweep runs headless" in text
    # The last server started is the configured one, and it is still serving.
    pid = int(re.findall(r"glm: started pid (\d+)", text)[-1])
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    finally:
        os.killpg(pid, signal.SIGKILL)  # the server leads its group; the test leaves none
    assert b"--speculative-config" not in cmdline
    assert cmdline[cmdline.index(b"--max-num-seqs") + 1] == b"16"
    words = " ".join(text.split())  # Rich wraps long lines at 80 columns off a terminal
    assert "glm: restarting with its configured flags" in words
    assert "interrupted; continue with: ocrtui compare --resume" in words
