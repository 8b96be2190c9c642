"""What a ``vllm serve`` argv asks for: its options, the model's published recipe, and the
memory its flags reserve beyond ``--gpu-memory-utilization``.

Pure functions; the recipes themselves are data in ``ocrtui/published.py``.

Memory, as vLLM documents it (``published.VLLM_CACHE_DOC``):

* The multi-modal processor cache is **host RAM**, not GPU memory: ``--mm-processor-cache-gb``
  (default 4 GiB) per caching process. With one API server per engine (vLLM's default) or
  the ``shm`` cache type the data is held once per API server (the cache placement table);
  otherwise this counts the engine-args docs' total, ``gb x (API servers + engines)``. It
  does not change the GPU free-memory check.
* Speculative decoding (GLM-OCR's MTP) loads its draft layers and their KV cache inside the
  ``--gpu-memory-utilization`` budget, so it shrinks the KV cache but asks no extra free GPU
  memory; vLLM documents no amount, so nothing is counted for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Literal

from ocrtui.config import ModelConfig
from ocrtui.published import MM_PROCESSOR_CACHE_DEFAULT_GIB, SERVE_RECIPES, ServeRecipe

MIB_PER_GIB = 1024
# vLLM 0.32's short spellings (engine/arg_utils.py, entrypoints/launchers/cli_args.py).
_SHORT = {
    "-dp": "--data-parallel-size",
    "-asc": "--api-server-count",
    "-tp": "--tensor-parallel-size",
}


def data_parallel_size(model: ModelConfig) -> int:
    """How many engines (``VLLM::EngineCore_DP<i>``, one GPU each) the model's server runs:
    its ``--data-parallel-size``, 1 without one. ``max_num_seqs`` and
    ``gpu_memory_utilization`` apply to each of them."""
    return _int(serve_options(model.extra_args).get("--data-parallel-size"), 1)


def serve_options(argv: Sequence[str]) -> dict[str, object]:
    """``--option`` -> value of a ``vllm serve`` argv, spelled as vLLM's docs spell them.

    ``--a-b=V`` and ``--a_b V`` both give ``{"--a-b": "V"}``; a switch gives True and its
    ``--no-`` form False (``--no-enable-prefix-caching`` -> ``{"--enable-prefix-caching":
    False}``); a JSON value stays a string; dotted keys (``--speculative-config.method mtp``)
    are gathered into a dict. The last occurrence wins, as in argparse. Without vLLM's
    parser a switch followed by a positional argument reads it as its value; ``serve_argv``
    puts the model first, so only ``extra_args`` could do that. vLLM's short forms of the
    parallelism options (``-dp``, ``-asc``, ``-tp``) read as their long names.
    """
    out: dict[str, object] = {}
    i = 0
    while i < len(argv):
        arg = _SHORT.get(argv[i], argv[i])
        i += 1
        if not arg.startswith("--") or arg == "--":
            continue
        name, eq, inline = arg[2:].partition("=")
        value: object
        if eq:
            value = inline
        elif name.startswith("no-"):
            value = True  # a --no-X switch never takes a value
        elif i < len(argv) and not argv[i].startswith("--"):
            value = argv[i]
            i += 1
        else:
            value = True
        head, dot, key = name.partition(".")
        option = "--" + head.replace("_", "-")
        if dot:
            merged = _as_dict(out.get(option))
            merged[key.replace("-", "_")] = _scalar(value)
            out[option] = merged
        elif value is True and option.startswith("--no-"):
            out["--" + option[5:]] = False
        else:
            out[option] = value
    return out


def json_option(options: Mapping[str, object], option: str) -> dict[str, object] | None:
    """A JSON-valued option (``--speculative-config``) as a dict; None when absent or not JSON."""
    value = options.get(option)
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def _as_dict(value: object) -> dict[str, object]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return dict(parsed) if isinstance(parsed, dict) else {}
    return {}


def _scalar(value: object) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def recipe_for(model: ModelConfig) -> ServeRecipe | None:
    """The published recipe of the model id (fnmatch, case-insensitive), else of its profile."""
    model_id = model.model.lower()
    for recipe in SERVE_RECIPES:
        if any(fnmatch(model_id, pattern.lower()) for pattern in recipe.models):
            return recipe
    for recipe in SERVE_RECIPES:
        if recipe.profile == model.profile:
            return recipe
    return None


@dataclass(frozen=True)
class Reservation:
    reason: str
    mib: int
    memory: Literal["host", "gpu"]


def extra_reserved_mib(model: ModelConfig) -> list[Reservation]:
    """Memory the model's flags reserve outside its GPU budget, where vLLM documents it.

    Every model ocrtui serves is sent images, so vLLM's multi-modal processor cache applies
    unless ``--mm-processor-cache-gb 0``. Only ``extra_args`` can set these options
    (``serve_argv`` adds none of them).
    """
    options = serve_options(model.extra_args)
    gib = _float(options.get("--mm-processor-cache-gb"), MM_PROCESSOR_CACHE_DEFAULT_GIB.value)
    if gib <= 0:
        return []
    engines = data_parallel_size(model)
    # vLLM starts one API server per engine unless told otherwise.
    api_servers = _int(options.get("--api-server-count"), engines)
    if api_servers == engines or options.get("--mm-processor-cache-type") == "shm":
        copies, who = api_servers, "API server" + ("s" if api_servers != 1 else "")
    else:
        # Engine-args docs: one cache per API and engine process.
        copies = api_servers + engines
        who = f"processes ({api_servers} API servers + {engines} engine{'s' * (engines > 1)})"
    return [
        Reservation(
            f"multi-modal processor cache: {gib:g} GiB of host RAM x {copies} {who} "
            "(--mm-processor-cache-gb 0 turns it off)",
            round(gib * MIB_PER_GIB * copies),
            "host",
        )
    ]


def _float(value: object, default: float) -> float:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return default
    return default


def _int(value: object, default: int) -> int:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default
