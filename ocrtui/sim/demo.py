"""The built-in demo pod: this machine, a simulated A40 and two simulated vLLM servers.

The servers are started by the lifecycle layer through the same code as real vLLM (only
``vllm_command`` differs), detached, so they outlive the dashboard. They are named for the
OCR engine that really answers (``demo-rapidocr``, ``demo-tesseract``), while the model ids
and request profiles are the seed's, so memory, prompts and context lengths behave like
GLM-OCR and LightOnOCR-2. Ports 18000/18001 never clash with a real vLLM on 8000/8001.

``demo_pods(2)`` (``ocrtui demo --pods 2``) is the same two servers on two pods of this
machine, one each, the second with a simulated H100 of its own: the fleet screen and a
comparison with its arms on different pods, without a second machine.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import platformdirs

from ocrtui.config import CompareConfig, Config, ModelConfig, PodConfig
from ocrtui.sim.gpu import SimGpu

STARTUP_S = "3"
H100_MIB = 81559  # what nvidia-smi reports for an H100 80GB HBM3
_ENV = {"PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True"}


def demo_dir() -> Path:
    return Path(platformdirs.user_state_dir("ocrtui")) / "demo"


def _sim_args(engine: str) -> tuple[str, ...]:
    # The simulated GPU reaches the servers as $OCRTUI_SIM_GPU, set by the lifecycle layer
    # from pod.sim_gpu for every server it launches. Loopback only: like vLLM, the simulator
    # listens on all interfaces unless told otherwise.
    return ("--host", "127.0.0.1", "--engine", engine, "--sim-startup-s", STARTUP_S)


def demo_config() -> Config:
    workdir = demo_dir()
    gpu_dir = workdir / "gpu"
    if not (gpu_dir / "device.json").is_file():
        SimGpu.create(gpu_dir)
    glm = ModelConfig(
        name="demo-rapidocr",
        model="zai-org/GLM-OCR",
        port=18000,
        gpu_memory_utilization=0.40,
        max_num_seqs=16,
        # GLM-OCR's default context (131072) needs far more KV cache than a page does.
        max_model_len=16384,
        profile="glm-ocr",
        env=_ENV,
        extra_args=_sim_args("rapidocr"),
        ready_timeout_s=120.0,
    )
    # LightOnOCR-2 served the way its model card says; tesseract when it is installed.
    second_engine = "tesseract" if shutil.which("tesseract") else "rapidocr"
    lighton = ModelConfig(
        name="demo-tesseract" if second_engine == "tesseract" else "demo-rapidocr-2",
        model="lightonai/LightOnOCR-2-1B",
        port=18001,
        gpu_memory_utilization=0.55,
        max_num_seqs=16,
        profile="lighton-ocr",
        env=_ENV,
        extra_args=(
            "--limit-mm-per-prompt",
            '{"image": 1}',
            "--mm-processor-cache-gb",
            "0",
            "--no-enable-prefix-caching",
            *_sim_args(second_engine),
        ),
        ready_timeout_s=120.0,
    )
    pod = PodConfig(
        kind="local",
        name="demo",
        workdir=str(workdir),
        vllm_command=(sys.executable, "-m", "ocrtui", "sim-vllm"),
        sim_gpu=str(gpu_dir),
    )
    # CPU OCR is slow: fewer warm runs and throughput requests than on a GPU.
    compare = CompareConfig(warm_runs=3, throughput_requests=5)
    return Config(pod=pod, models=(glm, lighton), compare=compare)


def demo_pods(count: int) -> tuple[Config, ...]:
    """The demo as one pod (both servers) or two (one server each)."""
    one = demo_config()
    if count == 1:
        return (one,)
    first, second = one.models
    workdir = demo_dir() / "pod-2"
    gpu_dir = workdir / "gpu"
    if not (gpu_dir / "device.json").is_file():
        SimGpu.create(gpu_dir, name="NVIDIA H100 80GB HBM3 (simulated)", total_mib=H100_MIB)
    pod = one.pod.model_copy(
        update={"name": "demo-2", "workdir": str(workdir), "sim_gpu": str(gpu_dir)}
    )
    return (
        one.model_copy(update={"models": (first,)}),
        Config(pod=pod, models=(second,), compare=one.compare),
    )
