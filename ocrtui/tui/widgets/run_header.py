"""The comparison screen's header: what was compared, on what, with which settings, so that
a screenshot of the screen stands on its own.

    demo-pod  GPU 0 NVIDIA A40 45.0 GiB  DEMO  simulated GPU
    ■ glm-ocr  zai-org/GLM-OCR · profile glm-ocr · gmu 0.40 seqs 16 · vLLM 0.11.0
    ■ lighton-ocr  lightonai/LightOnOCR-2-1B · profile generic · gmu 0.55 seqs 16 · vLLM ?
    run  sample suite · concurrency 4 · schedule sequential · references: sidecar files

:class:`RunFacts` is fixed when the run starts (the models' configs and the run's
settings), except each server's vLLM version, which arrives from its ``/version`` once
asked ("vLLM ?" until then, or when the server does not say). Arms on several pods: each
pod on the first line, and each arm's line ends with its pod and GPU. Values of serve flags that
look secret are never shown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.content import Content
from textual.widgets import Static

from ocrtui.compare.arms import Placement
from ocrtui.config import ApiArmConfig, ModelConfig
from ocrtui.status import Snapshot
from ocrtui.tui.widgets.format import visible
from ocrtui.tui.widgets.gpu_panel import model_styles
from ocrtui.vllm.flags import data_parallel_size

if TYPE_CHECKING:
    from ocrtui.compare.launch import RunSetup

SERVE_CHARS = 48  # serve flags beyond this are cut with "…" (the run's run.json has them)
_SECRET_FLAG = re.compile(r"key|token|secret|password", re.IGNORECASE)


@dataclass(frozen=True)
class ArmFacts:
    name: str  # served name
    model: str  # the vLLM model id
    profile: str
    serve: str  # the serve flags, in short

    @classmethod
    def of(cls, m: ModelConfig | ApiArmConfig) -> ArmFacts:
        if isinstance(m, ApiArmConfig):  # a document API: what it posts to, no serve flags
            return cls(m.name, "via API", "-", m.path)
        return cls(m.name, m.model, m.profile, serve_flags(m))


@dataclass
class RunFacts:
    label: str
    arms: tuple[ArmFacts, ...]
    concurrency: int
    schedule: str
    references: str
    vllm: dict[str, str] = field(default_factory=dict)  # served name -> /version's answer

    @classmethod
    def of(cls, setup: RunSetup) -> RunFacts:
        return cls(
            label=setup.label,
            arms=tuple(ArmFacts.of(m) for m in setup.models),
            concurrency=setup.settings.concurrency,
            schedule=setup.settings.schedule,
            references=references(setup),
        )


def references(setup: RunSetup) -> str:
    kinds = {d.reference for d in setup.documents}
    if kinds == {"text-layer"}:
        return "PDF text layer"
    if kinds == {None}:
        return "sidecar files"
    return "suite files" if "text-layer" not in kinds else "mixed"


def serve_flags(m: ModelConfig) -> str:
    ranks = data_parallel_size(m)
    # max_num_seqs is per data-parallel rank: "seqs 16x2" runs 32 requests at once.
    seqs = f"seqs {m.max_num_seqs}" + (f"x{ranks}" if ranks > 1 else "")
    bits = [f"gmu {m.gpu_memory_utilization:.2f}", seqs]
    if m.max_model_len is not None:
        bits.append(f"len {m.max_model_len}")
    args = list(m.extra_args)
    for i, arg in enumerate(args):
        if _SECRET_FLAG.search(arg):
            if "=" in arg:
                args[i] = arg.split("=", 1)[0] + "=***"
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                args[i + 1] = "***"
    text = " ".join([*bits, *args])
    return text if len(text) <= SERVE_CHARS else text[: SERVE_CHARS - 1] + "…"


def run_header_content(
    facts: RunFacts,
    snapshot: Snapshot,
    models: Sequence[str],
    placements: Mapping[str, Placement] | None = None,
    others: Sequence[Snapshot] = (),
) -> Content:
    """The run's header: the pod (``others``: the other pods its arms are on) and its GPUs,
    each arm with its serve flags and vLLM version, and, with arms on several pods, the pod
    and GPU each runs on (``placements``)."""
    parts: list[str | tuple[str, str]] = []
    for i, snap in enumerate((snapshot, *others)):
        pod = snap.pod
        parts += ["   " if i else "", (f" {pod.label} ", "bold reverse $primary")]
        for g in snap.gpus:
            parts += [f"  GPU {g.index} {g.name} {g.total_mib / 1024:.1f} GiB"]
        if not snap.gpus:
            parts.append(("  GPU ?", "$text-muted"))
        if pod.demo:
            parts += ["  ", (" DEMO ", "bold reverse $accent")]
        if pod.simulated_gpu or any(g.simulated for g in snap.gpus):
            parts += ["  ", (" simulated GPU ", "bold reverse $warning")]
    pod = snapshot.pod
    styles = model_styles(models)
    for arm in facts.arms:
        version = facts.vllm.get(arm.name)
        if version and pod.demo and "sim" not in version:
            version += " (simulated)"
        parts += [
            "\n",
            ("■ ", styles.get(arm.name, "")),
            arm.name,
            f"  {arm.model} · profile {arm.profile} · {arm.serve} · ",
            (f"vLLM {visible(version)}", "") if version else ("vLLM ?", "$text-muted"),
        ]
        where = (placements or {}).get(arm.name) if others else None
        if where is not None:
            parts.append(f" · {where.text()}")
    parts += [
        "\n",
        f"run  {facts.label} · concurrency {facts.concurrency} · schedule {facts.schedule}"
        f" · references: {facts.references}",
    ]
    return Content.assemble(*parts)


class RunHeader(Static):
    DEFAULT_CSS = """
    RunHeader { height: auto; background: $panel; padding: 0 1;
                text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def show(
        self,
        facts: RunFacts,
        snapshot: Snapshot,
        models: Sequence[str],
        placements: Mapping[str, Placement] | None = None,
        others: Sequence[Snapshot] = (),
    ) -> None:
        self.update(run_header_content(facts, snapshot, models, placements, others))
