"""Runs ON the pod: which vLLM, transformers, torch and mistral_common a ``vllm_command``
runs with.

Shipped as source on stdin (``python3 - VLLM_COMMAND_JSON [--env ENV_JSON] [--pid PID]``),
like the agent: standard library only, Python >= 3.8 syntax, imports nothing from ocrtui.
Prints one JSON object and exits 0 whatever it finds:

    {"interpreter": path | null, "vllm": str | null, "transformers": str | null,
     "torch": str | null, "mistral_common": str | null, "error": str | null,
     "argv": [str] | null}

The interpreter is the one the command runs: the command itself when it is a Python
(``python -m vllm...``), else the shebang of its executable (``#!/venv/bin/python``,
``#!/usr/bin/env python3``, pip's ``/bin/sh`` trampoline for long paths), else ``python``
next to the executable (a venv's bin/). The versions are read with importlib.metadata in
that interpreter, so no package is imported, with ``ENV_JSON`` (the model's ``PYTHONPATH``
and other ``PYTHON*`` variables) added to the environment as the launch adds them: a
transformers put first on a model's ``PYTHONPATH`` is the one read. ``argv`` is
``/proc/PID/cmdline`` of the given pid (the running API server), null without one or when
unreadable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

VERSIONS = """
import json
try:
    from importlib import metadata
except ImportError:
    metadata = None
out = {}
for name in ("vllm", "transformers", "torch", "mistral_common"):
    try:
        out[name] = metadata.version(name) if metadata else None
    except Exception:
        out[name] = None
print(json.dumps(out))
"""
TIMEOUT_S = 60
PACKAGES = ("vllm", "transformers", "torch", "mistral_common")


def _is_python(path: str) -> bool:
    return os.path.basename(path).startswith("python")


def _shebang_interpreter(exe: str) -> str | None:
    try:
        with open(exe, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    if not head or not head[0].startswith("#!"):
        return None
    words = head[0][2:].split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env" and len(words) > 1:
        return shutil.which(words[-1])
    if _is_python(words[0]):
        return words[0]
    # pip writes a /bin/sh trampoline when the interpreter path is too long for a shebang:
    # '''exec' "/long/path/bin/python" "$0" "$@"
    for line in head[1:3]:
        if line.startswith("'''exec'"):
            parts = line.split('"')
            if len(parts) > 1 and _is_python(parts[1]):
                return parts[1]
    return None


def interpreter_of(command: list[str]) -> tuple[str | None, str | None]:
    """(interpreter path or None, why not)."""
    if not command:
        return None, "empty vllm_command"
    exe = shutil.which(command[0])
    if exe is None:
        return None, f"{command[0]}: not found on the pod's PATH"
    if _is_python(exe):
        return exe, None
    found = _shebang_interpreter(exe)
    if found:
        return found, None
    sibling = os.path.join(os.path.dirname(exe), "python")
    if os.access(sibling, os.X_OK):
        return sibling, None
    return None, f"{exe}: no Python interpreter found in its shebang or next to it"


def read_versions(
    interpreter: str, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], str | None]:
    try:
        done = subprocess.run(
            [interpreter, "-c", VERSIONS],
            capture_output=True,
            timeout=TIMEOUT_S,
            env=dict(os.environ, **env) if env else None,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {}, f"{interpreter}: {exc}"
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return {}, f"{interpreter} exited {done.returncode}: {tail[0]}"
    try:
        found = json.loads(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        found = None
    if not isinstance(found, dict):
        return {}, f"{interpreter} printed no versions"
    return found, None


def server_argv(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a] or None


def _options(argv: list[str]) -> dict[str, str]:
    """``--env X --pid Y`` after the command, as ``{"env": X, "pid": Y}``."""
    found: dict[str, str] = {}
    rest = list(argv)
    while rest:
        word = rest.pop(0)
        if word in ("--env", "--pid") and rest:
            found[word[2:]] = rest.pop(0)
    return found


def _env(text: str | None) -> dict[str, str]:
    try:
        env = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(env, dict):
        return {}
    return {str(k): str(v) for k, v in env.items()}


def main(argv: list[str]) -> int:
    out: dict[str, Any] = {
        "interpreter": None, "vllm": None, "transformers": None, "torch": None,
        "mistral_common": None, "error": None, "argv": None,
    }  # fmt: skip
    try:
        command = json.loads(argv[0])
    except (IndexError, ValueError):
        command = None
    options = _options(argv[1:])
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        out["error"] = "usage: versions.py VLLM_COMMAND_JSON [--env ENV_JSON] [--pid PID]"
    else:
        interpreter, why = interpreter_of(command)
        out["interpreter"] = interpreter
        if interpreter is None:
            out["error"] = why
        else:
            found, why = read_versions(interpreter, _env(options.get("env")))
            for name in PACKAGES:
                value = found.get(name)
                out[name] = value if isinstance(value, str) else None
            out["error"] = why
    pid = options.get("pid")
    if pid is not None and pid.isdigit():
        out["argv"] = server_argv(int(pid))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
