"""Serve sweeps: one model, one arm per flag set (`ocrtui compare --serve-sweep FILE`).

The file (TOML, schema ``config.ServeSweepConfig`` / ``FlagSetConfig``, documented in
docs/compare.md):

    model = "glm-ocr"              # a [[models]] name
    concurrencies = [1, 5, 16]     # optional
    [[flags]]
    speculative_tokens = 0         # no MTP
    [[flags]]
    speculative_tokens = 3
    max_num_seqs = 32

:func:`load_serve_sweep` reads and checks it against the config (every problem one
ConfigError line naming the file and the key); each flag set becomes a :class:`SweepArm`:
its name (``glm-ocr[mtp=3 max_num_seqs=32]``, or ``glm-ocr[NAME]``) and the ModelConfig it is
served with (same served name and port, other flags). The run itself is an ordinary
comparison whose arms are these (``launch.start_comparison`` restarts the model through the
lifecycle before each arm and back to its configured flags at the end: ``launch.SweepServer``);
summary.json's ``serve_sweep`` (:class:`~ocrtui.compare.results.ServeSweepRecord`) says
which arms a sweep made and what each one changed. Pure, apart from reading the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ocrtui.compare.results import ServeSweepRecord
from ocrtui.config import Config, FlagSetConfig, ModelConfig, ServeSweepConfig, validate_toml
from ocrtui.errors import ConfigError
from ocrtui.userfiles import UserFileError, display_path, load_toml

SPECULATIVE_OPTION = "--speculative-config"


@dataclass(frozen=True)
class SweepArm:
    """One flag set: the arm's name and the settings its server is started with."""

    name: str
    config: ModelConfig
    changes: tuple[tuple[str, object], ...]  # (setting, value) as the file set them


@dataclass(frozen=True)
class ServeSweep:
    """A sweep file, checked: the model as configured, its arms in file order."""

    file: str  # as shown to the user
    model: ModelConfig
    concurrencies: tuple[int, ...]
    arms: tuple[SweepArm, ...]

    def record(self) -> ServeSweepRecord:
        return ServeSweepRecord(
            self.model.name, self.file, tuple((a.name, dict(a.changes)) for a in self.arms)
        )


def load_serve_sweep(path: str, config: Config) -> ServeSweep:
    """The sweep file at ``path`` for ``config``'s models; ConfigError naming the file, the
    key and the problem."""
    p = Path(path).expanduser()
    try:
        data = load_toml(p, what="serve sweep file")
    except UserFileError as exc:
        raise ConfigError(str(exc)) from None
    source = display_path(p)
    sweep = validate_toml(ServeSweepConfig, data, source)
    names = [m.name for m in config.models]
    if sweep.model not in names:
        raise ConfigError(
            f"{source}: model: no [[models]] named {sweep.model!r} (configured: {', '.join(names)})"
        )
    model = config.model(sweep.model)
    arms: list[SweepArm] = []
    for i, flags in enumerate(sweep.flags):
        arm = _arm(model, flags, f"{source}: flags[{i}]")
        twin = next((j for j, a in enumerate(arms) if a.name == arm.name), None)
        if twin is not None:
            raise ConfigError(
                f"{source}: flags[{i}]: the arm name {arm.name!r} is also flags[{twin}]'s: "
                "give one of them a name"
            )
        arms.append(arm)
    return ServeSweep(source, model, sweep.concurrencies, tuple(arms))


def _arm(model: ModelConfig, flags: FlagSetConfig, where: str) -> SweepArm:
    changes = tuple(
        (key, value)
        for key, value in flags.model_dump(exclude={"name"}).items()
        if value is not None and value != ()
    )
    label = flags.name or " ".join(_shown(k, v) for k, v in changes) or "as configured"
    try:
        served = serve_config(model, flags)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}: {msg}") from None
    return SweepArm(f"{model.name}[{label}]", served, changes)


def _shown(key: str, value: object) -> str:
    if key == "speculative_tokens":
        return "no-mtp" if value == 0 else f"mtp={value}"
    if key == "render_longest_side":
        return f"side={value}"
    if isinstance(value, tuple):
        return " ".join(value)
    return f"{key}={value}"


def serve_config(model: ModelConfig, flags: FlagSetConfig) -> ModelConfig:
    """``model`` with the flag set's settings (validated as a [[models]] entry is)."""
    update: dict[str, object] = {
        k: getattr(flags, k)
        for k in ("max_num_seqs", "max_model_len", "gpu_memory_utilization", "render_longest_side")
        if getattr(flags, k) is not None
    }
    extra = list(model.extra_args)
    if flags.speculative_tokens is not None:
        extra = without_option(extra, SPECULATIVE_OPTION)
        if flags.speculative_tokens:
            spec = {"method": "mtp", "num_speculative_tokens": flags.speculative_tokens}
            extra += [SPECULATIVE_OPTION, json.dumps(spec)]
    update["extra_args"] = (*extra, *flags.extra_args)
    return ModelConfig.model_validate({**model.model_dump(), **update})


def without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` less ``option`` (``--opt V``, ``--opt=V``, ``--opt.key V`` and the
    underscore spellings, as vLLM reads them)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        flag, eq, _ = arg.partition("=")
        head = flag.split(".", 1)[0].replace("_", "-")
        if head == option:
            skip = not eq
            continue
        out.append(arg)
    return out
