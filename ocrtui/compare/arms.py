"""What each arm of a comparison is: the configuration a model actually ran with, and its label.

An arm is one model as measured: its request profile with the values sent (prompt,
sampling, max_tokens after :func:`~ocrtui.compare.profiles.fit_max_tokens`, rendering, image
format), the serve flags read from the running server's argv, the vLLM/transformers
versions, and the advisories on them (``vllm/served.py`` probes the server; without a probe
the flags and versions are recorded as unknown). :func:`arm_record` is summary.json's
``models.NAME.arm``; its ``label`` (:func:`arm_label`) names the arm in report.md,
report.html and the comparison screen, e.g. ``GLM-OCR · model only, full page, no layout ·
MTP 3 · vLLM 0.30.0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from ocrtui.compare.profiles import prompt_for
from ocrtui.config import ApiArmConfig, CompareConfig, ModelConfig
from ocrtui.published import PROFILES
from ocrtui.vllm.advisories import Versions, advisories, to_status
from ocrtui.vllm.flags import json_option, recipe_for, serve_options
from ocrtui.vllm.served import Served

NOT_PROBED = "not probed: the run had no view of the pod"
SECRET_OPTIONS = ("--api-key",)  # values never written to a run directory


def redacted(argv: Sequence[str]) -> list[str]:
    """``argv`` with the values of secret options replaced."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        flag, eq, _value = arg.partition("=")
        if hide_next:
            out.append("<redacted>")
        elif eq and flag.replace("_", "-") in SECRET_OPTIONS:
            out.append(f"{flag}=<redacted>")
        else:
            out.append(arg)
        hide_next = not hide_next and not eq and arg.replace("_", "-") in SECRET_OPTIONS
    return out


def arm_label(model: ModelConfig, argv: Sequence[str] | None, vllm: str | None) -> str:
    """The arm in one line: what it is against the makers' setup, then how it is served."""
    profile = PROFILES[model.profile]
    parts = [profile.arm if model.profile != "generic" else f"{model.model} · {profile.arm}"]
    if model.prompt is not None:
        parts.append(f"prompt {model.prompt}")
    if model.effective_max_tokens() != profile.max_tokens.value:
        parts.append(f"max_tokens {model.effective_max_tokens()}")
    recipe = recipe_for(model)
    if argv is None:
        parts.append("serve flags unknown")
    elif recipe is not None:
        options = serve_options(argv)
        missing = []
        for flag in recipe.flags:
            if flag.option == "--speculative-config":
                spec = json_option(options, flag.option) or {}
                if spec.get("method") == "mtp":
                    mtp = f"MTP {spec.get('num_speculative_tokens', '?')}"
                    # The way MTP starts on vLLM 0.26-0.29, and ~7x slower: not the same arm.
                    eager = options.get("--enforce-eager") is True
                    parts.append(f"{mtp}, eager" if eager else mtp)
                else:
                    parts.append("no MTP")
            elif not _present(options, flag.option):
                missing.append(flag.option)
        if missing:
            parts.append("without " + " ".join(missing))
        elif len(recipe.flags) > 1 or recipe.flags[0].option != "--speculative-config":
            parts.append("the card's serve flags")
    if vllm:
        parts.append(f"vLLM {vllm}")
    return " · ".join(parts)


def _present(options: dict[str, object], option: str) -> bool:
    if option.startswith("--no-"):
        return options.get("--" + option[5:]) is False
    return option in options


def arm_record(
    model: ModelConfig, settings: CompareConfig, served: Served | None
) -> dict[str, Any]:
    """summary.json's ``arm`` for one model: the configuration it ran with."""
    profile = PROFILES[model.profile]
    render = profile.render.value
    versions = served.versions if served is not None else Versions(error=NOT_PROBED)
    argv = served.server_argv if served is not None else None
    found = (
        list(served.advisories)
        if served is not None
        else [
            to_status(a)
            for a in advisories(model, versions, None, image_format=settings.image_format)
        ]
    )
    return {
        "label": arm_label(model, argv, versions.get("vllm")),
        "model": model.model,
        "profile": {
            "name": model.profile,
            "prompt": prompt_for(model),
            "sampling": dict(profile.sampling.value),
            "max_tokens": model.effective_max_tokens(),
            "render": {k: v for k, v in asdict(render).items() if v is not None},
            "image_format": settings.image_format,
        },
        "serve_argv": redacted(argv) if argv is not None else None,
        "versions": {
            "vllm": versions.vllm,
            "server_vllm": versions.server_vllm,
            "transformers": versions.transformers,
            "torch": versions.torch,
            "error": versions.error,
        },
        "advisories": [asdict(a) for a in found],
    }


def api_arm_record(arm: ApiArmConfig) -> dict[str, Any]:
    """summary.json's ``arm`` for a document-API arm: what it posts to, labelled "via API"."""
    return {
        "label": f"{arm.name} · via API · {arm.path}",
        "kind": "api",
        "path": arm.path,
        "split": arm.split,
        "text_path": arm.text_path,
    }
