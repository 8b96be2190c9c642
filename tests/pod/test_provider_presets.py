"""The [pod.provider] presets for runpodctl and vastai, against their recorded outputs
(tests/pod/provider_outputs/, sources in SOURCES.md) printed by fake CLIs on PATH."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from ocrtui.cli import main
from ocrtui.config import Config, ModelConfig, ProviderConfig, parse_config
from ocrtui.control import Controller
from ocrtui.errors import ConfigError
from ocrtui.headless import format_status
from ocrtui.pod.provider import (
    NO_FREE_GPU_HINT,
    ProviderCommandError,
    ProviderState,
    provider_start,
    provider_state,
)
from ocrtui.status import PodStatus, Snapshot
from tests.plugins.sim_pod import SimPod
from tests.plugins.sshd import Sshd

pytestmark = pytest.mark.timeout(60)

OUTPUTS = Path(__file__).parent / "provider_outputs"
MODEL = {"name": "m", "model": "x", "port": 8000, "gpu_memory_utilization": 0.5}

# One fake for both tools: `get`/`show` print the recorded output of the current state
# (a file beside it); `start` flips it to running, or fails as RunPod does when the host
# has no free GPU (a `no-free-gpu` file beside it). Every argv is logged.
FAKE_CLI = """\
import json, pathlib, sys
here = pathlib.Path(__file__).parent
tool = pathlib.Path(__file__).name
with (here / "calls.log").open("a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
state = (here / "state").read_text()
if "start" in sys.argv[1:3]:
    if (here / "no-free-gpu").exists():
        sys.stderr.write((here / "no_free_gpu.txt").read_text())
        sys.exit(1)
    (here / "state").write_text("running")
    print("starting instance" if tool == "vastai" else "pod started")
else:
    print((here / f"{tool}_{state}.json").read_text())
"""


def preset(name: str, pod_id: str, **keys: object) -> ProviderConfig:
    return ProviderConfig.model_validate({"preset": name, "pod_id": pod_id, **keys})


class FakeCli:
    def __init__(self, bin_dir: Path) -> None:
        self.dir = bin_dir

    def calls(self) -> list[list[str]]:
        log = self.dir / "calls.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def running_output(self, tool: str) -> dict[str, object]:
        body: dict[str, object] = json.loads((self.dir / f"{tool}_running.json").read_text())
        return body

    def set_running_output(self, tool: str, body: dict[str, object]) -> None:
        (self.dir / f"{tool}_running.json").write_text(json.dumps(body))


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, get in (("runpodctl", "runpodctl_pod_get"), ("vastai", "vastai_show_instance")):
        script = bin_dir / tool
        script.write_text(f"#!{sys.executable}\n{FAKE_CLI}")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        for state in ("running", "exited"):
            shutil.copy(OUTPUTS / f"{get}_{state}.json", bin_dir / f"{tool}_{state}.json")
    shutil.copy(OUTPUTS / "runpodctl_pod_start_no_free_gpu.txt", bin_dir / "no_free_gpu.txt")
    (bin_dir / "state").write_text("exited")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return FakeCli(bin_dir)


def test_a_preset_fills_the_commands_with_the_id_and_keeps_what_the_config_sets() -> None:
    cfg = preset("runpodctl", "a1b2c3example")
    assert cfg.status_command == ("runpodctl", "pod", "get", "a1b2c3example")
    assert cfg.start_command == ("runpodctl", "pod", "start", "a1b2c3example")
    cfg = preset("vastai", "12345678", timeout_s=5, start_command=("x",))
    assert cfg.status_command == ("vastai", "show", "instance", "12345678", "--raw")
    assert cfg.start_command == ("x",) and cfg.timeout_s == 5


def test_a_preset_without_its_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="preset 'vastai' needs 'pod_id'"):
        parse_config(
            {"pod": {"kind": "local", "provider": {"preset": "vastai"}}, "models": [MODEL]},
            "t.toml",
        )


async def test_runpodctl_stopped_then_started_with_its_ssh_address_and_price(
    fake_cli: FakeCli,
) -> None:
    cfg = preset("runpodctl", "a1b2c3example")
    stopped = await provider_state(cfg)
    # A stopped pod has an `ssh` block with an error and no price: nothing is made up.
    assert stopped == ProviderState("stopped", "desiredStatus = EXITED")
    started = await provider_start(cfg)
    assert started == ProviderState(
        "running",
        "desiredStatus = RUNNING",
        ssh_host="203.0.113.17",
        ssh_port=22041,
        price_per_hr=0.44,
    )
    assert fake_cli.calls() == [
        ["pod", "get", "a1b2c3example"],
        ["pod", "start", "a1b2c3example"],
        ["pod", "get", "a1b2c3example"],
    ]


async def test_vastai_stopped_then_started_with_its_ssh_address_and_price(
    fake_cli: FakeCli,
) -> None:
    cfg = preset("vastai", "12345678")
    stopped = await provider_state(cfg)
    assert (stopped.state, stopped.ssh_port, stopped.price_per_hr) == ("stopped", 31542, 0.0124)
    started = await provider_start(cfg)
    assert started == ProviderState(
        "running",
        "actual_status = running",
        ssh_host="ssh4.vast.ai",
        ssh_port=31542,
        price_per_hr=0.3416666666666667,
    )
    assert fake_cli.calls()[1] == ["start", "instance", "12345678"]


async def test_no_free_gpu_on_the_host_is_a_start_failure_with_its_meaning(
    fake_cli: FakeCli,
) -> None:
    (fake_cli.dir / "no-free-gpu").touch()
    cfg = preset("runpodctl", "a1b2c3example")
    with pytest.raises(ProviderCommandError) as failed:
        await provider_start(cfg)
    assert failed.value.hint == NO_FREE_GPU_HINT
    assert "not enough free GPUs" in failed.value.message


def write_config(tmp_path: Path, provider: str) -> Path:
    path = tmp_path / "ocrtui.toml"
    path.write_text(
        '[pod]\nhost = "pod.invalid"\n'
        f"[pod.provider]\n{provider}\n"
        '[[models]]\nname = "m"\nmodel = "x"\nport = 8000\ngpu_memory_utilization = 0.5\n'
    )
    return path


def test_pod_start_prints_the_no_free_gpu_hint(
    fake_cli: FakeCli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (fake_cli.dir / "no-free-gpu").touch()
    path = write_config(tmp_path, 'preset = "runpodctl"\npod_id = "a1b2c3example"')
    assert main(["--config", str(path), "pod", "start"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"hint: {NO_FREE_GPU_HINT}"


def test_pod_status_line_gives_the_ssh_address_and_price(
    fake_cli: FakeCli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (fake_cli.dir / "state").write_text("running")
    path = write_config(tmp_path, 'preset = "vastai"\npod_id = "12345678"')
    assert main(["--config", str(path), "pod", "status"]) == 0
    assert capsys.readouterr().out == (
        "pod pod.invalid: running (actual_status = running); ssh ssh4.vast.ai:31542; $0.342/h\n"
    )


async def test_after_a_start_the_next_connect_goes_where_the_provider_says(
    fake_cli: FakeCli, sshd: Sshd
) -> None:
    # The pod came back on another port: the config's is closed, the provider knows the new.
    body = fake_cli.running_output("runpodctl")
    body["ssh"] = {**body["ssh"], "ip": sshd.host, "port": sshd.port}  # type: ignore[dict-item]
    fake_cli.set_running_output("runpodctl", body)
    provider = preset("runpodctl", "a1b2c3example")
    pod_config = sshd.pod_config(host="pod.invalid", port=1, provider=provider)
    config = Config(pod=pod_config, models=(ModelConfig.model_validate(MODEL),))
    ctl = Controller(config, pod=sshd.make_pod(host="pod.invalid", port=1))
    try:
        state = await ctl.start_pod()
        assert (state.state, state.ssh_port) == ("running", sshd.port)
        await ctl.pod.connect()
        result = await ctl.pod.run(["echo", "moved"])
        assert result.stdout == "moved\n"
        assert ctl.snapshot.pod.price_per_hr == 0.44
    finally:
        await ctl.close()


async def test_an_idle_pod_says_so_with_its_price(fake_cli: FakeCli, sim_pod: SimPod) -> None:
    (fake_cli.dir / "state").write_text("running")
    provider = {"preset": "runpodctl", "pod_id": "a1b2c3example", "idle_notice_min": 0.01}
    ctl = Controller(sim_pod.config(sim_pod.model("glm"), provider=provider))
    try:
        await ctl.start()
        # No model has had a request since the Controller began: idle past 0.6 s.
        snap = await ctl.wait_until(
            lambda s: s.pod.idle_notice is not None and s.pod.price_per_hr is not None, 20
        )
        assert snap.pod.idle_notice is not None and snap.pod.idle_notice.endswith("at $0.44/h")
        assert snap.pod.idle_s is not None and snap.pod.idle_s >= 0.6
        pod_json = snap.to_json()["pod"]
        assert pod_json["price_per_hr"] == 0.44 and pod_json["idle_notice"] == snap.pod.idle_notice
    finally:
        await ctl.close()


def test_status_text_gives_the_price_and_the_idle_notice() -> None:
    pod = PodStatus(
        "glm-ocr-a40",
        "connected",
        1.0,
        0.5,
        simulated_gpu=False,
        demo=False,
        price_per_hr=0.44,
        idle_notice="idle 31 min at $0.44/h",
    )
    first = format_status(Snapshot(pod, (), (), ())).splitlines()[0]
    assert first == "pod glm-ocr-a40: connected; $0.44/h; idle 31 min at $0.44/h"


async def test_vastai_scheduling_after_a_start_means_no_free_gpu(fake_cli: FakeCli) -> None:
    # vastai's start exits 0 whatever happens; the instance then waits in "scheduling".
    shutil.copy(
        OUTPUTS / "vastai_show_instance_scheduling.json", fake_cli.dir / "vastai_running.json"
    )
    state = await provider_start(preset("vastai", "12345678"))
    assert (state.state, state.hint) == ("stopped", NO_FREE_GPU_HINT)
    assert state.detail == "actual_status = scheduling"
