"""The preflight reads the versions the launch will import (the vllm_command's interpreter
with the model's own PYTHONPATH) and refuses a known-bad combination before launching;
``up`` goes on with the models after a refused one and names it at the end."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ocrtui.control import Controller
from ocrtui.errors import LifecycleError
from tests.plugins.sim_pod import SIM_FLAGS, SimPod, progress_log

pytestmark = pytest.mark.timeout(90)


def site_with(root: Path, packages: dict[str, str]) -> Path:
    """A folder of bare dist-infos: what importlib.metadata reads first on a PYTHONPATH."""
    for name, version in packages.items():
        info = root / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return root


@pytest.mark.parametrize("transport", ["local"])
async def test_a_known_bad_transformers_on_the_models_pythonpath_is_refused_before_launch(
    make_controller: Callable[..., Any], sim_pod: SimPod, tmp_path: Path
) -> None:
    # The shim's interpreter, as a venv has it beside its vllm script.
    python = sim_pod.shim.parent / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    pins = site_with(
        tmp_path / "pins",
        {"vllm": "0.26.0", "transformers": "5.17.0", "mistral_common": "1.8.5"},
    )
    lighton = sim_pod.model(
        "lighton",
        model="lightonai/LightOnOCR-2-1B",
        profile="lighton-ocr",
        start_order=1,
        env={"PYTHONPATH": str(pins)},
    )
    glm = sim_pod.model("glm", start_order=2, extra_args=list(SIM_FLAGS))
    ctl: Controller = await make_controller(lighton, glm)
    steps, progress = progress_log()
    with pytest.raises(LifecycleError) as refused:
        await ctl.up(progress)
    assert refused.value.message.startswith(
        "lighton (transformers 5.17.0): transformers 5.17 renamed PixtralRotaryEmbedding"
    )
    assert refused.value.hint and "transformers 5.16.1" in refused.value.hint
    # Refused before any launch; the model after it started all the same.
    assert not any(name == "lighton" and step.startswith("launching") for name, step in steps)
    assert any(name == "lighton" and step.startswith("failed: ") for name, step in steps)
    assert ctl.snapshot.model("lighton").state == "down"  # type: ignore[union-attr]
    assert ctl.snapshot.model("glm").state == "ready"  # type: ignore[union-attr]
