"""What each arm of a comparison is: the configuration a model actually ran with, and its label.

An arm is one model as measured: its request profile with the values sent (prompt,
sampling, max_tokens after :func:`~ocrtui.compare.profiles.fit_max_tokens`, rendering, image
format), the serve flags read from the running server's argv, the vLLM/transformers
versions, and the advisories on them (``vllm/served.py`` probes the server; without a probe
the flags and versions are recorded as unknown). :func:`arm_record` (a :class:`VllmArm`;
:class:`ApiArm` for a document API) is summary.json's ``models.NAME.arm`` (``to_json()``);
``placement`` says which pod and GPU served it (``to_json()``'s ``pod`` and ``gpu``, shown in
report.md's Arms section and the comparison screen's header); its ``label``
(:func:`arm_label`) names the arm in report.md,
report.html and the comparison screen, e.g. ``GLM-OCR · model only, full page, no layout ·
MTP 3 · vLLM 0.30.0``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from ocrtui.compare.profiles import prompt_for, render_target
from ocrtui.config import ApiArmConfig, CompareConfig, ModelConfig
from ocrtui.published import PROFILES
from ocrtui.status import AdvisoryStatus, Snapshot
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
    if model.render_longest_side is not None:
        parts.append(f"longest side {model.render_longest_side} px")
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
                    # The ways MTP starts on vLLM 0.26-0.29 (eager ~7x slower): not the same
                    # arm as MTP with full CUDA graphs.
                    graphs = (json_option(options, "--compilation-config") or {}).get(
                        "cudagraph_mode"
                    )
                    if options.get("--enforce-eager") is True:
                        mtp += ", eager"
                    elif isinstance(graphs, str):
                        mtp += f", {graphs.lower()} graphs"
                    parts.append(mtp)
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


@dataclass(frozen=True)
class ArmProfile:
    """The request values a model's arm sends (its profile, after fit_max_tokens)."""

    name: str
    prompt: str | None  # None: the profile sends the image alone
    sampling: Mapping[str, object]
    max_tokens: int
    render: Mapping[str, object]  # the render values that are set (profiles.render_target)
    image_format: str


@dataclass(frozen=True)
class Placement:
    """Where an arm's server ran: the pod's name and its GPU as the pod's snapshot names
    it (e.g. ``GPU 0 NVIDIA A40``; None before the agent's first sample)."""

    pod: str
    gpu: str | None

    @classmethod
    def of(cls, snapshot: Snapshot, name: str) -> Placement:
        """Model ``name`` in its pod's snapshot: the GPU its plan is on, else one it holds
        memory on."""
        shares = [(g, s) for g in snapshot.gpus for s in g.models if s.name == name]
        planned = [g for g, s in shares if s.planned_mib is not None]
        holding = [g for g, s in shares if s.used_mib > 0]
        gpu = next(iter(planned or holding), None)
        return cls(snapshot.pod.label, f"GPU {gpu.index} {gpu.name}" if gpu else None)

    def text(self) -> str:
        return f"pod {self.pod}, {self.gpu or 'GPU ?'}"


@dataclass(frozen=True)
class VllmArm:
    """What a vLLM model ran as; ``serve_argv`` None when unknown (redacted otherwise)."""

    label: str
    model: str
    profile: ArmProfile
    serve_argv: tuple[str, ...] | None
    versions: Versions
    advisories: tuple[AdvisoryStatus, ...]
    placement: Placement | None = None  # None: the run had no view of the pod

    def to_json(self) -> dict[str, object]:
        v = self.versions
        return {
            "label": self.label,
            "model": self.model,
            "profile": {
                "name": self.profile.name,
                "prompt": self.profile.prompt,
                "sampling": dict(self.profile.sampling),
                "max_tokens": self.profile.max_tokens,
                "render": dict(self.profile.render),
                "image_format": self.profile.image_format,
            },
            "serve_argv": None if self.serve_argv is None else list(self.serve_argv),
            "versions": {
                "vllm": v.vllm,
                "server_vllm": v.server_vllm,
                "transformers": v.transformers,
                "torch": v.torch,
                "error": v.error,
            },
            "advisories": [asdict(a) for a in self.advisories],
            "pod": self.placement.pod if self.placement else None,
            "gpu": self.placement.gpu if self.placement else None,
        }


@dataclass(frozen=True)
class ApiArm:
    """A document-API arm: what it posts to, labelled "via API"."""

    label: str
    path: str
    split: str
    text_path: str

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "kind": "api",
            "path": self.path,
            "split": self.split,
            "text_path": self.text_path,
        }


ArmRecord = VllmArm | ApiArm


def arm_record(
    model: ModelConfig,
    settings: CompareConfig,
    served: Served | None,
    placement: Placement | None = None,
) -> VllmArm:
    """What one model runs with (summary.json's ``arm``: ``to_json()``)."""
    profile = PROFILES[model.profile]
    render = render_target(model)
    versions = served.versions if served is not None else Versions(error=NOT_PROBED)
    argv = served.server_argv if served is not None else None
    found = (
        served.advisories
        if served is not None
        else tuple(
            to_status(a)
            for a in advisories(model, versions, None, image_format=settings.image_format)
        )
    )
    return VllmArm(
        label=arm_label(model, argv, versions.get("vllm")),
        model=model.model,
        profile=ArmProfile(
            name=model.profile,
            prompt=prompt_for(model),
            sampling=dict(profile.sampling.value),
            max_tokens=model.effective_max_tokens(),
            render={k: v for k, v in asdict(render).items() if v is not None},
            image_format=settings.image_format,
        ),
        serve_argv=tuple(redacted(argv)) if argv is not None else None,
        versions=versions,
        advisories=found,
        placement=placement,
    )


def api_arm_record(arm: ApiArmConfig) -> ApiArm:
    """What a document-API arm posts to."""
    return ApiArm(f"{arm.name} · via API · {arm.path}", arm.path, arm.split, arm.text_path)
