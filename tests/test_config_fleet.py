"""[[pods]]: several pods in one file, each validated as a [pod] file, errors naming the pod."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrtui.config import Fleet, load_config, load_fleet
from ocrtui.errors import ConfigError
from ocrtui.sim.demo import demo_pods

TWO_PODS = """
[compare]
concurrency = 3

[[pods]]
name = "a40"
kind = "local"

[[pods.models]]
name = "glm-ocr"
model = "zai-org/GLM-OCR"
port = 8000
gpu_memory_utilization = 0.4

[[pods.services]]
name = "api"
command = ["python3", "-m", "http.server", "9000"]
port = 9000

[[pods]]
name = "h100"
kind = "ssh"
host = "h100.example.invalid"

[[pods.models]]
name = "lighton-ocr"
model = "lightonai/LightOnOCR-2-1B"
port = 8000
gpu_memory_utilization = 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ocrtui.toml"
    p.write_text(text)
    return p


def test_two_pods_each_with_its_models_services_and_the_shared_sections(tmp_path: Path) -> None:
    fleet = load_fleet(write(tmp_path, TWO_PODS))
    assert fleet.several and fleet.listed
    assert fleet.names == ("a40", "h100")
    a40, h100 = fleet.pods
    assert [m.name for m in a40.models] == ["glm-ocr"] and [s.name for s in a40.services] == ["api"]
    assert [m.name for m in h100.models] == ["lighton-ocr"] and h100.services == ()
    assert a40.compare.concurrency == h100.compare.concurrency == 3
    assert fleet.owner("lighton-ocr") is h100 and fleet.owner("api") is a40
    assert fleet.only("h100").pods == (h100,)
    # The same port on two pods is two servers: the comparison sees both models.
    assert [m.name for m in fleet.arms_config().models] == ["glm-ocr", "lighton-ocr"]


def test_a_pod_file_is_a_fleet_of_one(tmp_path: Path) -> None:
    text = TWO_PODS.split('[[pods]]\nname = "h100"')[0]
    one = text.replace('[[pods]]\nname = "a40"', '[pod]\nname = "a40"').replace("[[pods.", "[[")
    fleet = load_fleet(write(tmp_path, one))
    assert not fleet.several and not fleet.listed
    assert load_config(tmp_path / "ocrtui.toml") is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("port = 8000\ngpu_memory_utilization = 0.5", "port = 0\ngpu_memory_utilization = 0.5"),
            r"pods\[1\] \(h100\): models\[0\]\.port",
        ),
        (
            ('name = "lighton-ocr"', 'name = "glm-ocr"'),
            r"pods\[1\] \(h100\): 'glm-ocr' is also on pods\[0\] \(a40\)",
        ),
        (('name = "h100"', 'name = "a40"'), r"pods\[1\] \(a40\)\.name duplicates pods\[0\]"),
        (('name = "h100"\n', ""), r"pods\[1\]\.name: every \[\[pods\]\] entry needs a name"),
        (
            ('host = "h100.example.invalid"', 'hots = "x"'),
            r"pods\[1\] \(h100\): pod\.hots: unknown key",
        ),
    ],
)
def test_errors_name_the_pod(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_fleet(write(tmp_path, TWO_PODS.replace(*change)))


def test_pod_beside_pods_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pod: with \[\[pods\]\]"):
        load_fleet(write(tmp_path, '[pod]\nkind = "local"\n' + TWO_PODS))


def test_load_config_asks_which_pod(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"lists 2 pods \(a40, h100\): name one"):
        load_config(write(tmp_path, TWO_PODS))


def test_the_two_pod_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    one, two = demo_pods(2)
    assert (one.pod.label, two.pod.label) == ("demo", "demo-2")
    assert len(one.models) == len(two.models) == 1
    assert one.pod.sim_gpu != two.pod.sim_gpu and one.pod.workdir != two.pod.workdir
    gpu = json.loads((Path(str(two.pod.sim_gpu)) / "device.json").read_text())
    assert "H100" in gpu["name"]
    fleet = Fleet((one, two), listed=True)
    assert fleet.owner(two.models[0].name) is two
    assert demo_pods(1)[0].models == (*one.models, *two.models)


def test_each_pod_has_its_own_provider(tmp_path: Path) -> None:
    text = TWO_PODS.replace(
        'host = "h100.example.invalid"\n',
        'host = "h100.example.invalid"\n\n[pods.provider]\npreset = "vastai"\npod_id = "42"\n',
    )
    a40, h100 = load_fleet(write(tmp_path, text)).pods
    assert a40.pod.provider is None
    assert h100.pod.provider is not None and h100.pod.provider.pod_id == "42"


def test_a_routed_model_belongs_to_its_pod(tmp_path: Path) -> None:
    """The comparison reaches a model behind its router through the pod that owns it (the
    headless compare goes through FleetController.owner), one pod or several."""
    routed = TWO_PODS.replace(
        "gpu_memory_utilization = 0.5\n",
        "gpu_memory_utilization = 0.5\nreplicas = [{ port = 8010 }, { port = 8011 }]\n",
    )
    fleet = load_fleet(write(tmp_path, routed))
    h100 = fleet.pods[1]
    assert [m.name for m in h100.routed] == ["lighton-ocr"]
    assert fleet.owner("lighton-ocr") is h100
    assert fleet.owner("lighton-ocr-r1") is h100 and fleet.owner("lighton-ocr-router") is h100


def test_a_replica_on_another_pod_is_refused_with_the_reason(tmp_path: Path) -> None:
    """The router reaches its replicas on its own pod's loopback: a replica naming another
    pod is one line saying so (docs/lifecycle.md#replicas-across-pods), not "unknown key"."""
    across = TWO_PODS.replace(
        "gpu_memory_utilization = 0.5\n",
        'gpu_memory_utilization = 0.5\nreplicas = [{ port = 8010 }, { port = 8011, pod = "a40" }]'
        "\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_fleet(write(tmp_path, across))
    assert str(caught.value) == (
        f"{tmp_path / 'ocrtui.toml'}: pods[1] (h100): models[0].replicas[1]: replicas across "
        "pods are not supported: the router reaches its replicas on its own pod's 127.0.0.1; "
        "serve the model on each pod as its own arm (docs/lifecycle.md#replicas-across-pods)"
    )
