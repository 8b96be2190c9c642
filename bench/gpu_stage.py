"""Stage real vLLM 0.26.0 and ocrtui's dependencies for the lent GPU machine (no network there).

Run here (a machine that reaches PyPI), from the repo root::

    python3 bench/gpu_stage.py STAGE_DIR

It downloads vLLM 0.26.0 (its torch 2.11.0 matches the GPU machine's) and the wheels it and
ocrtui import that the GPU machine's image lacks (its package list: the device tool's
KINDS.md), for CPython 3.12 x86-64, installs them into ``STAGE_DIR/site`` with ``--target``,
drops the parts vLLM imports only optionally (FA2 and MoE kernels, the Rust frontend,
deep_gemm builds for other Pythons), packs ``site.tar.xz`` and splits it into parts small
enough for one device call each (``STAGE_DIR/parts/a/part0``, ``b/part1``, ...). On the GPU
machine: ``cat part* > site.tar.xz``, check the printed sha256, ``tar -xJf`` in ``/tmp``
(it holds ``site/`` and ``lighton-site/``) and put ``/tmp/site`` first on ``PYTHONPATH``.

``mistral_common`` stays out of the shared site on purpose: when it is importable, transformers
5.17 routes vLLM's structured-output import through it and the server dies at start-up
(``Could not import module 'MistralCommonBackend'``; seen on the H200). LightOnOCR-2 needs it
(vLLM 0.26.0's ``pixtral.py`` imports it at module level) and a transformers that still has
``PixtralRotaryEmbedding`` (5.16.1; 5.17.0 renamed it), so those go to a second site,
``STAGE_DIR/lighton-site``, which the LightOnOCR-2 server alone puts first on its
``PYTHONPATH`` (the model's ``env`` in the config). It is packed as its own part.

The machine's own triton 3.6.0 is kept: xgrammar 0.2.9 requires triton 3.9.0 (996 MB
unpacked), which would shadow it, so ``triton`` (and the gRPC and fontTools packages that
nothing on the serving path imports) are removed from the site before packing.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

VLLM = "vllm==0.26.0"
# What vLLM 0.26.0 imports when serving a dense text model (found on the H200), and ocrtui's
# runtime dependencies; their own requirements are followed below.
WANTED = [
    VLLM,
    "fastapi==0.136.3",
    "starlette==1.3.1",
    "pydantic==2.13.4",
    "openai==2.48.0",
    "openai-harmony==0.0.8",
    "uvicorn==0.51.0",
    "httptools",
    "websockets",
    "python-dotenv",
    "cachetools",
    "msgspec",
    "pyzmq",
    "cbor2",
    "pybase64",
    "partial-json-parser",
    "watchfiles",
    "blake3",
    "model-hosting-container-standards==0.1.16",
    "python-multipart",
    "depyf==0.20.0",
    "prometheus-fastapi-instrumentator",
    "python-json-logger",
    "ijson",
    "llguidance==1.7.6",
    "xgrammar==0.2.9",
    "apache-tvm-ffi==0.1.15",
    "outlines_core==0.2.14",
    "setproctitle",
    "lark==1.2.2",
    "lm-format-enforcer==0.11.3",
    "compressed-tensors==0.17.0",
    "gguf",
    "diskcache",
    "textual",
    "pypdfium2",
    "asyncssh",
    "tomli-w",
    "platformdirs",
    "rapidfuzz",
    "fpdf2",
    "nvitop",
    "cryptography",
    "cffi",
    "jinja2",
    "packaging",
    # ocrtui's scoring (compare/tables.py, formulas.py, page_tests.py); lxml is on the machine.
    "apted",
    "pylatexenc",
    "fuzzysearch",
]
# LightOnOCR-2's own site (see the docstring): a transformers with PixtralRotaryEmbedding, and
# mistral_common with what it needs beyond the machine's image (jsonschema too: the image
# lacks it, and without it LightOnOCR-2 died at import on the GPU run).
LIGHTON_WANTED = [
    "transformers==5.16.1",
    "mistral-common",
    "pydantic-extra-types",
    "pycountry",
    "jsonschema",
    "jsonschema-specifications",
    "referencing",
    "rpds-py",
]
# Installed by a requirement but shadowing the machine's own, or never imported when serving.
DROPPED = ["triton", "triton-*.dist-info", "grpc", "grpcio-*.dist-info", "fontTools"]
# Already on the GPU machine's image, or optional for a text model on Hopper.
ON_DEVICE = set(
    [
        "torch",
        "torchaudio",
        "torchvision",
        "torchcodec",
        "pynvvideocodec",
        "flashinfer-python",
        "tilelang",
        "nvidia-cutlass-dsl",
        "quack-kernels",
        "tokenspeed-mla",
        "humming-kernels",
        "fastsafetensors",
        "nvidia-cudnn-frontend",
        "anthropic",
        "mcp",
        "mistral-common",
        "pydantic-extra-types",
        "numpy",
        "pillow",
        "transformers",
        "tokenizers",
        "safetensors",
        "huggingface-hub",
        "requests",
        "tqdm",
        "regex",
        "psutil",
        "sentencepiece",
        "tiktoken",
        "py-cpuinfo",
        "protobuf",
        "aiohttp",
        "pyyaml",
        "six",
        "setuptools",
        "einops",
        "cloudpickle",
        "numba",
        "ninja",
        "filelock",
        "typing-extensions",
        "opencv-python-headless",
        "prometheus-client",
        "httpx",
        "httpcore",
        "anyio",
        "h11",
        "idna",
        "certifi",
        "rich",
        "markdown-it-py",
        "mdurl",
        "pygments",
        "nvidia-ml-py",
        "matplotlib",
        "markupsafe",
    ]
)
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (5, 17, 24, 26, 27, 28, 31, 34, 35)] + [
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
OPTIONAL_PARTS = [
    "vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so",
    "vllm/_moe_C_stable_libtorch.abi3.so",
    "vllm/vllm-rs",
]
PART_BYTES = 52_000_000


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.lower())


def requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    reqs = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:") or "extra ==" in line:
            continue
        req = line.split(":", 1)[1].strip()
        marker = req.partition(";")[2].replace(" ", "")
        if any(m in marker for m in ('python_version<"3.', "sys_platform=='win32'", "Windows")):
            continue
        if 'implementation_name=="pypy"' in marker.lower():
            continue
        reqs.append(req.partition(";")[0].strip())
    return reqs


def download(specs: list[str], wheels: Path, follow: bool = True) -> None:
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    seen: set[str] = set()
    queue = list(specs)
    while queue:
        spec = queue.pop(0)
        name = norm(re.split(r"[<>=!~\[ (]", spec)[0])
        if name in seen or (follow and name in ON_DEVICE):
            continue
        seen.add(name)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.12", "--implementation", "cp", *plat, "-d", str(wheels),
             spec],
            check=True,
        )  # fmt: skip
        if not follow:
            continue
        for wheel in wheels.glob("*.whl"):
            if norm(wheel.name.split("-")[0]) == name:
                queue.extend(requirements(wheel))


def install(wheels: Path, site: Path) -> None:
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    shutil.rmtree(site, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
         "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", *plat,
         "--target", str(site), *map(str, sorted(wheels.glob("*.whl")))],
        check=True,
    )  # fmt: skip


def pack(stage: Path, folders: list[str], packed: Path) -> bytes:
    with packed.open("wb") as out:
        tar = subprocess.Popen(
            ["tar", "-cf", "-", "-C", str(stage), *folders], stdout=subprocess.PIPE
        )
        subprocess.run(["xz", "-T0", "-9"], stdin=tar.stdout, stdout=out, check=True)
        if tar.wait() != 0:
            raise SystemExit("tar failed")
    data = packed.read_bytes()
    print(f"{packed}: {len(data) / 1e6:.1f} MB, sha256 {hashlib.sha256(data).hexdigest()}")
    return data


def main() -> int:
    stage = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-stage")
    wheels, site = stage / "wheels", stage / "site"
    wheels.mkdir(parents=True, exist_ok=True)
    download(WANTED, wheels)
    install(wheels, site)
    for part in OPTIONAL_PARTS:
        (site / part).unlink(missing_ok=True)
    for other in (site / "vllm/third_party/deep_gemm").glob("_C.cpython-3*"):
        if "cpython-312" not in other.name:
            other.unlink()
    for pattern in DROPPED:
        for path in site.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    lighton_wheels = stage / "lighton-wheels"
    lighton_wheels.mkdir(exist_ok=True)
    download(LIGHTON_WANTED, lighton_wheels, follow=False)
    install(lighton_wheels, stage / "lighton-site")
    data = pack(stage, ["site", "lighton-site"], stage / "site.tar.xz")
    parts = stage / "parts"
    shutil.rmtree(parts, ignore_errors=True)
    for i in range(0, len(data), PART_BYTES):
        n = i // PART_BYTES
        folder = parts / chr(ord("a") + n)
        folder.mkdir(parents=True)
        (folder / f"part{n}").write_bytes(data[i : i + PART_BYTES])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
