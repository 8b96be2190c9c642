"""Settings schema and TOML loading.

Lookup order: ``--config FILE``, ``$OCRTUI_CONFIG``, ``./ocrtui.toml``, the user config dir.
Every validation problem becomes one :class:`ConfigError` line naming the file, the key and
what is wrong, so the CLI can exit 2 without a traceback.

A file describes one pod (``[pod]`` with top-level ``[[models]]``, ``[[services]]``,
``[[api_arms]]``) or several (``[[pods]]``, each entry a ``[pod]`` table with a required
``name`` and its own ``[[pods.models]]``, ``[[pods.services]]``, ``[[pods.api_arms]]``).
:func:`load_fleet` reads either into a :class:`Fleet`: one single-pod :class:`Config` per
pod, each validated as a ``[pod]`` file would be (its errors prefixed ``pods[i] (name)``),
sharing ``[compare]``, ``[ui]``, ``[export]`` and ``[watchdog]``. Names of models, services
and API arms are unique across the fleet, so a name alone says which pod it is on.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ocrtui.errors import ConfigError
from ocrtui.jsonpath import compile_path
from ocrtui.published import PROFILES, Profile
from ocrtui.userfiles import (
    DEFAULT_MAX_FILE_MB,
    DEFAULT_MAX_PAGE_MPX,
    MB,
    FileLimits,
    UserFileError,
    display_path,
    load_toml,
)

CONFIG_ENV = "OCRTUI_CONFIG"
CONFIG_NAME = "ocrtui.toml"

# What a POSIX shell accepts as a variable name (the pod exports env through `env`).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
_FILE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def check_env(env: dict[str, str]) -> dict[str, str]:
    """The ``env`` of a model or service. Checked at load, not at launch: the pod's shell
    snippet would refuse them with a traceback only after `up` had started others."""
    for key, value in env.items():
        if not ENV_NAME.fullmatch(key):
            raise ValueError(f"{key!r} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if "\n" in value or "\r" in value or "\0" in value:
            raise ValueError(f"{key}: the value must be one line without NUL bytes")
    return env


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# Ready-made [pod.provider] settings for the rentals' own CLIs; ``{id}`` is ``pod_id``.
# runpodctl v2 prints JSON by default: `pod get` merges the REST pod (desiredStatus,
# costPerHr) with an `ssh` block (ip, port; an `error` instead while the pod is not ready).
# vastai prints the instance's API record with --raw (actual_status, ssh_host, ssh_port,
# dph_total). Recorded outputs and their sources: tests/pod/provider_outputs/.
PROVIDER_PRESETS: dict[str, dict[str, Any]] = {
    "runpodctl": {
        "status_command": ("runpodctl", "pod", "get", "{id}"),
        "start_command": ("runpodctl", "pod", "start", "{id}"),
        "state_json": "desiredStatus",
        "running_values": ("RUNNING",),
        "stopped_values": ("EXITED", "TERMINATED"),
        "ssh_host_json": "ssh.ip",
        "ssh_port_json": "ssh.port",
        "price_json": "costPerHr",
    },
    "vastai": {
        "status_command": ("vastai", "show", "instance", "{id}", "--raw"),
        "start_command": ("vastai", "start", "instance", "{id}"),
        "state_json": "actual_status",
        "running_values": ("running",),
        "stopped_values": ("exited", "stopped", "offline"),
        # docs.vast.ai, `vastai start instance`: stuck in "scheduling" means the machine's
        # resources are unavailable.
        "no_gpu_values": ("scheduling",),
        "ssh_host_json": "ssh_host",
        "ssh_port_json": "ssh_port",
        "price_json": "dph_total",
    },
}


class ProviderConfig(_Section):
    """The pod's power state, asked on THIS machine (the operator's), never over SSH: the
    rental's own tool, e.g. ``python3 scripts/runpod_manager.py --action status``. Its output
    is read with ``state_json`` (a path in JSON output, ocrtui/jsonpath.py) or else
    ``state_regex`` (the group named ``state``, else the whole match); the value is compared
    case-insensitively with ``running_values`` / ``stopped_values``. With JSON output,
    ``ssh_host_json`` / ``ssh_port_json`` say where SSH answers after a start and
    ``price_json`` the price per hour; a value in ``no_gpu_values`` is stopped, waiting for a
    GPU on the pod's host.

    ``preset = "runpodctl" | "vastai"`` with ``pod_id`` fills every key it does not set
    (``PROVIDER_PRESETS``). ``idle_notice_min``: after this many minutes with no request
    to any model, the status says the pod is idle (and what it costs)."""

    preset: Literal["runpodctl", "vastai"] | None = None
    pod_id: str | None = Field(default=None, min_length=1)
    status_command: tuple[str, ...] = Field(min_length=1)
    start_command: tuple[str, ...] | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    state_json: str | None = None
    state_regex: str = r"(?i)\b(?P<state>running|stopped|exited)\b"
    running_values: tuple[str, ...] = ("running",)
    stopped_values: tuple[str, ...] = ("stopped", "exited")
    # States meaning a start waits for a GPU on the pod's host: stopped, with that hint.
    no_gpu_values: tuple[str, ...] = ()
    ssh_host_json: str | None = None
    ssh_port_json: str | None = None
    price_json: str | None = None
    idle_notice_min: float | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or data.get("preset") is None:
            return data
        preset = PROVIDER_PRESETS.get(data["preset"])
        if preset is None:
            return data  # the Literal names the choices
        pod_id = data.get("pod_id")
        if not isinstance(pod_id, str) or not pod_id:
            raise ValueError(f"preset {data['preset']!r} needs 'pod_id' (the pod or instance id)")
        filled = dict(data)
        for key, value in preset.items():
            if key not in filled:
                argv = isinstance(value, tuple) and key.endswith("_command")
                filled[key] = tuple(a.format(id=pod_id) for a in value) if argv else value
        return filled

    @model_validator(mode="after")
    def _check(self) -> ProviderConfig:
        if self.start_command is not None and not self.start_command:
            raise ValueError("'start_command' must not be empty")
        for key in ("state_json", "ssh_host_json", "ssh_port_json", "price_json"):
            value = getattr(self, key)
            if value is None:
                continue
            if key != "state_json" and self.state_json is None:
                raise ValueError(f"'{key}' reads JSON output: it needs 'state_json' too")
            try:
                compile_path(value)
            except ValueError as exc:
                raise ValueError(f"{key} {exc}") from None
        try:
            re.compile(self.state_regex)
        except re.error as exc:
            raise ValueError(f"state_regex {self.state_regex!r}: {exc}") from None
        return self


class PodConfig(_Section):
    """How to reach the pod. ``kind = "local"`` runs everything on this machine."""

    kind: Literal["ssh", "local"] = "ssh"
    name: str = ""
    host: str = ""
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    # Recording an unknown host key must be asked for explicitly; never implied.
    accept_new_host_key: bool = False
    ssh_config: str | None = None
    keepalive_interval_s: float = Field(default=1.0, gt=0, le=60)
    keepalive_count_max: int = Field(default=3, ge=1, le=100)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    workdir: str = "~"
    python: str = "python3"
    vllm_command: tuple[str, ...] = ("vllm",)
    agent_interval_s: float = Field(default=1.0, ge=0.25, le=10)
    # Directory of a simulated GPU (demo pod and tests); never set for a real pod.
    sim_gpu: str | None = None
    provider: ProviderConfig | None = None

    @model_validator(mode="after")
    def _ssh_needs_host(self) -> PodConfig:
        if self.kind == "ssh" and not self.host:
            raise ValueError("kind = 'ssh' needs 'host' (a hostname or ~/.ssh/config alias)")
        if not self.vllm_command:
            raise ValueError("'vllm_command' must not be empty")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return "local" if self.kind == "local" else self.host


class ReplicaConfig(_Section):
    """One replica of a model served behind a router: its own vLLM server on ``port``, with
    ``env`` (its ``CUDA_VISIBLE_DEVICES``, say) over the model's."""

    port: int = Field(ge=1, le=65535)
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _on_its_models_pod(cls, data: object) -> object:
        """A replica on another pod is refused with the reason, not as an unknown key: the
        router reaches its workers on its own pod's loopback, and another pod's port is
        reachable only where its provider publishes it, unauthenticated
        (docs/lifecycle.md#replicas-across-pods)."""
        if isinstance(data, Mapping) and "pod" in data:
            raise ValueError(
                "replicas across pods are not supported: the router reaches its replicas on "
                "its own pod's 127.0.0.1; serve the model on each pod as its own arm "
                "(docs/lifecycle.md#replicas-across-pods)"
            )
        return data

    @field_validator("env")
    @classmethod
    def _env_entries(cls, v: dict[str, str]) -> dict[str, str]:
        return check_env(v)


class ModelConfig(_Section):
    """One vLLM server on the pod; or, with ``replicas``, a router on ``port`` in front of one
    server per replica (:meth:`Config.routed`)."""

    name: str = Field(min_length=1, description="--served-model-name")
    model: str = Field(min_length=1, description="the vLLM model id")
    port: int = Field(ge=1, le=65535)
    gpu_memory_utilization: float
    max_num_seqs: int = Field(default=16, ge=1)
    max_model_len: int | None = Field(default=None, ge=1)
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    log_file: str | None = None
    start_order: int | None = None
    profile: Profile = "generic"
    prompt: str | None = None
    # None: the profile's published value (ocrtui/published.py), see effective_max_tokens.
    max_tokens: int | None = Field(default=None, ge=1)
    # Pages rendered to this longest side (px) instead of the profile's published rendering
    # (compare/profiles.py render_target), e.g. to measure what a smaller page costs.
    render_longest_side: int | None = Field(default=None, ge=64, le=20000)
    # Comparison requests stream (SSE) so TTFT/TPOT/ITL are measured and the panes show
    # text as it arrives; False sends one non-streamed request per page (compare/client.py).
    stream: bool = True
    # The key itself never lives in config: it is read from this environment variable.
    api_key_env: str | None = None
    min_memory_gib: float | None = Field(default=None, gt=0)
    ready_timeout_s: float = Field(default=900.0, gt=0)
    # Further names the server answers to (vLLM's --served-model-name takes several): a
    # replica answers to its model's name, which the router passes on.
    served_aliases: tuple[str, ...] = ()
    replicas: tuple[ReplicaConfig, ...] = ()
    # The router started in front of the replicas, given --port and --worker-urls...; or
    # router_service, a [[services]] entry whose command gets the --worker-urls appended.
    router_command: tuple[str, ...] = Field(default=("vllm-router",), min_length=1)
    router_service: str | None = None
    # vllm-router serves Prometheus metrics on 29000 unless told: two routers on one pod need
    # their own ports (the second fails "Address already in use").
    router_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("name", "model", "log_file")
    @classmethod
    def _one_line(cls, v: str | None) -> str | None:
        if v is not None and _UNPRINTABLE.search(v):
            raise ValueError(f"must be one line without control characters, got {v!r}")
        return v

    @field_validator("log_file")
    @classmethod
    def _log_file(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or v.endswith("/")):
            raise ValueError(f"must name a file, got {v!r}")
        return v

    @field_validator("env")
    @classmethod
    def _env_entries(cls, v: dict[str, str]) -> dict[str, str]:
        return check_env(v)

    @field_validator("gpu_memory_utilization")
    @classmethod
    def _utilization_range(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise ValueError(f"must be in (0, 1], got {v}")
        return v

    @model_validator(mode="after")
    def _max_tokens_fit(self) -> ModelConfig:
        # vLLM refuses every such request with HTTP 400 ("max_tokens=N cannot be greater
        # than max_model_len=M"); /v1/models' value is checked at run start (fit_max_tokens).
        tokens = self.effective_max_tokens()
        if self.max_model_len is not None and tokens > self.max_model_len:
            whose = "max_tokens"
            if self.max_tokens is None:
                whose += f" (the {self.profile} profile's default)"
            raise ValueError(
                f"{whose} {tokens} is more than max_model_len {self.max_model_len}: vLLM "
                "would refuse every request; lower max_tokens or raise max_model_len"
            )
        return self

    def effective_max_tokens(self) -> int:
        """max_tokens as sent: the configured value, else the profile's published one."""
        if self.max_tokens is not None:
            return self.max_tokens
        return PROFILES[self.profile].max_tokens.value

    def log_path(self, workdir: str) -> str:
        """The server's log on the pod; a served name like ``org/model`` stays one file
        name (``vllm_org_model.log``), never a path into a folder nobody created."""
        if self.log_file:
            return self.log_file
        return f"{workdir.rstrip('/')}/vllm_{_FILE_UNSAFE.sub('_', self.name)}.log"

    def log_dir(self, workdir: str) -> str:
        """The folder the log goes in: the lifecycle creates it (``mkdir -p``) and checks it
        is writable before it launches, so it never waits on a server whose log cannot be
        written."""
        return posixpath.dirname(self.log_path(workdir)) or "."

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class CompareConfig(_Section):
    concurrency: int = Field(default=5, ge=1, le=256)
    warm_runs: int = Field(default=10, ge=1)
    throughput_requests: int = Field(default=20, ge=1)  # per concurrency level
    # The levels `ocrtui compare --sweep` measures throughput at (with `concurrency`), as the
    # vendors do: the SDK keeps 32 regions in flight, the lightonai client 64 pages.
    sweep: tuple[Annotated[int, Field(ge=1, le=256)], ...] = Field(
        default=(1, 5, 16, 32, 64), min_length=1
    )
    # The knee of a sweep: the highest concurrency whose latency p95 stays within this bound.
    knee_p95_s: float = Field(default=30.0, gt=0)
    schedule: Literal["sequential", "parallel"] = "sequential"
    out_dir: str = "runs"
    retries: int = Field(default=3, ge=0)
    request_timeout_s: float = Field(default=300.0, gt=0)
    # How long one pause (link down, a model's server crashed/unhealthy) may last before the
    # run stops, keeping what is done for --resume.
    outage_budget_s: float = Field(default=600.0, gt=0)
    render_workers: int = Field(default=2, ge=1)
    max_rendered_pages: int = Field(default=8, ge=1)
    image_format: Literal["jpeg", "png"] = "jpeg"
    suite: str | None = None
    # Caps on what a document may be (see userfiles.py); larger ones are per-document errors.
    max_file_mb: float = Field(default=DEFAULT_MAX_FILE_MB, gt=0)
    max_page_mpx: float = Field(default=DEFAULT_MAX_PAGE_MPX, gt=0)

    def file_limits(self) -> FileLimits:
        return FileLimits(round(self.max_file_mb * MB), round(self.max_page_mpx * MB))


def int_limits(section: type[BaseModel], name: str) -> tuple[int | None, int | None]:
    """The schema's inclusive bounds of an integer setting (None: unbounded), for the front
    ends that show them."""
    low = high = None
    for bound in section.model_fields[name].metadata:
        low = getattr(bound, "ge", low)
        high = getattr(bound, "le", high)
    return low, high


class ServiceConfig(_Section):
    """A non-vLLM process on the pod (an API server in front of a model, say), run like the
    models: detached in its own session, output appended to ``log_file``."""

    name: str = Field(min_length=1)
    command: tuple[str, ...] = Field(min_length=1, description="argv, never a shell string")
    port: int = Field(ge=1, le=65535)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None  # default: [pod] workdir
    log_file: str | None = None  # default: <workdir>/<name>.log
    # Ready when GET ready_path answers 2xx; without it, when the port accepts connections.
    ready_path: str | None = None
    after: tuple[str, ...] = ()  # models or services that must be ready first
    gpu: bool = False  # it may hold VRAM: reported in its status, for the GPU panel
    ready_timeout_s: float = Field(default=120.0, gt=0)

    @field_validator("env")
    @classmethod
    def _env_entries(cls, v: dict[str, str]) -> dict[str, str]:
        return check_env(v)

    @field_validator("ready_path")
    @classmethod
    def _absolute_path(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError(f"must start with '/', got {v!r}")
        return v

    def log_path(self, workdir: str) -> str:
        if self.log_file:
            return self.log_file
        return f"{(self.workdir or workdir).rstrip('/')}/{self.name}.log"


class ApiArmConfig(_Section):
    """A comparison arm that is an HTTP document API (multipart upload of the document)
    rather than a vLLM chat endpoint. The request and the response mapping are described
    in ``ocrtui/compare/docapi.py``."""

    name: str = Field(min_length=1)
    # Where it answers: exactly one of a [[services]] name or a pod port (both through the
    # pod's forward), or a URL this machine reaches as it is.
    service: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    url: str | None = None
    path: str = Field(min_length=1)  # e.g. "/api/ocr/document"
    file_field: str = "file"
    form: dict[str, str] = Field(default_factory=dict)
    pages_field: str | None = "pages"  # None: the API gets no page spec
    # "document": one request for all pages (pages=1-3); "page": one request per page (pages=N).
    split: Literal["document", "page"] = "document"
    text_path: str  # where the per-page texts are, e.g. "pages[*].text" (ocrtui/jsonpath.py)
    page_path: str | None = None  # the page numbers beside them, e.g. "pages[*].page"
    timeout_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ApiArmConfig:
        given = [k for k in ("service", "port", "url") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"api arm {self.name!r} needs exactly one of 'service', 'port' or 'url'"
                + (f" (got {' and '.join(given)})" if given else "")
            )
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"api arm {self.name!r}: url must start with http:// or https://")
        if not self.path.startswith("/"):
            raise ValueError(f"api arm {self.name!r}: path must start with '/'")
        for key in ("text_path", "page_path"):
            value = getattr(self, key)
            if value is not None:
                try:
                    compile_path(value)
                except ValueError as exc:
                    raise ValueError(f"{key} {exc}") from None
        return self


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"


def parse_listen(text: str, *, allow_remote: bool) -> ListenAddress:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0 picks a free one); ConfigError for a
    malformed one, and for a non-loopback host unless ``allow_remote``."""
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"listen address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    if not allow_remote and not _is_loopback(host):
        raise ConfigError(
            f"listen address {text!r} is not a loopback address: the metrics name the pod's "
            "processes; allow it explicitly (--allow-remote, [export] allow_remote = true)"
        )
    return ListenAddress(host, int(port_text))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


class ExportConfig(_Section):
    """The metrics endpoint (ocrtui/export.py): ``listen = "127.0.0.1:9464"`` serves
    OpenMetrics at ``http://127.0.0.1:9464/metrics`` while the dashboard or ``ocrtui
    compare`` (headless too) runs. A
    non-loopback address needs ``allow_remote = true``: the series name the pod's
    processes."""

    listen: str | None = None
    allow_remote: bool = False

    @model_validator(mode="after")
    def _check(self) -> ExportConfig:
        if self.listen is not None:
            try:
                parse_listen(self.listen, allow_remote=self.allow_remote)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    @property
    def address(self) -> ListenAddress | None:
        if self.listen is None:
            return None
        return parse_listen(self.listen, allow_remote=self.allow_remote)


class WatchdogConfig(_Section):
    """The watchdog (ocrtui/watchdog.py, ``ocrtui watch``): it restarts a model or service
    that is crashed, or unhealthy for ``unhealthy_after_s``; after ``max_restarts`` restarts
    of one within ``window_min`` minutes it stops trying that one (the crash-loop guard).
    Each action is appended to ``events`` as a JSON line (default: ``watchdog-events.jsonl``
    in the user state dir)."""

    unhealthy_after_s: float = Field(default=60.0, gt=0)
    max_restarts: int = Field(default=3, ge=1)
    window_min: float = Field(default=10.0, gt=0)
    events: str | None = None

    @property
    def events_path(self) -> Path:
        if self.events is not None:
            return Path(self.events).expanduser()
        return Path(platformdirs.user_state_dir("ocrtui")) / "watchdog-events.jsonl"


class UIConfig(_Section):
    theme: str = "ocrtui-dark"
    theme_dir: str | None = None
    screenshot_dir: str = "screenshots"
    refresh_s: float = Field(default=1.0, ge=0.25, le=10)
    keymap: dict[str, str] = Field(default_factory=dict)
    # The comparison's page pane: "auto" detects Sixel / Kitty graphics, else half-blocks.
    page_graphics: Literal["auto", "kitty", "sixel", "halfblock"] = "auto"


class Config(_Section):
    pod: PodConfig
    models: tuple[ModelConfig, ...]
    services: tuple[ServiceConfig, ...] = ()
    api_arms: tuple[ApiArmConfig, ...] = ()
    compare: CompareConfig = CompareConfig()
    ui: UIConfig = UIConfig()
    export: ExportConfig = ExportConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    _routed: tuple[ModelConfig, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _expand_replicas(self) -> Config:
        """A model with ``replicas`` becomes one model per replica (``<name>-r<i>``, on the
        replica's port and env, answering to ``<name>`` too) and a router service in front
        of them on the model's port; the model itself stays a comparison arm
        (:meth:`routed`) that is never launched. Runs before the checks below, which see
        the replicas and the router as any other model and service."""
        routed = [m for m in self.models if m.replicas]
        if not routed:
            return self
        models: list[ModelConfig] = []
        services = list(self.services)
        for i, m in enumerate(self.models):
            if not m.replicas:
                models.append(m)
                continue
            replicas = [
                m.model_copy(
                    update={
                        "name": f"{m.name}-r{j}",
                        "port": r.port,
                        "env": {**m.env, **r.env},
                        "served_aliases": (*m.served_aliases, m.name),
                        "replicas": (),
                        "log_file": None,
                    }
                )
                for j, r in enumerate(m.replicas)
            ]
            models += replicas
            workers = ("--worker-urls", *(f"http://127.0.0.1:{r.port}" for r in m.replicas))
            after = tuple(r.name for r in replicas)
            if m.router_service is None:
                services.append(
                    ServiceConfig(
                        name=router_name(m),
                        command=(*m.router_command, *_listen(m), *workers),
                        port=m.port,
                        after=after,
                        ready_path="/health",
                    )
                )
                continue
            named = [k for k, s in enumerate(services) if s.name == m.router_service]
            if not named:
                raise ValueError(
                    f"models[{i}].router_service: no service named {m.router_service!r}"
                )
            router = services[named[0]]
            if router.port != m.port:
                raise ValueError(
                    f"models[{i}].router_service {router.name!r} listens on {router.port}, "
                    f"not on the model's port {m.port}"
                )
            services[named[0]] = router.model_copy(
                update={"command": router.command + workers, "after": router.after + after}
            )
        expanded = self.model_copy(update={"models": tuple(models), "services": tuple(services)})
        expanded._routed = tuple(routed)
        return expanded

    @property
    def routed(self) -> tuple[ModelConfig, ...]:
        """The models served through a router (configured with ``replicas``): comparison arms
        on the router's port, never launched themselves."""
        return self._routed

    def routing(self) -> tuple[Routing, ...]:
        """Each routed model with the names of its replicas and of its router service."""
        return tuple(
            Routing(m.name, tuple(r.name for r in self.replicas_of(m.name)), router_name(m))
            for m in self._routed
        )

    def replicas_of(self, name: str) -> tuple[ModelConfig, ...]:
        """The replica models of a routed model, in order; () for any other name."""
        if not any(m.name == name for m in self._routed):
            return ()
        return tuple(m for m in self.models if name in m.served_aliases and m.name != name)

    @model_validator(mode="after")
    def _unique(self) -> Config:
        if not self.models:
            raise ValueError("at least one [[models]] table is needed")
        for attr in ("name", "port"):
            seen: dict[object, int] = {}
            for i, m in enumerate(self.models):
                value = getattr(m, attr)
                if value in seen:
                    raise ValueError(
                        f"models[{i}].{attr} {value!r} duplicates models[{seen[value]}].{attr}"
                    )
                seen[value] = i
        return self

    @model_validator(mode="after")
    def _services_and_arms(self) -> Config:
        owners: dict[str, str] = {m.name: f"models[{i}]" for i, m in enumerate(self.models)}
        ports: dict[int, str] = {m.port: f"models[{i}]" for i, m in enumerate(self.models)}
        for i, s in enumerate(self.services):
            if s.name in owners:
                raise ValueError(f"services[{i}].name {s.name!r} duplicates {owners[s.name]}.name")
            if s.port in ports:
                raise ValueError(f"services[{i}].port {s.port} duplicates {ports[s.port]}.port")
            owners[s.name] = f"services[{i}]"
            ports[s.port] = f"services[{i}]"
        for i, s in enumerate(self.services):
            for dep in s.after:
                if dep not in owners:
                    raise ValueError(
                        f"services[{i}].after: no model or service named {dep!r} "
                        f"(configured: {', '.join(owners)})"
                    )
        start_order(self)  # a cycle is a ValueError naming it
        services = {s.name for s in self.services}
        arms: dict[str, int] = {}
        for i, a in enumerate(self.api_arms):
            if a.name in arms or (a.name in owners and a.name not in services):
                other = f"api_arms[{arms[a.name]}]" if a.name in arms else owners[a.name]
                raise ValueError(f"api_arms[{i}].name {a.name!r} duplicates {other}.name")
            if a.service is not None and a.service not in services:
                raise ValueError(
                    f"api_arms[{i}].service: no service named {a.service!r} "
                    f"(configured: {', '.join(sorted(services)) or 'none'})"
                )
            arms[a.name] = i
        return self

    def service(self, name: str) -> ServiceConfig:
        for s in self.services:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.services) or "none"
        raise ConfigError(f"no service named {name!r} (configured: {known})")

    def ordered_models(self) -> list[ModelConfig]:
        """Models in start order: explicit ``start_order`` first, then file order."""
        indexed = list(enumerate(self.models))
        indexed.sort(
            key=lambda im: (
                (0, im[1].start_order, im[0])
                if im[1].start_order is not None
                else (1, im[0], im[0])
            )
        )
        return [m for _, m in indexed]

    def model(self, name: str) -> ModelConfig:
        for m in self.models:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.models)
        raise ConfigError(f"no model named {name!r} (configured: {known})")


@dataclass(frozen=True)
class Routing:
    """A routed model (:meth:`Config.routed`) by name: its replica models, in order, and the
    service that routes to them."""

    model: str
    replicas: tuple[str, ...]
    router: str


def router_name(m: ModelConfig) -> str:
    """The service in front of a routed model's replicas: ``router_service``, else the
    generated ``<name>-router``."""
    return m.router_service or f"{m.name}-router"


def _listen(m: ModelConfig) -> tuple[str, ...]:
    """Where a generated router listens: the pod's loopback (reached through the forward)
    on the model's port, and its metrics port when one is set."""
    metrics = ("--prometheus-port", str(m.router_metrics_port)) if m.router_metrics_port else ()
    return ("--host", "127.0.0.1", "--port", str(m.port), *metrics)


class FlagSetConfig(_Section):
    """One flag set of a serve sweep (``[[flags]]`` of an ``ocrtui compare --serve-sweep``
    file): the model's [[models]] settings it changes; a setting left out stays as
    configured."""

    # The arm's name after the model's, e.g. "glm-ocr[fast]"; default: the settings it
    # changes, e.g. "glm-ocr[mtp=3 max_num_seqs=32]".
    name: str | None = Field(default=None, min_length=1, max_length=60)
    # MTP speculative decoding: 0 serves without --speculative-config, N with
    # {"method": "mtp", "num_speculative_tokens": N} (replacing one in extra_args).
    speculative_tokens: int | None = Field(default=None, ge=0, le=16)
    # As in [[models]]:
    max_num_seqs: int | None = Field(default=None, ge=1)
    max_model_len: int | None = Field(default=None, ge=1)
    gpu_memory_utilization: float | None = None
    render_longest_side: int | None = Field(default=None, ge=64, le=20000)
    extra_args: tuple[str, ...] = ()  # appended to the model's extra_args

    @field_validator("name")
    @classmethod
    def _name_chars(cls, v: str | None) -> str | None:
        if v is not None and not _ARM_NAME.fullmatch(v):
            raise ValueError(f"letters, digits and . _ = - only, got {v!r}")
        return v

    @field_validator("gpu_memory_utilization")
    @classmethod
    def _utilization_range(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= 1:
            raise ValueError(f"must be in (0, 1], got {v}")
        return v


class ServeSweepConfig(_Section):
    """A serve sweep file: one model restarted once per flag set, every flag set run
    through the same pages at the same concurrencies (``compare/serve_sweep.py``)."""

    model: str = Field(min_length=1)  # a [[models]] name
    # Throughput levels every flag set is measured at, [compare] concurrency among them;
    # empty: [compare] concurrency alone (with --sweep, [compare] sweep's levels too).
    concurrencies: tuple[Annotated[int, Field(ge=1, le=256)], ...] = ()
    flags: tuple[FlagSetConfig, ...] = Field(min_length=1)


_ARM_NAME = re.compile(r"[A-Za-z0-9._=-]+")


def start_order(config: Config) -> list[list[str]]:
    """Names of models and services in waves: everything in a wave may start together once
    every earlier wave is done. Models keep their chain (each after the one before it in
    ``ordered_models``, which need not have started: ``services.in_waves``); a service
    waits for its ``after``. Within a wave: models in start
    order, then services in file order. A cycle is a ValueError naming it."""
    deps: dict[str, tuple[str, ...]] = {}
    previous: tuple[str, ...] = ()
    for m in config.ordered_models():
        deps[m.name] = previous
        previous = (m.name,)
    for s in config.services:
        deps[s.name] = s.after
    waves: list[list[str]] = []
    placed: set[str] = set()
    while len(placed) < len(deps):
        wave = [n for n, d in deps.items() if n not in placed and all(x in placed for x in d)]
        if not wave:
            raise ValueError(_describe_cycle({n: d for n, d in deps.items() if n not in placed}))
        waves.append(wave)
        placed.update(wave)
    return waves


def _describe_cycle(deps: Mapping[str, Sequence[str]]) -> str:
    """One cycle among names that all still wait on something, as 'a -> b -> a'."""
    path = [next(iter(deps))]
    while path.count(path[-1]) < 2:
        path.append(next(d for d in deps[path[-1]] if d in deps))
    cycle = path[path.index(path[-1]) :]
    first, second = cycle[0], cycle[1] if len(cycle) > 1 else cycle[0]
    return (
        f"services: {first!r} and {second!r} wait for each other (after: {' -> '.join(cycle)})"
        if first != second
        else f"services: {first!r} waits for itself (after = [{first!r}])"
    )


_S = TypeVar("_S", bound=BaseModel)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def parse_config(data: Mapping[str, Any], source: str) -> Config:
    """Validate already-parsed TOML. ``source`` names the file in error messages."""
    return validate_toml(Config, data, source)


def validate_toml(schema: type[_S], data: Mapping[str, Any], source: str) -> _S:
    """``data`` (parsed TOML) as ``schema``; one ConfigError line naming ``source``, the
    key and the problem."""
    # TOML arrays arrive as lists; the schema is frozen (tuples), so convert before strict checks.
    data = _tuples(data)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        # A misspelt key also makes its intended key "missing": report the misspelling.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        key = _format_loc(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {key}: {msg}{more}") from None


POD_TABLES = ("models", "services", "api_arms")  # what each [[pods]] entry holds of its own


@dataclass(frozen=True)
class Fleet:
    """Every pod of a config file, each as a one-pod :class:`Config`, in file order.
    ``several`` is False for a ``[pod]`` file (and a one-entry ``[[pods]]``)."""

    pods: tuple[Config, ...]
    listed: bool = False  # the file has [[pods]] (status --json lists them: headless.py)

    @property
    def several(self) -> bool:
        return len(self.pods) > 1

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.pod.label for c in self.pods)

    def pod(self, name: str) -> Config:
        for c in self.pods:
            if c.pod.label == name:
                return c
        raise ConfigError(f"no pod named {name!r} (configured: {', '.join(self.names)})")

    def only(self, name: str | None) -> Fleet:
        """The pod ``name`` alone (``--pod NAME``), or every pod for None."""
        return self if name is None else Fleet((self.pod(name),), self.listed)

    def of(self, names: Iterable[str]) -> Fleet:
        """The pods of these models, services or API arms (a run's arms), in file order."""
        wanted = {self.owner(n).pod.label for n in names}
        return Fleet(tuple(c for c in self.pods if c.pod.label in wanted), self.listed)

    def owner(self, name: str) -> Config:
        """The pod whose model, service or API arm ``name`` is (unique across the fleet)."""
        for c in self.pods:
            if name in _unit_names(c):
                return c
        known = ", ".join(n for c in self.pods for n in _unit_names(c))
        raise ConfigError(f"no model, service or API arm named {name!r} (configured: {known})")

    def arms_config(self) -> Config:
        """The comparison's view of the fleet: every pod's models and API arms in one
        Config with the shared sections. Each part was validated with its pod; the whole is
        not re-validated, since ports repeat across pods. Its ``pod`` is the first pod's:
        the compare layer reads only models, API arms and [compare] from it."""
        if not self.several:
            return self.pods[0]
        first = self.pods[0]
        return Config.model_construct(
            **{
                **dict(first),
                "models": tuple(m for c in self.pods for m in c.models),
                "services": tuple(s for c in self.pods for s in c.services),
                "api_arms": tuple(a for c in self.pods for a in c.api_arms),
            }
        )


def _unit_names(config: Config) -> list[str]:
    """Every name a pod answers for: models (a routed model's replicas and the model itself,
    the arm its router serves), services and API arms."""
    parts = (config.models, config.routed, config.services, config.api_arms)
    return [u.name for part in parts for u in part]


def parse_fleet(data: Mapping[str, Any], source: str) -> Fleet:
    """Validate a ``[pod]`` or a ``[[pods]]`` file (see the module docstring)."""
    if "pods" not in data:
        return Fleet((parse_config(data, source),))
    entries = data["pods"]
    if not isinstance(entries, list | tuple) or not entries:
        raise ConfigError(f"{source}: pods: expected [[pods]] tables, one per pod (one pod: [pod])")
    clash = [k for k in ("pod", *POD_TABLES) if k in data]
    if clash:
        raise ConfigError(
            f"{source}: {clash[0]}: with [[pods]], each pod's settings, models, services and "
            f"API arms go in its own entry ([[pods.{clash[0]}]] or the entry's keys)"
        )
    shared = {k: v for k, v in data.items() if k != "pods"}
    pods: list[Config] = []
    pod_names: dict[str, str] = {}  # -> where first
    seen: dict[str, str] = {}  # model, service and API arm names -> where first
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{source}: pods[{i}]: expected a table")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{source}: pods[{i}].name: every [[pods]] entry needs a name")
        where = f"pods[{i}] ({name})"
        if name in pod_names:
            raise ConfigError(f"{source}: {where}.name duplicates {pod_names[name]}")
        pod_names[name] = f"pods[{i}]"
        own = {k: entry[k] for k in POD_TABLES if k in entry}
        pod = {k: v for k, v in entry.items() if k not in POD_TABLES}
        config = parse_config({**shared, **own, "pod": pod}, f"{source}: {where}")
        for unit in _unit_names(config):
            if unit in seen:
                raise ConfigError(
                    f"{source}: {where}: {unit!r} is also on {seen[unit]}: names of models, "
                    "services and API arms are unique across the pods"
                )
            seen[unit] = where
        pods.append(config)
    return Fleet(tuple(pods), listed=True)


def _tuples(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def load_config(path: str | os.PathLike[str]) -> Config:
    """A file of one pod (a ``[pod]`` file, or ``[[pods]]`` with one entry)."""
    fleet = load_fleet(path)
    if fleet.several:
        raise ConfigError(
            f"{display_path(Path(path).expanduser())}: [[pods]] lists {len(fleet.pods)} pods "
            f"({', '.join(fleet.names)}): name one (--pod NAME)"
        )
    return fleet.pods[0]


def load_fleet(path: str | os.PathLike[str]) -> Fleet:
    """A ``[pod]`` or ``[[pods]]`` file (what the CLI reads)."""
    p = Path(path).expanduser()
    try:
        data = load_toml(p, what="config file")
    except UserFileError as exc:
        raise ConfigError(str(exc)) from None
    return parse_fleet(data, display_path(p))


def user_config_path() -> Path:
    return Path(platformdirs.user_config_dir("ocrtui")) / CONFIG_NAME


def find_config(explicit: str | None) -> Path | None:
    """The first config in lookup order, or None when there is none anywhere."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    for candidate in (Path.cwd() / CONFIG_NAME, user_config_path()):
        if candidate.is_file():
            return candidate
    return None
