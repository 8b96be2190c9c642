"""Version and drift advisories: known-bad vLLM/transformers combinations, and serve flags or
request values that differ from what the models' makers publish.

* :func:`probe_pod` runs one command over the pod connection: ``ocrtui/agent/versions.py``
  (stdlib, source on stdin) under the pod's ``python``; it finds the interpreter the
  ``vllm_command`` runs (its shebang, or the venv's ``bin/python``), reads the vLLM,
  transformers, torch and mistral_common versions there with importlib.metadata, with the
  model's own ``PYTHON*`` variables (its ``PYTHONPATH``) set as the launch sets them, and,
  given the API server's pid, its argv. Any failure leaves the versions unknown, with the
  reason.
* :func:`advisories` is pure: the model's config, the versions (plus the running server's
  ``GET /version``) and the server's argv in, a list of :class:`Advisory` out. The same
  call runs before a launch (the preflight, on the planned argv: an advisory that
  ``refuses`` stops the start unless forced) and once a server runs (its card).
* The known-bad combinations are the recipes' ``known_bad`` (``ocrtui/published.py``):
  data, one entry per fact, each with its source. Versions are compared as PEP 440
  versions (``packaging``), so ``0.27.1+cu130`` matches ``==0.27.1``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ocrtui.config import ModelConfig, PodConfig
from ocrtui.pod.base import Pod, PodConnectionLost
from ocrtui.published import (
    ABSENT,
    PRESETS,
    PROFILES,
    SDK_PR_239,
    Flag,
    KnownBad,
    ServeOption,
    Source,
)
from ocrtui.status import AdvisoryStatus
from ocrtui.vllm.flags import json_option, recipe_for, serve_options

Severity = Literal["warning", "info"]
PROBE_SOURCE = Path(__file__).resolve().parent.parent / "agent" / "versions.py"
PROBE_TEXT = PROBE_SOURCE.read_text(encoding="utf-8")  # read once, never on the event loop
PROBE_TIMEOUT_S = 90.0
PACKAGES = ("vllm", "transformers", "torch", "mistral_common")


@dataclass(frozen=True)
class Advisory:
    key: str  # stable id, e.g. "lighton-vllm-0.27.1-loops", "flag:--mm-processor-cache-gb"
    severity: Severity
    text: str
    source: Source | None = None
    fix: str | None = None
    refuses: bool = False  # a known-bad combination that cannot start: the preflight refuses

    @property
    def shown(self) -> str:
        """The text with its fix, as a card, ``status`` and the preflight show it."""
        return f"{self.text}. Fix: {self.fix}" if self.fix else self.text


def to_status(advisory: Advisory) -> AdvisoryStatus:
    """The advisory as ``status --json`` and summary.json carry it."""
    src = advisory.source
    return AdvisoryStatus(
        advisory.key, advisory.severity, advisory.shown, f"{src.where}, {src.url}" if src else None
    )


@dataclass(frozen=True)
class Versions:
    """What the model's ``vllm_command`` runs with; None where unknown."""

    vllm: str | None = None
    transformers: str | None = None
    torch: str | None = None
    mistral_common: str | None = None
    server_vllm: str | None = None  # the running server's GET /version
    interpreter: str | None = None
    error: str | None = None  # why the versions are unknown

    def get(self, package: str) -> str | None:
        if package == "vllm":
            # The running server is the truth; the command's environment when none runs.
            return self.server_vllm or self.vllm
        value = getattr(self, package, None)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class PodProbe:
    versions: Versions
    server_argv: tuple[str, ...] | None  # /proc/PID/cmdline of the API server, when asked


# -- the probe -----------------------------------------------------------------------------


def probe_env(model: ModelConfig) -> dict[str, str]:
    """The model's variables that decide what its launch imports (``PYTHONPATH`` and the
    other ``PYTHON*``): they travel on the probe's command line, so nothing else of the
    model's env (a token) does."""
    return {k: v for k, v in model.env.items() if k.startswith("PYTHON")}


def probe_argv(
    pod_config: PodConfig, model: ModelConfig, server_pid: int | None = None
) -> list[str]:
    """The one command :func:`probe_pod` runs (the probe's source goes on stdin)."""
    argv = [pod_config.python, "-", json.dumps(list(pod_config.vllm_command))]
    argv += ["--env", json.dumps(probe_env(model))]
    return [*argv, "--pid", str(server_pid)] if server_pid is not None else argv


def parse_probe(stdout: str) -> PodProbe:
    """The probe's JSON line; anything else gives unknown versions with the reason."""
    lines = stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
    except (ValueError, IndexError):
        return PodProbe(Versions(error=f"version probe printed no JSON: {stdout[-200:]!r}"), None)
    if not isinstance(data, dict):
        return PodProbe(Versions(error="version probe printed no JSON object"), None)

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    argv = data.get("argv")
    return PodProbe(
        Versions(
            vllm=text("vllm"),
            transformers=text("transformers"),
            torch=text("torch"),
            mistral_common=text("mistral_common"),
            interpreter=text("interpreter"),
            error=text("error"),
        ),
        tuple(str(a) for a in argv) if isinstance(argv, list) else None,
    )


async def probe_pod(
    pod: Pod, pod_config: PodConfig, model: ModelConfig, server_pid: int | None = None
) -> PodProbe:
    """Versions the model's vllm_command runs with, under the model's own ``PYTHON*``
    variables (and the server's argv, given its pid)."""
    argv = probe_argv(pod_config, model, server_pid)
    try:
        result = await pod.run(argv, input=PROBE_TEXT, timeout=PROBE_TIMEOUT_S)
    except TimeoutError:
        why = f"version probe timed out after {PROBE_TIMEOUT_S:g} s"
        return PodProbe(Versions(error=why), None)
    except PodConnectionLost as exc:
        return PodProbe(Versions(error=f"version probe: connection lost ({exc})"), None)
    except OSError as exc:  # a local pod without that python
        return PodProbe(Versions(error=f"{pod_config.python}: {exc.strerror or exc}"), None)
    if not result.ok:
        tail = (result.stderr.strip().splitlines() or [""])[-1]
        return PodProbe(
            Versions(error=f"{pod_config.python} exited {result.exit_status}: {tail}"), None
        )
    return parse_probe(result.stdout)


# -- the advisories ------------------------------------------------------------------------


def advisories(
    model: ModelConfig,
    versions: Versions,
    server_argv: Sequence[str] | None,
    *,
    image_format: str | None = None,
) -> list[Advisory]:
    """Warnings and notes for one model: known-bad versions, drift between the running
    server and the command's environment, published serve flags missing from
    ``server_argv`` (the running server's argv, or ``lifecycle.serve_argv(...)`` for a
    planned launch; None skips the flag checks), and request values that differ from the
    published profile (``image_format``: ``compare.image_format``). Known-bad combinations
    that need a serve flag (GLM-OCR's MTP) are checked only with an argv."""
    out = _version_advisories(model, versions, server_argv)
    if server_argv is not None:
        out += _flag_advisories(model, server_argv)
    out += _profile_advisories(model, image_format)
    return out


def _version_advisories(
    model: ModelConfig, versions: Versions, argv: Sequence[str] | None
) -> list[Advisory]:
    out: list[Advisory] = []
    if versions.get("vllm") is None and versions.transformers is None:
        why = versions.error or "not found in the vllm_command's environment"
        out.append(
            Advisory(
                "versions-unknown",
                "info",
                f"{model.name}: vLLM/transformers versions unknown ({why}); known-bad "
                "combinations cannot be checked",
            )
        )
    if (
        versions.server_vllm
        and versions.vllm
        and _normal(versions.server_vllm) != _normal(versions.vllm)
    ):
        out.append(
            Advisory(
                "server-version-drift",
                "warning",
                f"{model.name}: the running server is vLLM {versions.server_vllm} but the "
                f"vllm_command's environment has {versions.vllm}: it was started from another "
                "environment or before an upgrade; a restart changes the version",
            )
        )
    recipe = recipe_for(model)
    for bad in recipe.known_bad if recipe is not None else ():
        if _applies(bad, versions, argv):
            found = ", ".join(f"{pkg} {versions.get(pkg) or 'not installed'}" for pkg in bad.when)
            text = f"{model.name} ({found}): {bad.text}"
            out.append(Advisory(bad.key, "warning", text, bad.source, bad.fix, bad.refuses))
    return out


def _applies(bad: KnownBad, versions: Versions, argv: Sequence[str] | None) -> bool:
    if versions.error is not None and versions.get("vllm") is None:
        return False  # nothing known: "not installed" would be a guess
    if not all(_matches(versions.get(pkg), spec) for pkg, spec in bad.when.items()):
        return False
    if bad.with_option is None and not bad.unless:
        return True
    if argv is None:
        return False
    options = serve_options(argv)
    if any(_given(options, way_out) for way_out in bad.unless):
        return False
    return bad.with_option is None or _given(options, bad.with_option)


def _given(options: Mapping[str, object], want: ServeOption) -> bool:
    if want.json:
        given = json_option(options, want.option)
        return given is not None and all(given.get(k) == v for k, v in want.json.items())
    value = options.get(want.option)
    if want.value is not None:
        return value == want.value
    return value is not None and value is not False


def _normal(version: str) -> str:
    """The release a version names: a build label (``0.32.0+cpu``) is not part of it, and
    vLLM's ``/version`` leaves it out."""
    try:
        return Version(version).public
    except InvalidVersion:
        return version


def _matches(version: str | None, spec: str) -> bool:
    if spec == ABSENT:
        return version is None
    if version is None:
        return False
    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except (InvalidVersion, InvalidSpecifier):
        return False


def _flag_advisories(model: ModelConfig, argv: Sequence[str]) -> list[Advisory]:
    recipe = recipe_for(model)
    if recipe is None:
        return []
    options = serve_options(argv)
    out: list[Advisory] = []
    for flag in recipe.flags:
        if not _has(options, flag):
            out.append(
                Advisory(
                    f"flag:{flag.option}",
                    flag.missing,
                    f"{model.name} is served without {_shown(flag)}: {flag.why}",
                    flag.source,
                )
            )
            continue
        given = json_option(options, flag.option) or {}
        for key, want in flag.json_advice.items():
            if key in given and given[key] != want:
                out.append(
                    Advisory(
                        f"flag:{flag.option}.{key}",
                        "info",
                        f"{model.name}: {flag.option} {key} = {given[key]!r}, published "
                        f"{want!r} ({recipe.argv.note or flag.source.where})",
                        flag.source,
                    )
                )
    return out


def _has(options: Mapping[str, object], flag: Flag) -> bool:
    if flag.option.startswith("--no-"):
        return options.get("--" + flag.option[5:]) is False
    if flag.json_keys:
        given = json_option(options, flag.option)
        return given is not None and all(given.get(k) == v for k, v in flag.json_keys.items())
    value = options.get(flag.option)
    if flag.value is None:
        return value is True
    if not isinstance(value, str):
        return False
    try:
        return float(value) == float(flag.value)
    except ValueError:
        return value == flag.value


def _shown(flag: Flag) -> str:
    if flag.json_keys:
        return f"{flag.option} {json.dumps(dict(flag.json_keys))}"
    return f"{flag.option} {flag.value}" if flag.value is not None else flag.option


def _profile_advisories(model: ModelConfig, image_format: str | None) -> list[Advisory]:
    out: list[Advisory] = []
    recipe = recipe_for(model)
    if recipe is not None and recipe.profile != model.profile:
        out.append(
            Advisory(
                "profile-mismatch",
                "warning",
                f"{model.name}: {model.model} is meant for the {recipe.profile} request profile, "
                f"configured profile is {model.profile}",
                recipe.argv.source,
            )
        )
    profile = PROFILES[model.profile]
    published = profile.max_tokens
    if model.max_tokens is not None and model.max_tokens != published.value:
        cut = (
            "; longer pages end with finish_reason length (flag truncated)"
            if model.max_tokens < published.value
            else ""
        )
        out.append(
            Advisory(
                "max-tokens",
                "info",
                f"{model.name}: max_tokens {model.max_tokens}, published {published.value}{cut}",
                published.source,
            )
        )
    if model.prompt is not None:
        text = PRESETS.get(model.prompt, model.prompt)
        if profile.prompt.value is None:
            out.append(
                Advisory(
                    "prompt",
                    "warning",
                    f"{model.name}: prompt {model.prompt!r} sent with the {model.profile} "
                    f"profile, which the card serves the image alone: {profile.prompt.note}",
                    profile.prompt.source,
                )
            )
        elif profile.listed_prompts and text not in profile.listed_prompts.value:
            listed = ", ".join(repr(p) for p in profile.listed_prompts.value)
            out.append(
                Advisory(
                    "prompt",
                    "warning",
                    f"{model.name}: prompt {model.prompt!r} is not one the model card lists "
                    f"({listed}); free-form prompts are off the training distribution and "
                    f"are blamed for endless repetition ({SDK_PR_239.url})",
                    profile.listed_prompts.source,
                )
            )
    encoding = profile.image
    if image_format is not None and image_format not in encoding.value.formats:
        out.append(
            Advisory(
                "image-format",
                "info",
                f"{model.name}: pages sent as {image_format}; published: {encoding.value.detail}",
                encoding.source,
            )
        )
    return out
