"""Who holds the GPU: label every NVML row with its model, ``orphan:<model>``, or nothing.

Pure functions over one :class:`AgentSample` (standard library only, so the GPU benchmark can
run them on a bare machine). The rules, in order:

* A process belongs to model M when it is in M's tree: every live API server of M (served
  name and port match, whatever its port state: vLLM binds early, listens last, and on
  some kernels a bound socket is only seen when asked for it) and the process that owns
  M's port, their descendants and their process groups. So a starting EngineCore (or the
  Worker that holds the VRAM) is M's for every observer, with or without a launch record.
* A vLLM process (API server, ``VLLM::EngineCore``, ``VLLM::Worker*``, under data parallel
  each rank's ``VLLM::EngineCore_DP<i>`` and ``VLLM::Worker_DP<i>``, the ``VLLM::APIServer_<i>``
  processes and the ``VLLM::DPCoordinator``, the resource tracker or a spawned child in a
  vLLM group) or a child of one that is in no model's tree and
  under no live API server is an orphan of the model it belongs to: ``kill -9`` of an API
  server leaves its EngineCore reparented to init, still holding its memory (VRAM, or RAM
  on a CPU build), while the port is free or already served by a new tree. Its model is
  found from its API server's argv, an API server among its ancestors or in its process
  group, an earlier sample, the server pid the tool launched, or the model's log path its
  stdout points at; ``orphan:?`` when none says (listed only while it holds the GPU).
* Container case (NVML reports host pids this pod cannot see): such rows are still shown with
  their memory, attributed by the NVML pid-set difference across each launch the tool did,
  else by the local ``/dev/nvidia*`` holders (the agent aside) when they all belong to one
  label and are as many as the rows left; what remains is unattributed (None). No row's
  memory goes to a model its tree cannot account for.
* Per GPU, the rows plus "driver/other" add up to the device's used memory; the owner
  breakdown (:class:`GpuUsage`: per model, orphans, other, unattributed) is what the
  dashboard draws and ``status --json`` reports, unchanged.
* Per model, :class:`ModelProcesses` is the one answer to "which processes are M's": its
  server (the port owner unless that is another model's API server, else the pid this
  session launched, else any live API server of it; :func:`serves` is the server rule; a
  data-parallel server's ``VLLM::APIServer_<i>`` on the port stands for the server that
  spawned it),
  whether it listens, the process groups and pids a stop signals (never a stranger on the
  port, never a zombie), its orphans and their memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ocrtui.monitor.agent_samples import AgentSample, VllmProc

ORPHAN_PREFIX = "orphan:"
UNKNOWN_MODEL = "?"

RowKind = Literal["model", "orphan", "other", "unattributed"]


@dataclass(frozen=True)
class ModelRef:
    """What attribution needs to know about a configured model."""

    name: str
    port: int
    # Its log file as configured (absolute, "~/...", or a bare name): the stdout of a
    # detached orphan points at it.
    log_name: str | None = None

    def writes_log(self, stdout: str, home: str = "") -> bool:
        """``stdout`` (an fd target, always absolute) is this model's log file; ``home``: the
        pod user's home directory as the agent reports it ("" when unknown)."""
        log = self.log_name
        if not log or not stdout.startswith("/"):
            return False
        if log.startswith("/"):
            return stdout == log
        if log.startswith("~/") and home:
            return stdout == home.rstrip("/") + log[1:]
        # Relative to a directory unknown here (a bare name: the launching shell's): compare
        # the rest, which another user's or workdir's same-named log also matches.
        return stdout.endswith("/" + log.removeprefix("~/"))


@dataclass(frozen=True)
class LaunchRecord:
    """One model start the tool performed, with NVML's pid set before and after it
    (``monitor/launches.py`` keeps them)."""

    model: str
    before: frozenset[int]
    after: frozenset[int] | None = None  # None while the launch is in progress
    server_pid: int | None = None  # the pid the tool started (leads its process group)
    # Stopped since: ``server_pid`` still names the model of its leftovers, but is no
    # server of ours any more (a new process may reuse the pid).
    stopped: bool = False
    server_start: float | None = None  # the server's start time, from the first sample
    # A later vLLM process holds ``server_pid`` with another start time: the pid was reused
    # (the kernel recycles pids), so it names neither our server nor its leftovers.
    reused: bool = False

    @property
    def new_pids(self) -> frozenset[int]:
        return frozenset() if self.after is None else self.after - self.before

    @property
    def launched_pid(self) -> int | None:
        """The server this session started, while it is ours to signal."""
        return None if self.stopped or self.reused else self.server_pid


@dataclass(frozen=True)
class Row:
    """One attributed NVML row; ``status_fields()`` are status.ProcessStatus's fields."""

    pid: int
    gpu: int
    used_mib: int
    model: str | None  # served name, "orphan:<name>", or None
    kind: RowKind
    title: str
    visible: bool
    via: str  # how the label was found: tree, pgid, orphan, launch, holders, none
    simulated: bool = False

    @property
    def owner(self) -> str | None:
        """The model a model or orphan row belongs to ("?": an orphan of no known model)."""
        if self.kind == "orphan" and self.model is not None:
            return self.model.removeprefix(ORPHAN_PREFIX)
        return self.model if self.kind == "model" else None

    def status_fields(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "gpu": self.gpu,
            "used_mib": self.used_mib,
            "model": self.model,
            "title": self.title,
            "visible": self.visible,
            "kind": self.kind,
            "owner": self.owner,
        }


@dataclass(frozen=True)
class Orphan:
    pid: int  # a pid of this pod's namespace, signalable
    model: str  # served name, or "?" when nothing says
    used_mib: int | None  # None when NVML lists no row for it that is visible from here
    title: str
    rss_mib: int | None = None  # its resident memory, as the agent read it


@dataclass(frozen=True)
class ModelProcesses:
    """One model's processes in one sample: the one answer to "which processes are M's",
    read by the model watcher (its state), the lifecycle (what a stop signals and waits
    for), the status types and the GPU panel."""

    name: str
    # Its API server: the port owner unless that is another model's API server, else the
    # pid this session launched while it is a live API server of the model, else the first
    # live API server of the model (:func:`serves`).
    server_pid: int | None
    port_owner: int | None  # whoever owns the port: maybe a stranger, never signalled
    port_state: str | None  # "listen", "bound" or None
    owns_port: bool  # the port owner is an API server of the model or the pid launched
    tree_pids: tuple[int, ...]  # the port owner and its known descendants / group members
    # What a stop signals: the process groups of its API servers and of the server this
    # session launched (SIGTERM, SIGKILL at the deadline), and every live pid of the model
    # (its servers, their groups and descendants, the port owner's tree when the owner is
    # ours, the orphans): all of them must have exited before it is stopped.
    groups: tuple[int, ...]
    pids: tuple[int, ...]
    orphans: tuple[Orphan, ...]  # its leaked processes, with their memory
    used_mib: int  # rows labelled with the model
    orphan_mib: int  # rows labelled orphan:<model>
    rss_mib: int | None  # resident memory of the server and its tree (None: none listed)

    @property
    def listening(self) -> bool:
        return self.port_state == "listen"

    @property
    def orphan_pids(self) -> tuple[int, ...]:
        return tuple(o.pid for o in self.orphans)

    @property
    def held_mib(self) -> int:
        """Everything this model's processes (live or leaked) still hold."""
        return self.used_mib + self.orphan_mib


@dataclass(frozen=True)
class GpuUsage:
    index: int
    used_mib: int  # the device's own figure
    rows_mib: int  # sum of the process rows on this GPU
    other_mib: int  # driver / contexts / processes NVML does not list
    unattributed_mib: int  # rows whose owner could not be determined
    model_mib: dict[str, int] = field(default_factory=dict)  # rows per model, config order
    orphan_mib: int = 0  # rows of leaked vLLM processes
    other_rows_mib: int = 0  # rows of processes that belong to no model

    @property
    def owner_other_mib(self) -> int:
        """The "other" owner: processes of no model plus memory no listed process holds."""
        return self.other_rows_mib + self.other_mib


@dataclass(frozen=True)
class Attribution:
    rows: tuple[Row, ...]
    models: dict[str, ModelProcesses]
    gpus: tuple[GpuUsage, ...]
    orphans: tuple[Orphan, ...]
    # (pid, start) -> model for every vLLM process seen inside its model's tree; feed it back
    # into the next call so an EngineCore keeps its model once its parent is gone.
    known: dict[tuple[int, float], str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Local:
    pid: int
    ppid: int | None
    pgid: int | None
    start: float | None
    ancestors: tuple[int, ...]
    title: str
    vllm: VllmProc | None


def _locals(sample: AgentSample) -> dict[int, _Local]:
    out: dict[int, _Local] = {}
    for h in sample.nvidia_holders:
        out[h.pid] = _Local(h.pid, h.ppid, h.pgid, h.start, h.ancestors, h.title, None)
    for p in sample.procs:
        if p.visible:
            out[p.pid] = _Local(p.pid, p.ppid, p.pgid, p.start, p.ancestors, p.title, None)
    for v in sample.vllm:
        out[v.pid] = _Local(v.pid, v.ppid, v.pgid, v.start, v.ancestors, v.title, v)
    return out


def _launcher(v: VllmProc) -> bool:
    """``v`` is a launching API server (its ``vllm serve`` argv read), not one of the
    ``VLLM::APIServer_<i>`` processes a data-parallel server spawns, which carry only a
    title: they answer for the server that spawned them and leak with it."""
    return v.kind == "api" and (v.served is not None or v.port is not None)


def serves(v: VllmProc, m: ModelRef) -> bool:
    """The one server rule: ``v`` is a live API server of ``m`` when its served name and its
    port both match, so a same-named server elsewhere (another pod user, another config) is
    never taken for ours. A zombie (killed, not yet reaped: common in containers whose PID 1
    reaps nothing) is no server."""
    return v.kind == "api" and v.served == m.name and v.port == m.port and v.state != "Z"


def _model_of_api(v: VllmProc, models: Sequence[ModelRef]) -> str | None:
    """The model an API server (live or dead) was started for: its served name and port
    both match what each tells (as ``serves`` asks of a live one), so a same-named server
    of another config on the pod, dying beside ours, never lends us its EngineCore."""
    if v.kind != "api" or (v.served is None and v.port is None):
        return None
    for m in models:
        if v.served in (None, m.name) and v.port in (None, m.port):
            return m.name
    return None


class _Resolver:
    def __init__(
        self,
        sample: AgentSample,
        models: Sequence[ModelRef],
        launches: Sequence[LaunchRecord],
        known: Mapping[tuple[int, float], str],
    ) -> None:
        self.models = models
        self.launches = launches
        self.known = known
        self.home = sample.home
        self.local = _locals(sample)
        self.apis = {v.pid: v for v in sample.vllm if v.kind == "api"}
        self.trees: dict[str, set[int]] = {}
        self.owners: dict[str, tuple[int | None, str | None]] = {}
        for m in models:
            owner = sample.ports.get(m.port)
            pid = owner.pid if owner else None
            self.owners[m.name] = (pid, owner.state if owner else None)
            # The port owner's tree, and every live API server of the model whatever its
            # port state: vLLM binds late on some kernels' view and listens last, and its
            # EngineCore is never an orphan while its server lives.
            roots: dict[int, int | None] = {
                v.pid: v.pgid for v in self.apis.values() if serves(v, m)
            }
            spawned = self.apis.get(pid) if pid is not None else None
            if spawned is not None and not _launcher(spawned):
                # A VLLM::APIServer_<i> on the port is in its live server's tree already;
                # without one it is a leak (kill -9 of the server), and so is its group.
                pid = None
            if pid is not None:
                lpgid = owner.pgid if owner and owner.pgid is not None else None
                if lpgid is None and pid in self.local:
                    lpgid = self.local[pid].pgid
                roots[pid] = lpgid
            tree: set[int] = set(roots)
            groups = {g for g in roots.values() if g is not None and g > 1}
            for loc in self.local.values():
                if loc.pgid in groups or any(a in roots for a in loc.ancestors):
                    tree.add(loc.pid)
            self.trees[m.name] = tree

    def tree_of(self, pid: int) -> str | None:
        for name, tree in self.trees.items():
            if pid in tree:
                return name
        return None

    def lineage(self, pid: int) -> VllmProc | None:
        """The vLLM process this pid is, or descends from."""
        loc = self.local.get(pid)
        if loc is None:
            return None
        if loc.vllm is not None:
            return loc.vllm
        for a in loc.ancestors:
            anc = self.local.get(a)
            if anc is not None and anc.vllm is not None:
                return anc.vllm
        return None

    def model_of(self, v: VllmProc) -> str | None:
        name = _model_of_api(v, self.models)
        if name:
            return name
        for a in v.ancestors:
            api = self.apis.get(a)
            if api is not None and (name := _model_of_api(api, self.models)):
                return name
        api = self.apis.get(v.pgid)
        if api is not None and (name := _model_of_api(api, self.models)):
            return name
        name = self.known.get((v.pid, v.start))
        if name:
            return name
        for r in reversed(self.launches):
            if r.server_pid is not None and not r.reused and r.server_pid in (v.pid, v.pgid):
                return r.model
        for m in self.models:
            if m.writes_log(v.stdout, self.home):
                return m.name
        return None

    def has_live_api(self, v: VllmProc) -> bool:
        live = {pid for pid, api in self.apis.items() if api.state != "Z" and _launcher(api)}
        return v.pid in live or v.pgid in live or any(a in live for a in v.ancestors)

    def label_local(self, pid: int) -> tuple[str | None, RowKind, str]:
        """(label, kind, via) for a process of this namespace."""
        tree = self.tree_of(pid)
        if tree is not None:
            return tree, "model", "tree"
        v = self.lineage(pid)
        if v is None:
            return None, "other", "none"
        name = self.model_of(v)
        if self.has_live_api(v):
            # A live vLLM serving a model we were not told about (ours are trees above).
            return None, "other", "none"
        return ORPHAN_PREFIX + (name or UNKNOWN_MODEL), "orphan", "orphan"


def attribute(
    sample: AgentSample,
    models: Sequence[ModelRef],
    launches: Sequence[LaunchRecord] = (),
    known: Mapping[tuple[int, float], str] | None = None,
) -> Attribution:
    res = _Resolver(sample, models, launches, known or {})
    rows: list[Row] = []
    visible_pids = {p.pid for p in sample.procs if p.visible}

    # Local processes holding the GPU that no visible row accounts for: in a container
    # these are the owners of the invisible rows. The agent opens the device files itself.
    unmatched: list[str | None] = []
    for pid in sorted(set(res.local) - visible_pids - {sample.agent_pid}):
        loc = res.local[pid]
        holds = any(h.pid == pid for h in sample.nvidia_holders) or (
            loc.vllm is not None and loc.vllm.nvidia
        )
        if holds:
            unmatched.append(res.label_local(pid)[0])
    unmatched_labels = set(unmatched)

    launched: dict[int, str] = {}
    for r in launches:
        for pid in r.new_pids:
            launched[pid] = r.model

    # Invisible rows no launch explains go to the holders' label only when the holders can
    # account for every one of them: one label, and as many holders as rows. A row of a
    # process outside the pod (another tenant) must never become a model's memory.
    rest = list(unmatched)
    for p in sample.procs:
        if not p.visible and p.pid in launched:
            for claimed in (launched[p.pid], ORPHAN_PREFIX + launched[p.pid]):
                if claimed in rest:
                    rest.remove(claimed)
                    break
    unexplained = [p for p in sample.procs if not p.visible and p.pid not in launched]
    holders_label = (
        rest[0] if rest and len(set(rest)) == 1 and len(rest) == len(unexplained) else None
    )

    for p in sample.procs:
        used = p.used_mib or 0
        if p.visible:
            label, kind, via = res.label_local(p.pid)
            rows.append(Row(p.pid, p.gpu, used, label, kind, p.title, True, via, p.simulated))
            continue
        if p.pid in launched:
            name = launched[p.pid]
            label, kind = _container_label(name, unmatched_labels)
            rows.append(Row(p.pid, p.gpu, used, label, kind, "", False, "launch", p.simulated))
        elif holders_label is not None:
            kind = "orphan" if holders_label.startswith(ORPHAN_PREFIX) else "model"
            rows.append(
                Row(p.pid, p.gpu, used, holders_label, kind, "", False, "holders", p.simulated)
            )
        else:
            rows.append(
                Row(p.pid, p.gpu, used, None, "unattributed", "", False, "none", p.simulated)
            )

    orphans = _orphans(sample, res, rows)
    ours = {r.model: r.launched_pid for r in launches}  # the latest launch of each
    models_out = {
        m.name: _processes(sample, res, rows, orphans, m, ours.get(m.name)) for m in models
    }

    gpus = []
    for g in sample.gpus:
        on = [r for r in rows if r.gpu == g.index]
        rows_mib = sum(r.used_mib for r in on)
        gpus.append(
            GpuUsage(
                index=g.index,
                used_mib=g.used_mib,
                rows_mib=rows_mib,
                other_mib=max(0, g.used_mib - rows_mib),
                unattributed_mib=sum(r.used_mib for r in on if r.kind == "unattributed"),
                model_mib={
                    m.name: sum(r.used_mib for r in on if r.kind == "model" and r.model == m.name)
                    for m in models
                },
                orphan_mib=sum(r.used_mib for r in on if r.kind == "orphan"),
                other_rows_mib=sum(r.used_mib for r in on if r.kind == "other"),
            )
        )

    new_known: dict[tuple[int, float], str] = {}
    for v in sample.vllm:
        remembered = res.tree_of(v.pid) or (known or {}).get((v.pid, v.start))
        if remembered:
            new_known[(v.pid, v.start)] = remembered
    return Attribution(tuple(rows), models_out, tuple(gpus), orphans, new_known)


def _processes(
    sample: AgentSample,
    res: _Resolver,
    rows: Sequence[Row],
    orphans: Sequence[Orphan],
    m: ModelRef,
    launched: int | None,
) -> ModelProcesses:
    owner, owner_state = res.owners[m.name]
    tree = set(res.trees[m.name])
    tree |= {r.pid for r in rows if r.visible and r.model == m.name}
    listed = {v.pid: v for v in sample.vllm}
    apis = [v for v in sample.vllm if serves(v, m)]
    api_pids = {v.pid for v in apis}
    # Who answers on the port: its owner, or for a VLLM::APIServer_<i> (a data-parallel
    # server's, holding the port with it) the server that spawned it; without a live one such
    # a process is an orphan, never the model's server.
    holder = owner
    owner_proc = listed.get(owner) if owner is not None else None
    if owner_proc is not None and owner_proc.kind == "api" and not _launcher(owner_proc):
        spawner = [a for a in (*owner_proc.ancestors, owner_proc.pgid) if a in api_pids]
        holder = spawner[0] if spawner else owner
    foreign = holder in listed and listed[holder].kind == "api" and holder not in api_pids
    server: int | None = None
    if holder is not None and not foreign:
        server = holder
    elif launched is not None and launched in api_pids:
        server = launched
    elif apis:
        server = apis[0].pid
    mine = [o for o in orphans if o.model == m.name]
    # A stranger on the port (owner neither a server of the model nor launched by us) is
    # named by preflight, never signalled: its tree counts only when the owner is ours.
    groups = {v.pgid for v in apis if v.pgid > 1}
    if launched is not None:
        groups.add(launched)  # start_detached: the server leads its own process group
    pids = set(api_pids)
    pids |= {v.pid for v in sample.vllm if v.pgid in groups or api_pids & set(v.ancestors)}
    owns_port = holder is not None and (holder in api_pids or holder == launched)
    if owns_port:
        pids |= tree
    pids |= {o.pid for o in mine}
    pids -= {v.pid for v in sample.vllm if v.state == "Z"}
    held = [v.rss_mib for v in sample.vllm if v.pid in tree | {server} and v.rss_mib is not None]
    return ModelProcesses(
        name=m.name,
        server_pid=server,
        port_owner=owner,
        port_state=owner_state,
        owns_port=owns_port,
        tree_pids=tuple(sorted(tree)),
        groups=tuple(sorted(groups)),
        pids=tuple(sorted(pids)),
        orphans=tuple(mine),
        used_mib=sum(r.used_mib for r in rows if r.model == m.name),
        orphan_mib=sum(r.used_mib for r in rows if r.model == ORPHAN_PREFIX + m.name),
        rss_mib=sum(held) if held else None,
    )


def _container_label(model: str, unmatched_labels: set[str | None]) -> tuple[str, RowKind]:
    """An invisible row that appeared during ``model``'s launch: the model, or its orphan when
    every local process of that model still holding the GPU is outside its tree."""
    orphan = ORPHAN_PREFIX + model
    if orphan in unmatched_labels and model not in unmatched_labels:
        return orphan, "orphan"
    return model, "model"


def _orphans(sample: AgentSample, res: _Resolver, rows: Iterable[Row]) -> tuple[Orphan, ...]:
    rss = {v.pid: v.rss_mib for v in sample.vllm}
    out: dict[int, Orphan] = {}
    for r in rows:
        if r.visible and r.kind == "orphan" and r.model:
            model = r.model[len(ORPHAN_PREFIX) :]
            out[r.pid] = Orphan(r.pid, model, r.used_mib, r.title, rss.get(r.pid))
    # Leaked vLLM processes NVML does not list: a CPU build's EngineCore, Worker and resource
    # tracker (host RAM), or, in a container, a /dev/nvidia* holder whose row is invisible.
    # One of no known model counts only while it holds the GPU: it may be someone else's.
    for v in sample.vllm:
        if v.pid in out or v.state == "Z":
            continue
        label, kind, _ = res.label_local(v.pid)
        if kind != "orphan" or not label:
            continue
        model = label[len(ORPHAN_PREFIX) :]
        if v.nvidia or model != UNKNOWN_MODEL:
            out[v.pid] = Orphan(v.pid, model, None, v.title, v.rss_mib)
    return tuple(sorted(out.values(), key=lambda o: o.pid))
