"""What the models' makers publish, as data: request profiles and serve flags, each value
with its source and the date it was checked.

This is the one table the request builder (``compare/profiles.py``), the config check
(``config.py``), the memory count (``vllm/flags.py``), the advisories
(``vllm/advisories.py``), the arm labels (``compare/arms.py``) and the reports' published
figures (:data:`ANCHORS`, read by ``compare/report.py`` and ``compare/report_html.py``)
read, and the image processors and architectures (:data:`IMAGE_PROCESSORS`,
:data:`ARCHITECTURES`) that ``vllm/image_tokens.py`` and ``vllm/memory.py`` predict a
page's tokens and a server's memory from. Standard library only: ``config.py`` imports it.

Sources, all checked 2026-12-01 (notes in shared research ``model_usage.md``):

* GLM-OCR SDK ``glmocr`` 0.1.5 (PyPI wheel): ``glmocr/config.yaml`` ``pipeline.page_loader``
  (sampling, max_tokens, prompts, image format), ``glmocr/dataloader/page_loader.py``
  ``build_request_from_image`` (the request body: image part, then the text part, then
  the sampling fields; ``ocr_client.py`` adds ``model``), ``glmocr/utils/image_utils.py``
  ``load_image_to_base64`` (RGB, ``smart_resize`` to multiples of 28, BICUBIC, JPEG at
  Pillow's default quality), the package README (vLLM launch, version needs).
* The GLM-OCR model card (prompt list), vLLM's GLM-OCR recipe (MTP with 1 token).
* The LightOnOCR-2-1B model card (sampling, image-only request, 1540 px, vLLM flags) and
  the lightonai/LightOnOCR README (version pins).
* Known-bad versions of each recipe (:class:`KnownBad`, checked 2026-12-07): ocrtui's own
  run of both models' real architectures on vLLM 0.26.0 (the logs are
  ``tests/vllm/fixtures/real_v0_26_h100_*``), and the vLLM and GLM-OCR issue trackers.

A value ocrtui chooses itself (no published one) has :data:`OCRTUI` as its source.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from types import MappingProxyType
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

Profile = Literal["glm-ocr", "lighton-ocr", "generic"]
CHECKED = "2026-12-01"


@dataclass(frozen=True)
class Source:
    where: str  # package version and file, or the page
    url: str
    checked: str = CHECKED


@dataclass(frozen=True)
class Published(Generic[T]):
    """One value and where it comes from; ``note`` says how ocrtui differs, if it does."""

    value: T
    source: Source
    note: str = ""


GLMOCR_SDK = "https://pypi.org/project/glmocr/0.1.5/"
SDK_CONFIG = Source("glmocr 0.1.5, glmocr/config.yaml (pipeline.page_loader)", GLMOCR_SDK)
SDK_REQUEST = Source(
    "glmocr 0.1.5, glmocr/dataloader/page_loader.py (build_request_from_image)", GLMOCR_SDK
)
SDK_IMAGE = Source("glmocr 0.1.5, glmocr/utils/image_utils.py (load_image_to_base64)", GLMOCR_SDK)
SDK_README = Source("glmocr 0.1.5 README, 'Using vLLM'", GLMOCR_SDK)
GLM_CARD = Source("GLM-OCR model card, 'Prompt Limited'", "https://huggingface.co/zai-org/GLM-OCR")
SDK_PR_239 = Source(
    "zai-org/GLM-OCR PR #239 (open): loops from free-form prompts",
    "https://github.com/zai-org/GLM-OCR/pull/239",
)
LIGHTON_CARD = Source(
    "LightOnOCR-2-1B model card", "https://huggingface.co/lightonai/LightOnOCR-2-1B"
)
LIGHTON_README = Source(
    "lightonai/LightOnOCR README (version pins)", "https://github.com/lightonai/LightOnOCR"
)
VLLM_CACHE_DOC = Source(
    "vLLM docs, Optimization: Multi-Modal Caching (cache placement table); engine args "
    "--mm-processor-cache-gb (default 4); Conserving memory ('If you run out of CPU RAM')",
    "https://docs.vllm.ai/en/stable/configuration/optimization/",
)
OCRTUI = Source("ocrtui's own choice (no published value)", "docs/compare.md#profiles")
GPU_RUN = "2026-12-07"
GPU_RUN_GLM = Source(
    "ocrtui's run on vLLM 0.26.0, one H100: GLM-OCR with MTP crashed in CUDA-graph capture "
    "(tests/vllm/fixtures/real_v0_26_h100_glm_ocr_mtp_graph_capture.log)",
    "tests/vllm/fixtures/SOURCES.md",
    GPU_RUN,
)
GPU_RUN_LIGHTON = Source(
    "ocrtui's run on vLLM 0.26.0, one H100: LightOnOCR-2 with transformers 5.17.0 "
    "(tests/vllm/fixtures/real_v0_26_h100_lighton_transformers_5_17.log); 5.5.3-5.16.1 "
    "import, and vLLM 0.26.0's pixtral.py imports mistral_common",
    "tests/vllm/fixtures/SOURCES.md",
    GPU_RUN,
)
VLLM_MTP_WEIGHTS = Source(
    "vllm-project/vllm #49856 / PR #49869 (0.26.0-0.27.1 leave the MTP layer, stored as "
    "model.language_model.layers.16.*, uninitialised) and #57631 (the same on 0.29.0, and "
    "'MTP forward is not CUDA-graph safe')",
    "https://github.com/vllm-project/vllm/issues/49856",
    GPU_RUN,
)
GPU_RUN_GLM_WEIGHTS = Source(
    "ocrtui's run on vLLM 0.26.0, one H100: GLM-OCR's published layout with MTP refused at "
    "load (tests/vllm/fixtures/real_v0_26_h100_glm_ocr_mtp_checkpoint_names.log); "
    + VLLM_MTP_WEIGHTS.where,
    VLLM_MTP_WEIGHTS.url,
    GPU_RUN,
)
MTP_SPEED = Source(
    "zai-org/GLM-OCR #218 and vllm-project/vllm #37551: MTP ran 0.56-0.70x the tokens/s of "
    "no MTP with CUDA graphs, 1.53x in eager mode, which is itself ~7x slower",
    "https://github.com/zai-org/GLM-OCR/issues/218",
    GPU_RUN,
)


@dataclass(frozen=True)
class RenderSpec:
    """Page rasterisation: a DPI with a cap on the longest side, or a fixed longest side."""

    dpi: float | None = None
    max_side: int | None = None
    longest_side: int | None = None


@dataclass(frozen=True)
class ImageEncoding:
    formats: tuple[str, ...]  # what the makers send (lower case, as compare.image_format)
    detail: str


@dataclass(frozen=True)
class RequestProfile:
    name: Profile
    prompt: Published[str | None]  # the default text part; None: the image alone
    presets: Published[Mapping[str, str]]  # names selectable with ModelConfig.prompt
    parts: Published[tuple[str, ...]]  # content part order in the one user message
    sampling: Published[Mapping[str, float | int]]  # sent as written, after max_tokens
    max_tokens: Published[int]
    render: Published[RenderSpec]
    image: Published[ImageEncoding]
    # Prompts the makers list (None: no list); another prompt is off their distribution.
    listed_prompts: Published[tuple[str, ...]] | None = None
    # What an arm with this profile is, against the makers' own setup (the arm label's head).
    arm: str = ""


GLM_TEXT_PROMPT = "Text Recognition:"
# The SDK's whole-page default prompt until commit 4252a3c (2026-03-26) removed it; absent
# from 0.1.5 and from the card. Kept as a preset for `generic` models.
PAGE_MARKDOWN_PROMPT = (
    "Recognize the text in the image and output in Markdown format. Preserve the original "
    "layout (headings/paragraphs/tables/formulas). Do not fabricate content that does not "
    "exist in the image."
)
GLM_PRESETS: Mapping[str, str] = MappingProxyType(
    {"text": GLM_TEXT_PROMPT, "table": "Table Recognition:", "formula": "Formula Recognition:"}
)
PRESETS: Mapping[str, str] = MappingProxyType({**GLM_PRESETS, "markdown": PAGE_MARKDOWN_PROMPT})
PRESETS_SOURCE = Published(
    PRESETS,
    SDK_CONFIG,
    "text/table/formula: the SDK's task_prompt_mapping and the card's list; markdown: "
    "ocrtui's whole-page prompt (the SDK's removed default_prompt, off-distribution per "
    "PR #239)",
)

PROFILES: Mapping[Profile, RequestProfile] = MappingProxyType(
    {
        "glm-ocr": RequestProfile(
            name="glm-ocr",
            prompt=Published(
                GLM_TEXT_PROMPT,
                SDK_CONFIG,
                "the SDK sends it per layout region; ocrtui sends the whole page (no layout "
                "stage), so headers and footers stay in the output",
            ),
            presets=PRESETS_SOURCE,
            parts=Published(("image_url", "text"), SDK_REQUEST),
            sampling=Published(
                MappingProxyType(
                    {"temperature": 0.0, "top_p": 0.00001, "top_k": 1, "repetition_penalty": 1.1}
                ),
                SDK_CONFIG,
                "greedy since commit 4252a3c; the 0.8/0.9/50 of older SDKs is gone",
            ),
            max_tokens=Published(8192, SDK_CONFIG, "the card's transformers example: 8192"),
            render=Published(
                RenderSpec(dpi=200, max_side=3500),
                SDK_CONFIG,
                "pdf_dpi 200, longest side 3500 (page_loader); the SDK rasterises with "
                "PyMuPDF, ocrtui with PDFium",
            ),
            image=Published(
                ImageEncoding(
                    ("jpeg",),
                    "JPEG at Pillow's default quality (75) after resizing to multiples of 28 "
                    "px; ocrtui sends JPEG q90 (or PNG) at the rendered size",
                ),
                SDK_IMAGE,
            ),
            listed_prompts=Published(
                tuple(GLM_PRESETS.values()),
                GLM_CARD,
                "plus JSON-schema extraction prompts, which OCR of a page does not use",
            ),
            arm="GLM-OCR · model only, full page, no layout",
        ),
        "lighton-ocr": RequestProfile(
            name="lighton-ocr",
            prompt=Published(
                None, LIGHTON_CARD, "no system or user text: the model tends to repeat it"
            ),
            presets=PRESETS_SOURCE,
            parts=Published(("image_url",), LIGHTON_CARD),
            sampling=Published(MappingProxyType({"temperature": 0.2, "top_p": 0.9}), LIGHTON_CARD),
            max_tokens=Published(4096, LIGHTON_CARD),
            render=Published(
                RenderSpec(longest_side=1540),
                LIGHTON_CARD,
                "'a target longest dimension of 1540px'; images are only downscaled by the "
                "lightonai client, ocrtui scales them to 1540 either way",
            ),
            image=Published(
                ImageEncoding(("png", "jpeg"), "'PNG or JPEG'; the card's example sends PNG"),
                LIGHTON_CARD,
            ),
            arm="LightOnOCR-2 · full page, image only",
        ),
        "generic": RequestProfile(
            name="generic",
            prompt=Published(PAGE_MARKDOWN_PROMPT, OCRTUI),
            presets=PRESETS_SOURCE,
            parts=Published(("image_url", "text"), OCRTUI),
            sampling=Published(MappingProxyType({}), OCRTUI, "the server's defaults"),
            max_tokens=Published(4096, OCRTUI),
            render=Published(RenderSpec(dpi=200, max_side=2048), OCRTUI),
            image=Published(ImageEncoding(("jpeg", "png"), "either"), OCRTUI),
            arm="full page, generic prompt",
        ),
    }
)


# -- serve flags ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """One published ``vllm serve`` option: ``value`` None for a switch; for a JSON option the
    keys that must hold (``json_keys``: ``{"method": "mtp"}`` for the speculative config) and
    those published but only advised (``json_advice``: a different value is a note)."""

    option: str  # as vLLM spells it, e.g. "--mm-processor-cache-gb"
    value: str | None
    source: Source
    why: str
    json_keys: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    json_advice: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    # "info" where serving without it is a choice to measure, not a drift to fix.
    missing: Literal["warning", "info"] = "warning"


@dataclass(frozen=True)
class ServeOption:
    """A ``vllm serve`` option as a :class:`KnownBad` looks for it: given (a switch: on),
    given as ``value``, or, for a JSON option, holding ``json``'s keys."""

    option: str
    value: str | None = None
    json: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    def shown(self) -> str:
        """As a user types it: ``--enforce-eager``, ``--compilation-config '{...}'``."""
        if self.json:
            return f"{self.option} {shlex.quote(json.dumps(dict(self.json)))}"
        return self.option if self.value is None else f"{self.option} {self.value}"


@dataclass(frozen=True)
class KnownBad:
    """A combination a recipe is known to fail with. It applies when every package matches
    its PEP 440 specifier in ``when`` (``ABSENT``: the package is not installed where the
    launch imports it), the serve args carry ``with_option`` and none of ``unless`` (the
    ways out that start). ``refuses``: the server cannot start (the preflight refuses to
    launch it unless forced); else it starts and misbehaves. ``import_error``: the name a
    failed start's ImportError names (``vllm/hints.py``)."""

    key: str
    when: Mapping[str, str]
    text: str  # what fails, and why
    fix: str
    source: Source
    refuses: bool = True
    with_option: ServeOption | None = None
    unless: tuple[ServeOption, ...] = ()
    import_error: str | None = None


ABSENT = "absent"


@dataclass(frozen=True)
class ServeRecipe:
    """How the makers serve a model: the extra flags, as an argv tail and one by one."""

    models: tuple[str, ...]  # fnmatch patterns on the vLLM model id, case-insensitive
    profile: Profile  # the request profile the model is meant for
    argv: Published[tuple[str, ...]]  # ready for ModelConfig.extra_args
    flags: tuple[Flag, ...]
    max_model_len_advice: Published[str] | None = None
    known_bad: tuple[KnownBad, ...] = ()


GLM_MTP_TOKENS = 3
MTP_OPTION = ServeOption("--speculative-config", json=MappingProxyType({"method": "mtp"}))
# GLM-OCR's MTP started on vLLM 0.26.0 with either (ocrtui's GPU run, bench/results/).
EAGER = ServeOption("--enforce-eager")
PIECEWISE_GRAPHS = ServeOption(
    "--compilation-config", json=MappingProxyType({"cudagraph_mode": "PIECEWISE"})
)
WAYS_OUT = f"{PIECEWISE_GRAPHS.shown()} or {EAGER.shown()} (both start on vLLM 0.26.0)"
# The last vLLM that loads GLM-OCR's published MTP layer (vLLM #49856).
GLM_OCR_MTP_LOADS_ON = "0.25.1"
# Random weights: no checkpoint names to refuse (benches and tests load this way).
DUMMY_WEIGHTS = ServeOption("--load-format", value="dummy")
SERVE_RECIPES: tuple[ServeRecipe, ...] = (
    ServeRecipe(
        models=("*GLM-OCR*",),
        profile="glm-ocr",
        argv=Published(
            (
                "--speculative-config",
                f'{{"method": "mtp", "num_speculative_tokens": {GLM_MTP_TOKENS}}}',
            ),
            SDK_README,
            "vLLM's recipe (https://recipes.vllm.ai/zai-org/GLM-OCR) uses "
            "num_speculative_tokens 1; the SDK README changed 1 to 3 on 2026-04-07 (commit "
            "425b949)",
        ),
        flags=(
            Flag(
                "--speculative-config",
                None,
                SDK_README,
                "the makers serve MTP speculative decoding; whether it helps is measured, not "
                "assumed (with CUDA graphs it ran slower than no MTP where it loaded: "
                f"{MTP_SPEED.url}), and vLLM 0.26.0-0.29.x cannot start it with graphs",
                MappingProxyType({"method": "mtp"}),
                MappingProxyType({"num_speculative_tokens": GLM_MTP_TOKENS}),
                missing="info",
            ),
        ),
        max_model_len_advice=Published(
            "set --max-model-len (the model's default is 131072)", SDK_README
        ),
        known_bad=(
            KnownBad(
                key="glm-ocr-mtp-graph-capture",
                when={"vllm": ">=0.26.0,<0.30"},
                with_option=MTP_OPTION,
                unless=(EAGER, PIECEWISE_GRAPHS),
                text="vLLM 0.26.0-0.29.x cannot start GLM-OCR with MTP: the draft step "
                "(glm_ocr_mtp.py) cannot be captured in a CUDA graph (FULL cudagraph mode), "
                "and 0.26.0-0.27.1 also refuse real checkpoints' MTP layer "
                "(model.language_model.layers.16.*)",
                fix=f"serve without --speculative-config (no MTP), or keep MTP with {WAYS_OUT}",
                source=GPU_RUN_GLM,
            ),
            KnownBad(
                key="glm-ocr-mtp-checkpoint-names",
                when={"vllm": ">=0.26.0,<=0.27.1"},
                with_option=MTP_OPTION,
                unless=(DUMMY_WEIGHTS,),
                text="vLLM 0.26.0-0.27.1 leave GLM-OCR's MTP layer uninitialised with real "
                "weights (stored as model.language_model.layers.16.*) and refuse to start, "
                "eager mode included",
                fix=f"serve without --speculative-config, or use vLLM {GLM_OCR_MTP_LOADS_ON}",
                source=GPU_RUN_GLM_WEIGHTS,
            ),
            KnownBad(
                key="glm-ocr-transformers-5.3",
                when={"transformers": "<5.3"},
                text="GLM-OCR needs transformers >= 5.3 (older ones do not know its architecture)",
                fix="install transformers >= 5.3 where the vllm_command runs",
                source=SDK_README,
                refuses=False,
            ),
            KnownBad(
                key="glm-ocr-vllm-0.17",
                when={"vllm": "<0.17"},
                text="GLM-OCR needs vLLM >= 0.17",
                fix="install vLLM >= 0.17",
                source=SDK_README,
                refuses=False,
            ),
        ),
    ),
    ServeRecipe(
        models=("*LightOnOCR*",),
        profile="lighton-ocr",
        argv=Published(
            (
                "--limit-mm-per-prompt",
                '{"image": 1}',
                "--mm-processor-cache-gb",
                "0",
                "--no-enable-prefix-caching",
            ),
            LIGHTON_CARD,
        ),
        flags=(
            Flag(
                "--limit-mm-per-prompt",
                None,
                LIGHTON_CARD,
                "one image per request, as the card serves it",
                MappingProxyType({"image": 1}),
            ),
            Flag(
                "--mm-processor-cache-gb",
                "0",
                LIGHTON_CARD,
                "no multi-modal processor cache: pages never repeat, and the default keeps "
                "4 GiB of host RAM per API server",
            ),
            Flag(
                "--no-enable-prefix-caching",
                None,
                LIGHTON_CARD,
                "no prefix caching: image-only prompts share no prefix",
            ),
        ),
        known_bad=(
            KnownBad(
                key="lighton-transformers-5.17",
                when={"transformers": "==5.17.*"},
                text="transformers 5.17 renamed PixtralRotaryEmbedding, which vLLM's pixtral.py "
                "(LightOnOCR's vision encoder) imports: the model fails to be inspected",
                fix="install transformers 5.16.1 (5.5.3-5.16.1 work; the makers pin 5.16.1), "
                "and for vLLM 0.26 mistral_common, e.g. in a folder first on the model's "
                "PYTHONPATH through its env",
                source=GPU_RUN_LIGHTON,
                import_error="PixtralRotaryEmbedding",
            ),
            KnownBad(
                key="lighton-mistral-common",
                when={"vllm": "==0.26.*", "mistral_common": ABSENT},
                text="vLLM 0.26's pixtral.py (LightOnOCR's vision encoder) imports "
                "mistral_common, which is not installed",
                fix="install mistral_common (with its dependencies) where the vllm_command "
                "runs, or first on the model's PYTHONPATH",
                source=GPU_RUN_LIGHTON,
                import_error="mistral_common",
            ),
            KnownBad(
                key="lighton-vllm-0.27.1-loops",
                when={"vllm": "==0.27.1"},
                text="vLLM 0.27.1 makes every LightOnOCR model loop; the makers pin vLLM 0.30.0 "
                "with transformers 5.16.1",
                fix="use vLLM 0.30.0",
                source=LIGHTON_README,
                refuses=False,
            ),
        ),
    ),
)

# vLLM's default for --mm-processor-cache-gb (GiB of host RAM per caching process).
MM_PROCESSOR_CACHE_DEFAULT_GIB = Published(4.0, VLLM_CACHE_DOC)


# -- published figures ---------------------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """A figure the makers publish, with the configuration it was measured in: shown beside
    a run's numbers, never as one of its columns (none was measured as ocrtui measures)."""

    model: str
    profile: Profile  # the request profile of the arm it is shown beside
    metric: str
    value: str
    configuration: str
    source: str


ANCHORS_LABEL = "Published figures (other configurations: not comparable with this run)"
ANCHORS: tuple[Anchor, ...] = (
    Anchor(
        "GLM-OCR",
        "glm-ocr",
        "OmniDocBench v1.5 overall",
        "94.62",
        "the GLM-OCR SDK's two-stage pipeline (PP-DocLayout-V3 layout, then per-region "
        "prompts), not whole pages",
        "zai-org/GLM-OCR README; tech report arXiv 2603.10910",
    ),
    Anchor(
        "GLM-OCR",
        "glm-ocr",
        "PDF parse speed",
        "1.86 pages/s",
        "the SDK's layout pipeline, single replica, concurrency 1; GPU not stated",
        "GLM-OCR model card, speed test",
    ),
    Anchor(
        "LightOnOCR-2",
        "lighton-ocr",
        "PDF parse speed",
        "5.71 pages/s",
        "one H100; concurrency not stated",
        "LightOnOCR-2 model card",
    ),
    Anchor(
        "LightOnOCR-2",
        "lighton-ocr",
        "olmOCR-Bench overall",
        "83.2 ± 0.9",
        "olmOCR-Bench (English PDFs), headers and footers excluded",
        "LightOnOCR-2 model card; arXiv 2601.14251",
    ),
)


# -- image processors and architectures ----------------------------------------------------
# What a page costs in tokens and a server in memory comes from these published files; the
# rules that use them are vLLM's and transformers' (ocrtui/vllm/image_tokens.py and
# ocrtui/vllm/memory.py name the functions they follow).

SEED_FILES_CHECKED = "2026-12-07"
GLM_PREPROCESSOR = Source(
    "zai-org/GLM-OCR preprocessor_config.json (revision 2e85a628): Glm46VImageProcessor, "
    "size.shortest_edge 12544, size.longest_edge 9633792, patch 14, temporal 2, merge 2",
    "https://huggingface.co/zai-org/GLM-OCR/blob/main/preprocessor_config.json",
    SEED_FILES_CHECKED,
)
GLM_CONFIG = Source(
    "zai-org/GLM-OCR config.json (GlmOcrForConditionalGeneration)",
    "https://huggingface.co/zai-org/GLM-OCR/blob/main/config.json",
    SEED_FILES_CHECKED,
)
LIGHTON_PREPROCESSOR = Source(
    "lightonai LightOnOCR preprocessor_config.json / processor_config.json: "
    "PixtralImageProcessor, size.longest_edge 1540, patch 14, spatial_merge_size 2",
    "https://huggingface.co/lightonai/LightOnOCR-2-1B",
    SEED_FILES_CHECKED,
)
LIGHTON_CONFIG = Source(
    "lightonai/LightOnOCR-2-1B config.json (LightOnOCRForConditionalGeneration, mistral3: "
    "Qwen3 text, Pixtral vision)",
    "https://huggingface.co/lightonai/LightOnOCR-2-1B/blob/main/config.json",
    SEED_FILES_CHECKED,
)
VLLM_PROMPT_COUNT = Source(
    "vLLM 0.26.0's own multimodal processors (MULTIMODAL_REGISTRY.create_processor, CPU) on "
    "pages rendered by ocrtui: prompt tokens less the image's",
    "https://github.com/vllm-project/vllm/tree/v0.26.0/vllm/model_executor/models",
    SEED_FILES_CHECKED,
)


@dataclass(frozen=True)
class ImageProcessor:
    """How a model's processor sizes an image, as its processor files publish it.

    ``rule`` names the resize: ``smart_resize`` (Qwen2-VL / GLM-4.6V: sides to multiples of
    ``patch_size * merge_size``, the area counted over ``temporal_patch_size`` frames kept
    within ``[min_pixels, max_pixels]``) or ``pixtral`` (scaled down to fit
    ``longest_edge``, then one token per ``patch_size * merge_size`` cell, rounded up).
    ``text_tokens``: the prompt's tokens besides the image's, per text prompt as sent
    (None: the image alone), as vLLM counted them; a prompt not listed has no prediction.
    """

    models: tuple[str, ...]  # fnmatch patterns on the vLLM model id, case-insensitive
    rule: Literal["smart_resize", "pixtral"]
    patch_size: int
    merge_size: int
    source: Source
    temporal_patch_size: int = 1
    min_pixels: int = 0
    max_pixels: int = 0
    longest_edge: int = 0
    text_tokens: Published[Mapping[str | None, int]] | None = None


@dataclass(frozen=True)
class TextTower:
    layers: int
    hidden: int
    intermediate: int  # gated MLP (gate, up, down)
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    max_position_embeddings: int  # vLLM's max_model_len when none is given
    mtp_layers: int = 0  # num_nextn_predict_layers: loaded only with --speculative-config mtp

    def kv_bytes_per_token(self, mtp: bool) -> int:
        """KV cache per token in bf16: K and V of every layer (+ the MTP layers with ``mtp``)."""
        layers = self.layers + (self.mtp_layers if mtp else 0)
        return 2 * layers * self.kv_heads * self.head_dim * 2


@dataclass(frozen=True)
class VisionTower:
    layers: int
    hidden: int
    intermediate: int  # gated MLP
    patch_size: int
    channels: int = 3
    temporal_patch_size: int = 1
    position_grid: int = 0  # learned position embeddings: (image_size / patch)^2 of them


@dataclass(frozen=True)
class Architecture:
    """The sizes a model's config.json publishes, all memory prediction needs (bf16).
    ``family`` names the projector and MTP layout: ``glm_ocr`` (GLM-4V patch merger: a
    2x2 conv to the text width, then a gated MLP; MTP layers share the embeddings and the
    head with the main model) or ``mistral3`` (Pixtral patch merger and a 2-layer MLP)."""

    models: tuple[str, ...]  # fnmatch patterns on the vLLM model id, case-insensitive
    family: Literal["glm_ocr", "mistral3"]
    text: TextTower
    vision: VisionTower
    merge_size: int
    source: Source


GLM_OCR_PATTERNS = ("*GLM-OCR*",)
LIGHTON_PATTERNS = ("*LightOnOCR-2*",)

IMAGE_PROCESSORS: tuple[ImageProcessor, ...] = (
    ImageProcessor(
        models=GLM_OCR_PATTERNS,
        rule="smart_resize",
        patch_size=14,
        merge_size=2,
        source=GLM_PREPROCESSOR,
        temporal_patch_size=2,
        min_pixels=12544,
        max_pixels=9633792,
        text_tokens=Published(
            MappingProxyType({GLM_TEXT_PROMPT: 13}),
            VLLM_PROMPT_COUNT,
            "1694x2192 page: 4680 image tokens, 4693 prompt tokens",
        ),
    ),
    ImageProcessor(
        models=LIGHTON_PATTERNS,
        rule="pixtral",
        patch_size=14,
        merge_size=2,
        source=LIGHTON_PREPROCESSOR,
        longest_edge=1540,
        text_tokens=Published(
            MappingProxyType({None: 12}),
            VLLM_PROMPT_COUNT,
            "1191x1540 page: 2365 image tokens (vLLM drops the [IMG_BREAK]/[IMG_END] tokens "
            "for LightOnOCR), 2377 prompt tokens",
        ),
    ),
)

ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        models=GLM_OCR_PATTERNS,
        family="glm_ocr",
        text=TextTower(
            layers=16,
            hidden=1536,
            intermediate=4608,
            heads=16,
            kv_heads=8,
            head_dim=128,
            vocab=59392,
            tied_embeddings=False,
            max_position_embeddings=131072,
            mtp_layers=1,
        ),
        vision=VisionTower(
            layers=24,
            hidden=1024,
            intermediate=4096,
            patch_size=14,
            temporal_patch_size=2,
            position_grid=(336 // 14) ** 2,
        ),
        merge_size=2,
        source=GLM_CONFIG,
    ),
    Architecture(
        models=LIGHTON_PATTERNS,
        family="mistral3",
        text=TextTower(
            layers=28,
            hidden=1024,
            intermediate=3072,
            heads=16,
            kv_heads=8,
            head_dim=128,
            vocab=151936,
            tied_embeddings=True,
            max_position_embeddings=16384,
        ),
        vision=VisionTower(layers=24, hidden=1024, intermediate=8192, patch_size=14),
        merge_size=2,
        source=LIGHTON_CONFIG,
    ),
)


def architecture_for(model_id: str) -> Architecture | None:
    """The published architecture of a vLLM model id, or None when ocrtui knows none."""
    low = model_id.lower()
    for arch in ARCHITECTURES:
        if any(fnmatch(low, pattern.lower()) for pattern in arch.models):
            return arch
    return None
