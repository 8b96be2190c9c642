"""The simulator against real vLLM 0.32's recorded output (ocrtui/sim/fidelity.py).

Every difference must be a deliberate one listed in ``fidelity.KNOWN`` (and shown in
docs/sim.md); a new difference, or a listed one that went away, fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ocrtui.sim import fidelity

FIXTURES = Path(__file__).parent / "fixtures" / "real-0.32"
DOCS = Path(__file__).parents[2] / "docs" / "sim.md"


@pytest.mark.timeout(180)
def test_simulator_matches_recorded_real_vllm(tmp_path: Path) -> None:
    real = fidelity.recorded(FIXTURES)
    sim = fidelity.observe(
        [sys.executable, "-m", "ocrtui", "sim-vllm"], tmp_path, flags=fidelity.SIM_FLAGS
    )
    diffs = fidelity.compare(real, sim)
    new = {key: what for key, what in diffs.items() if key not in fidelity.KNOWN}
    stale = [key for key in fidelity.KNOWN if key not in diffs]
    assert new == {}, "new differences from real vLLM 0.32"
    assert stale == [], "listed as known but no longer different: drop from KNOWN and docs"


def test_recorded_reference_reads_the_real_shapes() -> None:
    real = fidelity.recorded(FIXTURES)
    assert [title for _, title in real.tree] == [
        "vllm serve ...",
        "VLLM::EngineCore",
        "VLLM::Worker",
        "python -c from multiprocessing.resource_tracker import main;main(N)",
    ]
    assert len(real.metrics) == 92
    assert real.http["err_unknown_model"]["code"] == 404
    assert ("uvicorn ready", "") in real.startup  # uvicorn's lines are bare in 0.32


def test_known_differences_are_documented() -> None:
    docs = DOCS.read_text()
    missing = [key for key in fidelity.KNOWN if f"`{key}`" not in docs]
    assert missing == []
