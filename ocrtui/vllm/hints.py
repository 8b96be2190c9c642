"""Known vLLM failures, recognised in a log tail: the cause and the fix in one line.

Patterns are vLLM's own strings (its source; real logs in tests/vllm/fixtures/).
The log file is appended to across restarts, so the failure printed last is the one that
matters; "engine core died" and "engine core initialization failed" are consequences more
than causes and only answer when nothing more specific is there. A failed start prints its
root cause 60-90 lines above its last line: pass the whole current run, not a short tail.

The free-memory hint names what holds the memory when the caller knows (``holders``); the
functions stay pure. A hint may read the lines around its own: the graph-capture hint names
the vLLM version (its banner) and whether the MTP draft model was being captured, as the
weights-not-loaded hint names it and whether the missing weights are an MTP layer's; "failed to
be inspected" names the ImportError above it and the recipe's version pin
(``ocrtui/published.py``, ``KnownBad.import_error``).

:func:`encoder_cache_hint` is the one hint read from a request's error rather than the log:
the 400 a page gets when its image has more tokens than the server's encoder cache (vLLM
#34040); :func:`longest_side_that_fits` is the pure size rule it states.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ocrtui.published import GLM_OCR_MTP_LOADS_ON, SERVE_RECIPES, WAYS_OUT
from ocrtui.vllm.stages import strip_ansi


@dataclass(frozen=True)
class Hint:
    key: str
    cause: str
    fix: str
    line: str  # the log line it was recognised in

    def __str__(self) -> str:
        return f"{self.cause}. Fix: {self.fix}"


@dataclass(frozen=True)
class MemoryHolder:
    """A process holding GPU memory, as the caller's attribution sees it."""

    pid: int
    mib: int
    owner: str  # a model name, or "" when no model of this config owns it
    orphan: bool = False  # a leftover vLLM process of ``owner`` (its API server is gone)
    title: str = ""  # e.g. "VLLM::EngineCore"

    def describe(self) -> str:
        what = self.title or "process"
        if self.orphan:
            who = f"{self.owner}'s orphaned {what}"
        elif self.owner:
            who = f"model {self.owner} ({what})"
        else:
            who = what
        return f"{who} pid {self.pid} ({self.mib} MiB)"


@dataclass(frozen=True)
class _Context:
    """Where a pattern matched: the whole run (colours stripped), the matching line's index,
    and what holds GPU memory (None: not known)."""

    lines: Sequence[str]
    at: int
    holders: Sequence[MemoryHolder] | None

    def above(self) -> Sequence[str]:
        return self.lines[: self.at]


# (cause, fix), or None where the line is not the cause after all (the search goes on).
_Maker = Callable[[re.Match[str], _Context], tuple[str, str] | None]


def _free_memory(m: re.Match[str], ctx: _Context) -> tuple[str, str]:
    holders = ctx.holders
    free, total, util, need = m.group("free", "total", "util", "need")
    cause = (
        f"only {free} of {total} GiB GPU memory free at startup, below "
        f"--gpu-memory-utilization {util} ({need} GiB)"
    )
    if holders is None:
        return cause, (
            "stop what holds the memory (see the processes panel; an orphaned "
            "VLLM::EngineCore is cleared by `ocrtui restart NAME`) or lower "
            "gpu_memory_utilization"
        )
    if not holders:
        return cause, (
            "no process holds GPU memory now (freed since, or held outside this pod): start "
            "again, or lower gpu_memory_utilization"
        )
    ranked = sorted(holders, key=lambda h: -h.mib)
    fix = "held by " + ", ".join(h.describe() for h in ranked) + ": "
    orphaned = sorted({h.owner for h in ranked if h.orphan and h.owner})
    if orphaned:
        fix += " / ".join(f"`ocrtui restart {name}`" for name in orphaned) + " kills orphans; "
    fix += "stop what you do not need, or lower gpu_memory_utilization"
    return cause, fix


def _kv_too_small(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    return (
        f"KV cache too small for max-model-len {m.group('len')} ({m.group('need')} GiB "
        f"needed, {m.group('avail')} GiB available)",
        f"set max_model_len to at most {m.group('est')} (the estimated maximum) "
        "or raise gpu_memory_utilization",
    )


def _no_cache_blocks(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    return (
        "no GPU memory left for KV cache blocks after loading the model",
        "raise gpu_memory_utilization (GLM-OCR needs about 18 GiB) or free GPU memory",
    )


def _cuda_oom(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    return (
        "CUDA out of memory",
        "free GPU memory held by other processes (orphans: `ocrtui restart NAME`), or lower "
        "gpu_memory_utilization, max_num_seqs or max_model_len",
    )


def _address_in_use(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    return (
        "the port is already in use by another process",
        "stop that server (`ocrtui down`, or see the processes panel) or change the model's port",
    )


def _architecture(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    kind = m.group("type") or "this model"
    return (
        f"the installed transformers does not recognise model type {kind}",
        "install a transformers/vLLM pair that supports it (GLM-OCR: transformers >= 5.1 "
        "with a vLLM that allows it)",
    )


def _limit_mm(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    value = m.group("value")
    return (
        f"--limit-mm-per-prompt {value} is the old format; vLLM >= 0.10 takes JSON",
        f"write it as '{_limit_mm_json(value)}' in extra_args",
    )


def _limit_mm_json(old: str) -> str:
    """The JSON form of the old ``image=5,video=1`` value (``{"image": 1}`` when the old
    value is not of that form)."""
    limits: dict[str, int] = {}
    for item in old.split(","):
        key, eq, count = item.strip().partition("=")
        if not (eq and key.isidentifier() and count.strip().isdigit()):
            return json.dumps({"image": 1})
        limits[key] = int(count)
    return json.dumps(limits)


def _unrecognized_args(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    return (
        f"this vLLM does not know the argument(s) {m.group('args').strip()}",
        "remove them from extra_args or install a vLLM version that has them",
    )


def _sleep_mode_unsupported(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    return (
        "this vLLM build has no sleep mode (it needs CUDA's cumem allocator: CUDA, ROCm or "
        "XPU; the CPU build refuses --enable-sleep-mode)",
        "remove --enable-sleep-mode from extra_args on this pod",
    )


def _unsupported_architecture(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    return (
        f"this vLLM does not support the model architecture {m.group('arch')}",
        "upgrade vLLM to a version that lists the architecture",
    )


def _engine_died(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    return (
        "the EngineCore process died (killed, out of host memory, or a crash)",
        "read the lines above for the root cause, then restart the model",
    )


def _missing_module(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    module = m.group("module")
    fix = known_import_fix(module) or f"install {module} in the environment vllm_command runs in"
    if module.split(".")[0] == "flashinfer":
        fix += ", or set VLLM_USE_FLASHINFER_SAMPLER=0 in the model's env"
    return f"vLLM could not import {module}", fix


def known_import_fix(name: str) -> str | None:
    """The recipes' fix for an import that fails with a known-bad version (a name or a
    module an ImportError names), or None."""
    top = name.split(".")[0]
    for recipe in SERVE_RECIPES:
        for bad in recipe.known_bad:
            if bad.import_error in (name, top):
                return bad.fix
    return None


# The ImportError inside vLLM's "Error in inspecting model architecture" traceback.
_IMPORT_FAILURE = re.compile(
    r"ImportError: cannot import name '(?P<name>[^']+)' from '(?P<module>[^']+)'"
    r"|ModuleNotFoundError: No module named '(?P<missing>[^']+)'"
)


def _inspection_failed(m: re.Match[str], ctx: _Context) -> tuple[str, str] | None:
    arch = m.group("arch")
    found = None
    for line in reversed(ctx.above()):
        if found := _IMPORT_FAILURE.search(line):
            break
    if found is None:
        return (
            f"vLLM could not load the code of {arch}",
            "the traceback above this line says why (often an ImportError: a transformers "
            "version this vLLM does not know)",
        )
    if found.group("missing"):
        return None  # the missing-module hint names it, on its own line above
    name, module = found.group("name", "module")
    fix = known_import_fix(name) or (
        f"install a {module.split('.')[0]} version that has {name} where the vllm_command "
        "runs, or first on the model's PYTHONPATH (its env)"
    )
    return (
        f"vLLM could not import the code of {arch}: cannot import name {name!r} from {module}",
        fix,
    )


_VLLM_VERSION = re.compile(
    r"\bversion (?P<banner>\d+\.\d+\S*)\s*$|LLM engine \(v(?P<engine>\d+\.\d+[^)\s]*)\)"
    r"|vLLM API server version (?P<server>\d+\.\d+\S*)"
)
# A frame of a speculative-decoding draft model (glm_ocr_mtp.py, deepseek_mtp.py, ...) or of
# vLLM's speculative decoding itself.
_MTP_FRAME = re.compile(r'File "[^"]*/(?P<file>\w+_mtp\.py)"|/spec_decode/')


def vllm_version_in(lines: Sequence[str]) -> str | None:
    """The vLLM version a run's own banner or engine line names, or None."""
    for line in lines:
        if m := _VLLM_VERSION.search(line):
            return m.group("banner") or m.group("engine") or m.group("server")
    return None


def _graph_capture(m: re.Match[str], ctx: _Context) -> tuple[str, str]:
    version = vllm_version_in(ctx.lines)
    on = f"vLLM {version}" if version else "this vLLM"
    frames = [f for line in ctx.above() if (f := _MTP_FRAME.search(line))]
    if frames:
        file = next((f.group("file") for f in reversed(frames) if f.group("file")), None)
        what = f"MTP's draft step ({file})" if file else "the speculative decoding draft step"
        return (
            f"{what} cannot be captured in a CUDA graph on {on}",
            f"serve without --speculative-config (no MTP), or keep MTP with {WAYS_OUT}",
        )
    return (
        f"a step of the model cannot be captured in a CUDA graph on {on}",
        "serve with --enforce-eager (no CUDA graphs), or try another vLLM version",
    )


# GLM-OCR and LightOnOCR-2 both cut pages into 14 px patches merged 2 x 2 into one token.
PATCH_MULTIPLE = 28


def longest_side_that_fits(tokens: int, cache: int, longest: int, multiple: int) -> int:
    """The longest side a page scaled by ``sqrt(cache / tokens)`` gets, rounded down to the
    model's patch ``multiple``: image tokens grow with the area, so the page then needs at
    most ``cache`` tokens. Pure, so a better token predictor can replace the estimate."""
    scaled = longest * math.sqrt(cache / tokens)
    return max(multiple, int(scaled // multiple) * multiple)


def encoder_cache_hint(
    message: str, page: tuple[int, int] | None, multiple: int = PATCH_MULTIPLE
) -> Hint | None:
    """The hint for a request refused because its image exceeds the server's encoder
    cache (the error ``message``), with the longest side that fits when the page's
    ``(width, height)`` is known; None for any other error."""
    m = _ENCODER_CACHE.search(message)
    if m is None:
        return None
    cause, fix = _encoder_cache_text(int(m.group("n")), int(m.group("m")), page, multiple)
    return Hint("encoder_cache", cause, fix, m.group(0))


def _encoder_cache_text(
    tokens: int, cache: int, page: tuple[int, int] | None, multiple: int
) -> tuple[str, str]:
    cause = (
        f"the page's image needs {tokens} tokens, more than the server's encoder cache "
        f"({cache}; vLLM #34040)"
    )
    if page is None:
        scale = math.sqrt(cache / tokens)
        return cause, (
            f"send the page smaller: its longest side x {scale:.4f}, rounded down to a "
            f"multiple of {multiple} px"
        )
    longest = max(page)
    fits = longest_side_that_fits(tokens, cache, longest, multiple)
    return cause, f"send the page with its longest side at most {fits} px (now {longest})"


def _encoder_cache(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    return _encoder_cache_text(int(m.group("n")), int(m.group("m")), None, PATCH_MULTIPLE)


_ENCODER_CACHE = re.compile(
    r"The decoder prompt contains a\(n\) \w+ item with length (?P<n>\d+), which exceeds "
    r"the pre-allocated encoder cache size (?P<m>\d+)"
)


# The weights of a multi-token-prediction layer (GLM-OCR's, DeepSeek's ``*_mtp.py`` models).
_MTP_WEIGHT = re.compile(r"\.(?:enorm|hnorm|eh_proj|shared_head|mtp_block)\.")
_LAYER = re.compile(r"^(?P<layer>.*\.layers\.\d+)\.")


def _weights_not_loaded(m: re.Match[str], ctx: _Context) -> tuple[str, str]:
    names = sorted(re.findall(r"'([^']+)'", m.group("names")))
    version = vllm_version_in(ctx.lines)
    on = f"vLLM {version}" if version else "this vLLM"
    example = names[0] if names else "?"
    if any(_MTP_WEIGHT.search(n) for n in names):
        layer = _LAYER.match(example)
        where = f" as {layer.group('layer')}.*" if layer else ""
        return (
            f"{on} did not find the checkpoint's MTP layer ({len(names)} weights it looks for"
            f"{where}, e.g. {example}): the checkpoint stores it under another name",
            "serve without --speculative-config (no MTP), or use a vLLM version that loads "
            f"this checkpoint's MTP layer (GLM-OCR: {GLM_OCR_MTP_LOADS_ON})",
        )
    return (
        f"the checkpoint lacks weights {on}'s code for the model expects ({len(names)}, "
        f"e.g. {example})",
        "the checkpoint and this vLLM do not match: check the model id and revision, or use "
        "the vLLM version the model's makers name",
    )


def _engine_init_failed(m: re.Match[str], _c: _Context) -> tuple[str, str]:
    return (
        "the EngineCore failed to start",
        "the root cause is the first traceback of this start in the log; read it there",
    )


_PATTERNS: tuple[tuple[str, re.Pattern[str], _Maker], ...] = (
    (
        "free_memory",
        re.compile(
            r"Free memory on device(?: \S+)? \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\) on "
            r"startup is less than desired GPU memory utilization "
            r"\((?P<util>[\d.]+), (?P<need>[\d.]+) GiB\)"
        ),
        _free_memory,
    ),
    (
        "kv_cache_too_small",
        re.compile(
            r"max seq len \((?P<len>\d+)\), \((?P<need>[\d.]+) GiB KV cache is needed, which is "
            r"larger than the available KV cache memory \((?P<avail>-?[\d.]+) GiB\)\. Based on "
            r"the available memory, the estimated maximum model length is (?P<est>\d+)"
        ),
        _kv_too_small,
    ),
    ("no_cache_blocks", re.compile(r"No available memory for the cache blocks"), _no_cache_blocks),
    ("cuda_oom", re.compile(r"CUDA out of memory|torch\.OutOfMemoryError"), _cuda_oom),
    (
        "address_in_use",
        re.compile(r"\[Errno 98\] Address already in use|address already in use", re.I),
        _address_in_use,
    ),
    (
        "unrecognized_architecture",
        re.compile(
            r"(?:model type `(?P<type>[^`]+)` but )?Transformers does not recognize this "
            r"architecture"
        ),
        _architecture,
    ),
    (
        "unsupported_architecture",
        re.compile(r"Model architectures? (?P<arch>\[[^\]]*\]) (?:are|is) not supported"),
        _unsupported_architecture,
    ),
    (
        "limit_mm_per_prompt",
        re.compile(r"argument --limit-mm-per-prompt: Value (?P<value>.+?) cannot be converted"),
        _limit_mm,
    ),
    (
        "sleep_mode_unsupported",
        re.compile(r"Sleep mode is not supported on current platform"),
        _sleep_mode_unsupported,
    ),
    (
        "unrecognized_arguments",
        re.compile(r"error: unrecognized arguments: (?P<args>.+)$"),
        _unrecognized_args,
    ),
    (
        "architecture_inspection",
        re.compile(r"Model architectures (?P<arch>\[[^\]]*\]) failed to be inspected"),
        _inspection_failed,
    ),
    (
        "cuda_graph_capture",
        re.compile(
            r"operation not permitted when stream is capturing"
            r"|cudaErrorStreamCapture(?:Invalidated|Unsupported)"
        ),
        _graph_capture,
    ),
    (
        "weights_not_loaded",
        re.compile(r"Following weights were not initialized from checkpoint: \{(?P<names>[^}]*)\}"),
        _weights_not_loaded,
    ),
    ("encoder_cache", _ENCODER_CACHE, _encoder_cache),
    (
        "missing_module",
        re.compile(r"ModuleNotFoundError: No module named '(?P<module>[^']+)'"),
        _missing_module,
    ),
    (
        "engine_init_failed",
        # The EngineCore's own line comes first: the API server unwinds for seconds after it.
        re.compile(r"Engine core initialization failed|EngineCore failed to start"),
        _engine_init_failed,
    ),
    (
        "engine_core_died",
        re.compile(r"Engine core proc \S+ died unexpectedly|EngineDeadError"),
        _engine_died,
    ),
)
# A shutdown we asked for (SIGTERM) makes vLLM >= 0.25 log EngineDeadError on its way out.
_REQUESTED_SHUTDOWN = re.compile(
    r"received signal=SIG(TERM|INT)|\[shutdown\] API server: shutdown triggered"
)
HINT_KEYS: tuple[str, ...] = tuple(key for key, _, _ in _PATTERNS)
# Consequences: they answer only when no cause is in the lines.
_FALLBACKS = ("engine_init_failed", "engine_core_died")


def find_hint(
    lines: Sequence[str], *, holders: Sequence[MemoryHolder] | None = None
) -> Hint | None:
    """The known failure printed last in ``lines`` (the whole current run), or None.

    ``holders``: what holds GPU memory now (None: not known), named by the free-memory hint.
    """
    fallback: Hint | None = None
    clean = [strip_ansi(raw) for raw in lines]
    for at in range(len(clean) - 1, -1, -1):
        line = clean[at]
        if _REQUESTED_SHUTDOWN.search(line):
            fallback = None
        for key, pattern, make in _PATTERNS:
            m = pattern.search(line)
            made = make(m, _Context(clean, at, holders)) if m is not None else None
            if made is None:
                continue
            cause, fix = made
            hint = Hint(key, cause, fix, line.strip())
            if key not in _FALLBACKS:
                return hint
            # Of the consequences, the latest printed wins.
            fallback = fallback or hint
    return fallback


def is_fatal(lines: Sequence[str]) -> bool:
    """Whether the tail shows the server giving up (the process may not have exited yet)."""
    return find_hint(lines) is not None
