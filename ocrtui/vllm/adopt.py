"""Adopting servers ocrtui did not start: ``ocrtui adopt`` and the dashboard's ``a``.

The agent's sample lists every vLLM API server on the pod with its argv
(``monitor/agent_samples.py`` ``VllmProc.argv``); a server whose port and served name no
``[[models]]`` entry has is a stranger. Each becomes a ``[[models]]`` block to paste: its
``vllm serve`` argv parsed back into the fields :func:`ocrtui.vllm.plan.serve_argv` writes
(``name``, ``model``, ``port``, ``gpu_memory_utilization``, ``max_num_seqs``,
``max_model_len``), the rest kept in order in ``extra_args``, so that once pasted a restart
launches the argv it ran with (order aside). An ``--api-key`` value is never printed: it
becomes ``api_key_env`` (the key then goes through ``VLLM_API_KEY``, as for every model).
A flag the argv lacks is written with vLLM's default and a comment saying so.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import tomli_w

from ocrtui.config import Config
from ocrtui.monitor.agent_samples import AgentSample

API_KEY_ENV = "VLLM_API_KEY"  # the name the block suggests for a server's --api-key
# vLLM's defaults for what serve_argv always passes: written when the argv lacks the flag.
VLLM_DEFAULTS: dict[str, Any] = {"gpu_memory_utilization": 0.9, "max_num_seqs": 256}
_FIELDS = {
    "--port": ("port", int),
    "--served-model-name": ("name", str),
    "--gpu-memory-utilization": ("gpu_memory_utilization", float),
    "--max-num-seqs": ("max_num_seqs", int),
    "--max-model-len": ("max_model_len", int),
    "--model": ("model", str),
}


@dataclass(frozen=True)
class Stranger:
    """A vLLM API server on the pod that no ``[[models]]`` entry names."""

    pid: int
    port: int | None
    served: str | None
    argv: tuple[str, ...]
    gpu_mib: int  # GPU memory held by its process tree (NVML's rows under it)

    def describe(self) -> str:
        """Comment lines naming it: pid, port, served name, GPU memory, argv (key hidden)."""
        head = f"# pid {self.pid}, port {self.port}, served {self.served!r}, GPU {self.gpu_mib} MiB"
        return f"{head}\n# argv: {shlex.join(redacted(self.argv))}"

    def block(self) -> str:
        """Its ``[[models]]`` block, after :meth:`describe`; a comment where the argv does
        not say ``vllm serve`` (unreadable, or replaced by a process title)."""
        try:
            return f"{self.describe()}\n{model_block(self.argv)}"
        except ValueError as exc:
            return f"{self.describe()}\n# no block: {exc}\n"


def strangers(sample: AgentSample, config: Config) -> list[Stranger]:
    ports = {m.port for m in config.models}
    names = {m.name for m in config.models}
    out = []
    for v in sample.vllm:
        if v.kind != "api" or v.port in ports or v.served in names:
            continue
        mib = sum(
            p.used_mib or 0
            for p in sample.procs
            if p.pid == v.pid or v.pid in p.ancestors or (v.pgid and p.pgid == v.pgid)
        )
        out.append(Stranger(v.pid, v.port, v.served, v.argv, mib))
    return out


def redacted(argv: Sequence[str]) -> list[str]:
    """``argv`` with an ``--api-key``'s value hidden."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--api-key" and i + 1 < len(out):
            out[i + 1] = "***"
        elif arg.startswith("--api-key="):
            out[i] = "--api-key=***"
    return out


def serve_args(argv: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """(the command before ``serve``, the arguments after it), or None: not ``... serve``."""
    if "serve" not in argv:
        return None
    i = list(argv).index("serve")
    return list(argv[:i]), list(argv[i + 1 :])


def model_fields(argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """A ``[[models]]`` table's fields from a ``vllm serve`` argv, and comment lines."""
    split = serve_args(argv)
    if split is None:
        shown = shlex.join(redacted(argv))[:200]
        raise ValueError(f"not a `vllm serve` command line: {shown or '(unreadable)'}")
    rest = split[1]
    fields: dict[str, Any] = {}
    extra: list[str] = []
    comments: list[str] = []
    if rest and not rest[0].startswith("-"):
        fields["model"] = rest.pop(0)
    i = 0
    while i < len(rest):
        arg = rest[i]
        flag, eq, inline = arg.partition("=")
        takes_value = flag in _FIELDS or flag == "--api-key"
        if takes_value:
            value = inline if eq else (rest[i + 1] if i + 1 < len(rest) else "")
            i += 1 if eq else 2
            if flag == "--api-key":
                fields["api_key_env"] = API_KEY_ENV
                comments.append(f"# its --api-key: export {API_KEY_ENV} with the key (not shown)")
            else:
                key, kind = _FIELDS[flag]
                fields[key] = kind(value)
            continue
        extra.append(arg)
        i += 1
    if "model" not in fields:
        raise ValueError("no model in the `vllm serve` command line")
    fields.setdefault("name", fields["model"])
    for key, default in VLLM_DEFAULTS.items():
        if key not in fields:
            fields[key] = default
            comments.append(f"# {key}: not in its argv; {default} is vLLM's default")
    if extra:
        fields["extra_args"] = extra
    order = ["name", "model", "port", "gpu_memory_utilization", "max_num_seqs"]
    order += ["max_model_len", "api_key_env", "extra_args"]
    return {k: fields[k] for k in order if k in fields}, comments


def model_block(argv: Sequence[str]) -> str:
    """The ``[[models]]`` block to paste for a server started with ``argv``."""
    fields, comments = model_fields(argv)
    text = tomli_w.dumps({"models": [fields]})
    return "".join(c + "\n" for c in comments) + text
