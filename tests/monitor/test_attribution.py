"""Attribution against recorded agent samples (tests/monitor/data) and the shared fixtures."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ocrtui.monitor import (
    AgentSample,
    LaunchRecord,
    ModelRef,
    ProtocolMismatch,
    SampleError,
    attribute,
    parse_line,
    parse_sample,
)
from ocrtui.status import GpuStatus, ProcessStatus

DATA = Path(__file__).parent / "data"
# Copies of shared/fixtures/vllm, so a clean clone has them.
SHARED = Path(__file__).resolve().parent.parent / "vllm" / "fixtures"
MODELS = (
    ModelRef("glm-ocr", 8000, "vllm_glm-ocr.log"),
    ModelRef("lighton-ocr", 8001, "vllm_lighton-ocr.log"),
)


def raw(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def load(name: str) -> AgentSample:
    return parse_sample(raw(name))


def labels(sample: AgentSample, **kw: Any) -> dict[int, str | None]:
    return {r.pid: r.model for r in attribute(sample, MODELS, **kw).rows}


def assert_reconciles(sample: AgentSample, **kw: Any) -> None:
    att = attribute(sample, MODELS, **kw)
    for g, usage in zip(sample.gpus, att.gpus, strict=True):
        assert usage.rows_mib + usage.other_mib == g.used_mib
        assert usage.rows_mib == sum(r.used_mib for r in att.rows if r.gpu == g.index)


def test_normal_rows_carry_their_models_and_others_stay_unlabelled() -> None:
    s = load("nvml_normal.json")
    assert labels(s) == {4188: "glm-ocr", 5290: "lighton-ocr", 6104: None}
    att = attribute(s, MODELS)
    assert att.orphans == ()
    glm = att.models["glm-ocr"]
    assert (glm.server_pid, glm.port_state) == (4100, "listen")
    assert glm.tree_pids == (4100, 4188)
    assert (glm.used_mib, glm.orphan_mib) == (18386, 0)
    assert att.models["lighton-ocr"].used_mib == 25310
    # 44938 used = 18386 + 25310 + 716 in rows + 526 driver/other
    assert att.gpus[0].other_mib == 526
    assert_reconciles(s)


def test_killed_api_server_leaves_an_orphan_found_by_its_log_file() -> None:
    s = load("nvml_orphan_port_free.json")
    att = attribute(s, MODELS)
    assert labels(s) == {4188: "orphan:glm-ocr", 5290: "lighton-ocr", 6104: None}
    (orphan,) = att.orphans
    assert (orphan.pid, orphan.model, orphan.used_mib, orphan.title) == (
        4188,
        "glm-ocr",
        18386,
        "VLLM::EngineCore",
    )
    glm = att.models["glm-ocr"]
    assert glm.server_pid is None and glm.tree_pids == ()
    assert glm.orphan_pids == (4188,)
    assert (glm.used_mib, glm.orphan_mib, glm.held_mib) == (0, 18386, 18386)
    assert_reconciles(s)


def test_orphan_model_comes_from_memory_of_earlier_samples() -> None:
    bare = tuple(ModelRef(m.name, m.port) for m in MODELS)  # no log file to go by
    before = attribute(load("nvml_normal.json"), bare)
    after = load("nvml_orphan_port_free.json")
    assert {r.pid: r.model for r in attribute(after, bare).rows}[4188] == "orphan:?"
    att = attribute(after, bare, known=before.known)
    assert {r.pid: r.model for r in att.rows}[4188] == "orphan:glm-ocr"
    assert att.known[(4188, 1795688301.41)] == "glm-ocr"  # kept while the process lives


def test_orphan_model_comes_from_the_launched_server_pid() -> None:
    bare = tuple(ModelRef(m.name, m.port) for m in MODELS)
    launch = LaunchRecord("glm-ocr", frozenset(), frozenset({4188}), server_pid=4100)
    att = attribute(load("nvml_orphan_port_free.json"), bare, launches=[launch])
    assert {r.pid: r.model for r in att.rows}[4188] == "orphan:glm-ocr"


def test_old_engine_is_an_orphan_while_a_new_tree_serves_the_port() -> None:
    s = load("nvml_orphan_new_tree.json")
    assert labels(s) == {4188: "orphan:glm-ocr", 5290: "lighton-ocr", 6104: None, 7066: "glm-ocr"}
    glm = attribute(s, MODELS).models["glm-ocr"]
    assert glm.server_pid == 7010 and glm.port_state == "bound"
    assert glm.tree_pids == (7010, 7066)
    assert glm.orphan_pids == (4188,)
    assert (glm.used_mib, glm.orphan_mib) == (1210, 18386)
    assert_reconciles(s)


def test_a_starting_server_not_yet_on_its_port_is_its_model_for_every_observer() -> None:
    """Another observer (no launch record) of a server that does not own its port yet."""
    data = raw("nvml_orphan_new_tree.json")
    data["ports"]["8000"] = {"pid": None, "state": None}
    s = parse_sample(data)
    launching = LaunchRecord("glm-ocr", frozenset({4188, 5290, 6104}))
    for launches in ([], [launching]):
        assert labels(s, launches=launches)[7066] == "glm-ocr"
        assert labels(s, launches=launches)[4188] == "orphan:glm-ocr"  # its API server is dead


def test_container_rows_without_launch_history_stay_unattributed_but_shown() -> None:
    s = load("container_invisible.json")
    assert s.containerised
    att = attribute(s, MODELS)
    assert {r.pid: (r.model, r.kind, r.visible, r.title) for r in att.rows} == {
        2281934: (None, "unattributed", False, ""),
        2282120: (None, "unattributed", False, ""),
        1913: (None, "unattributed", False, ""),
    }
    assert att.gpus[0].unattributed_mib == 18386 + 25310 + 716
    assert att.orphans == ()
    assert_reconciles(s)


def test_container_rows_attributed_by_pid_set_difference_across_launches() -> None:
    s = load("container_invisible.json")
    launches = [
        LaunchRecord("glm-ocr", frozenset({1913}), frozenset({1913, 2281934}), 37),
        LaunchRecord(
            "lighton-ocr", frozenset({1913, 2281934}), frozenset({1913, 2281934, 2282120})
        ),
    ]
    att = attribute(s, MODELS, launches=launches)
    assert {r.pid: (r.model, r.via) for r in att.rows} == {
        2281934: ("glm-ocr", "launch"),
        2282120: ("lighton-ocr", "launch"),
        1913: (None, "none"),
    }
    assert att.models["glm-ocr"].used_mib == 18386
    assert att.models["glm-ocr"].tree_pids == (37, 112)  # local pids, signalable
    assert_reconciles(s, launches=launches)


def test_container_rows_attributed_by_device_holders_when_only_one_model_holds_it() -> None:
    data = raw("container_invisible.json")
    data["procs"] = [p for p in data["procs"] if p["pid"] == 2281934]
    data["vllm"] = [v for v in data["vllm"] if v["pid"] in (37, 112)]
    data["nvidia_holders"] = [h for h in data["nvidia_holders"] if h["pid"] == 112]
    data["ports"]["8001"] = {"pid": None, "state": None}
    s = parse_sample(data)
    (row,) = attribute(s, MODELS).rows
    assert (row.model, row.via, row.visible) == ("glm-ocr", "holders", False)


def test_container_orphan_found_through_local_device_holders() -> None:
    s = load("container_orphan.json")
    launches = [
        LaunchRecord("glm-ocr", frozenset({1913}), frozenset({1913, 2281934}), 37),
        LaunchRecord(
            "lighton-ocr", frozenset({1913, 2281934}), frozenset({1913, 2281934, 2282120})
        ),
    ]
    att = attribute(s, MODELS, launches=launches)
    rows = {r.pid: r.model for r in att.rows}
    assert rows[2281934] == "orphan:glm-ocr"  # its host row, by launch, then local evidence
    assert rows[2282120] == "lighton-ocr"
    (orphan,) = att.orphans
    assert (orphan.pid, orphan.model, orphan.used_mib) == (112, "glm-ocr", None)
    glm = att.models["glm-ocr"]
    assert glm.orphan_pids == (112,) and glm.orphan_mib == 18386 and glm.used_mib == 0


def test_shared_fixtures_container_old_driver_orphan_and_memory_without_rows() -> None:
    """nvidia-smi in a container: memory used, empty process table; ps shows the orphan."""
    smi = (SHARED / "nvidia_smi_container_mem_used_empty_process_table_truncated.txt").read_text()
    used, total = (int(x) for x in re.search(r"(\d+)MiB / (\d+)MiB", smi).groups())  # type: ignore[union-attr]
    ps = (SHARED / "ps_enginecore_orphan_ppid1_stuck_R_excerpt.txt").read_text().splitlines()
    pid, ppid, state = ps[1].split()[:3]
    title = ps[1].split(maxsplit=8)[-1]
    data = raw("no_driver.json")
    data.update(
        error=None,
        gpus=[
            {
                "index": 0,
                "uuid": "GPU-0",
                "name": "GeForce GTX TIT...",
                "total_mib": total,
                "used_mib": used,
                "free_mib": total - used,
            }
        ],
    )
    data["vllm"] = [
        {
            "pid": int(pid),
            "kind": "engine",
            "title": title,
            "ppid": int(ppid),
            "pgid": int(pid),
            "start": 0,
            "ancestors": [1],
            "nvidia": True,
            "state": state,
        }
    ]
    s = parse_sample(data)
    att = attribute(s, MODELS)
    assert att.rows == ()
    assert att.gpus[0].other_mib == 11637 and att.gpus[0].used_mib == 11637
    (orphan,) = att.orphans
    assert (orphan.pid, orphan.model, orphan.title) == (77637, "?", "VLLM::EngineCore")


def test_no_driver_sample_is_an_error_state_with_ports() -> None:
    s = load("no_driver.json")
    assert s.error == "no NVIDIA driver (NVML Shared Library Not Found)"
    assert s.gpus == () and set(s.ports) == {8000, 8001}
    att = attribute(s, MODELS)
    assert att.rows == () and att.gpus == () and att.models["glm-ocr"].held_mib == 0


def test_protocol_mismatch_and_malformed_lines() -> None:
    line = json.dumps({**raw("no_driver.json"), "v": 2})
    with pytest.raises(ProtocolMismatch, match="protocol version 2"):
        parse_line(line)
    with pytest.raises(SampleError, match="non-JSON"):
        parse_line("Traceback (most recent call last):")
    with pytest.raises(SampleError, match="malformed"):
        parse_line(json.dumps({"v": 1, "gpus": []}))


def test_rows_map_onto_the_status_types() -> None:
    s = load("nvml_normal.json")
    row = attribute(s, MODELS).rows[0]
    assert ProcessStatus(**row.status_fields()).model == "glm-ocr"  # type: ignore[arg-type]
    gpu = GpuStatus(**s.gpus[0].status_fields())  # type: ignore[arg-type]
    assert (gpu.name, gpu.total_mib, gpu.simulated) == ("NVIDIA A40", 46068, False)
    assert set(row.status_fields()) == {f.name for f in dataclasses.fields(ProcessStatus)}


@pytest.mark.parametrize(
    ("name", "models", "orphans", "other", "unattributed"),
    [
        ("nvml_normal.json", {"glm-ocr": 18386, "lighton-ocr": 25310}, 0, 716 + 526, 0),
        ("nvml_orphan_port_free.json", {"glm-ocr": 0, "lighton-ocr": 25310}, 18386, None, 0),
        ("container_invisible.json", {"glm-ocr": 0, "lighton-ocr": 0}, 0, None, 44412),
    ],
)
def test_owner_breakdown_per_gpu_adds_up_to_the_device(
    name: str, models: dict[str, int], orphans: int, other: int | None, unattributed: int
) -> None:
    s = load(name)
    (usage,) = attribute(s, MODELS).gpus
    assert usage.model_mib == models
    assert (usage.orphan_mib, usage.unattributed_mib) == (orphans, unattributed)
    if other is not None:
        assert usage.owner_other_mib == other
    parts = sum(models.values()) + orphans + usage.owner_other_mib + unattributed
    assert parts == max(s.gpus[0].used_mib, usage.rows_mib)


def test_rows_say_their_kind_and_owner_without_the_label_prefix() -> None:
    rows = {r.pid: r for r in attribute(load("nvml_orphan_port_free.json"), MODELS).rows}
    assert (rows[4188].kind, rows[4188].owner, rows[4188].model) == (
        "orphan",
        "glm-ocr",
        "orphan:glm-ocr",
    )
    assert (rows[5290].kind, rows[5290].owner) == ("model", "lighton-ocr")
    assert (rows[6104].kind, rows[6104].owner) == ("other", None)
    assert ProcessStatus(**rows[4188].status_fields()).owner == "glm-ocr"  # type: ignore[arg-type]


# -- real vLLM trees (shared/fixtures/vllm-0.32-cpu, vllm-0.26-h200, nvml-pidns) ---------------

TINY = (ModelRef("tiny", 30418, "vllm_tiny.log"),)


def test_cpu_vllm_tree_is_the_model_api_server_engine_worker_and_resource_tracker() -> None:
    att = attribute(load("cpu_vllm_serving.json"), TINY)
    tiny = att.models["tiny"]
    assert tiny.tree_pids == (6801, 7018, 7019, 7113)
    assert att.orphans == () and tiny.orphan_pids == ()


@pytest.mark.parametrize("evidence", ["stdout", "known", "launch"])
def test_cpu_vllm_after_kill_9_engine_worker_and_tracker_are_orphans_holding_ram(
    evidence: str,
) -> None:
    """No VRAM anywhere: the survivors are still the model's orphans, with their RSS."""
    serving = load("cpu_vllm_serving.json")
    data = raw("cpu_vllm_killed.json")
    kw: dict[str, Any] = {}
    if evidence != "stdout":
        for v in data["vllm"]:
            v["stdout"] = "pipe:[77]"
    if evidence == "known":
        kw["known"] = attribute(serving, TINY).known
    if evidence == "launch":
        kw["launches"] = [LaunchRecord("tiny", frozenset(), frozenset(), 6801)]
    att = attribute(parse_sample(data), TINY, **kw)
    assert [(o.pid, o.model, o.used_mib, o.rss_mib) for o in att.orphans] == [
        (7018, "tiny", None, 13),
        (7019, "tiny", None, 674),
        (7113, "tiny", None, 1805),
    ]
    assert att.models["tiny"].orphan_pids == (7018, 7019, 7113)
    assert att.models["tiny"].tree_pids == ()


def test_leaked_vllm_of_no_known_model_holding_nothing_is_not_an_orphan() -> None:
    data = raw("cpu_vllm_killed.json")
    for v in data["vllm"]:
        v["stdout"] = "pipe:[77]"
    assert attribute(parse_sample(data), TINY).orphans == ()


def test_a_starting_engine_is_its_model_for_a_second_observer_not_an_orphan() -> None:
    """up_samples.txt: A's EngineCore held 57432 MiB as `orphan:A` while A started."""
    s = load("h200_starting_second_observer.json")
    refs = (ModelRef("A", 8000, "vllm_A.log"), ModelRef("B", 8001, "vllm_B.log"))
    att = attribute(s, refs)
    assert {r.pid: (r.model, r.kind) for r in att.rows} == {9789: ("A", "model")}
    assert att.orphans == ()
    assert att.models["A"].used_mib == 57432 and att.models["A"].tree_pids == (9469, 9789)


PIDNS = (ModelRef("m", 8000),)


def test_pid_namespace_nvml_reports_namespace_pids_and_omits_outside_holders() -> None:
    """Driver 580: the namespace's own pid, visible; the outside holder's memory is other."""
    att = attribute(load("pidns_tree.json"), PIDNS)
    assert {r.pid: (r.model, r.visible) for r in att.rows} == {73: ("m", True)}
    assert att.gpus[0].other_mib == 11474 - 6754
    lone = attribute(load("pidns_lone.json"), PIDNS)
    assert [(o.pid, o.model, o.used_mib) for o in lone.orphans] == [(12, "?", 6754)]


def _host_pid_shape(outside: bool) -> AgentSample:
    """pidns_tree.json as an older driver reports it: host pids (532 = the namespace's 73),
    and, with ``outside``, the host process 450 that holds 4706 MiB too."""
    data = raw("pidns_tree.json")
    rows = [{"gpu": 0, "pid": 532, "used_mib": 6754, "type": "C", "visible": False}]
    if outside:
        rows.append({"gpu": 0, "pid": 450, "used_mib": 4706, "type": "C", "visible": False})
    data["procs"] = rows
    return parse_sample(data)


def test_host_pid_rows_go_to_the_one_model_holding_the_device_not_to_the_agent() -> None:
    att = attribute(_host_pid_shape(outside=False), PIDNS)
    assert {r.pid: (r.model, r.via) for r in att.rows} == {532: ("m", "holders")}


def test_host_pid_rows_the_model_cannot_account_for_stay_unattributed() -> None:
    att = attribute(_host_pid_shape(outside=True), PIDNS)
    assert {r.pid: r.model for r in att.rows} == {532: None, 450: None}
    assert att.models["m"].used_mib == 0
    assert att.gpus[0].unattributed_mib == 6754 + 4706


def test_an_orphan_writing_a_same_named_log_of_another_workdir_is_not_ours() -> None:
    """Two users (or two test runs) on one pod both have a model `tiny` logging to
    `<their workdir>/vllm_tiny.log`."""
    killed = load("cpu_vllm_killed.json")
    mine = (ModelRef("tiny", 30418, "/home/op/vllm_tiny.log"),)
    theirs = (ModelRef("tiny", 30418, "/home/other/vllm_tiny.log"),)
    assert len(attribute(killed, mine).orphans) == 3
    assert attribute(killed, theirs).orphans == ()
    assert len(attribute(killed, (ModelRef("tiny", 30418, "~/vllm_tiny.log"),)).orphans) == 3


def test_a_home_relative_log_is_matched_in_the_agents_home_only() -> None:
    """`~/vllm_tiny.log` (the default workdir) is the log in the pod user's home: another
    user's or workdir's same-named log is not ours (the suffix alone matched both, and one
    test's kill_orphans killed another's EngineCore beside it)."""
    tilde = (ModelRef("tiny", 30418, "~/vllm_tiny.log"),)
    for home, found in (("/home/op", 3), ("/home/other", 0), ("/home/op/", 3)):
        data = raw("cpu_vllm_killed.json")
        data["home"] = home
        assert len(attribute(parse_sample(data), tilde).orphans) == found, home


def test_process_stage_of_a_start_the_log_says_nothing_of_yet() -> None:
    from ocrtui.monitor.agent_monitor import MonitorView
    from ocrtui.vllm.state import ProcessFacts
    from ocrtui.vllm.watch import process_stage

    def stage(data: dict[str, Any], server: int) -> str | None:
        s = parse_sample(data)
        view = MonitorView(s, attribute(s, TINY), None, 0.1, False, True, 0, False)
        return process_stage(view, ProcessFacts(server, True, False))

    serving = raw("cpu_vllm_serving.json")
    assert stage(serving, 6801) == "engine spawned"
    serving["vllm"] = serving["vllm"][:1]
    assert stage(serving, 6801) == "API server importing"
    assert stage(serving, 4242) == "launched"  # the launched pid is not listed yet


def test_a_cpu_server_s_status_carries_its_tree_s_resident_memory() -> None:
    from ocrtui.config import parse_config
    from ocrtui.monitor.agent_monitor import MonitorView
    from ocrtui.status import ModelStatus
    from ocrtui.vllm.watch import with_usage

    sample = load("cpu_vllm_serving.json")
    view = MonitorView(sample, attribute(sample, TINY), sample.error, 0.1, False, True, 0, False)
    model = parse_config(
        {
            "pod": {"kind": "local"},
            "models": [
                {"name": "tiny", "model": "m", "port": 30418, "gpu_memory_utilization": 0.5}
            ],
        },
        "test",
    ).models[0]
    status = with_usage(ModelStatus("tiny", 30418, "ready", 6801), model, view)
    # API server 711 + tracker 13 + EngineCore 674 + Worker (the KV cache) 1805 MiB
    assert status.rss_mib == 3203 and status.planned_mib is None and status.used_mib == 0


# -- a model's processes: the one server rule, what a stop signals ----------------------------


def test_a_model_s_processes_name_its_server_and_what_a_stop_signals() -> None:
    glm = attribute(load("nvml_normal.json"), MODELS).models["glm-ocr"]
    assert (glm.server_pid, glm.port_owner, glm.owns_port) == (4100, 4100, True)
    assert glm.listening
    assert glm.groups == (4100,) and glm.pids == (4100, 4188) and glm.orphans == ()


def test_a_stranger_on_the_port_is_the_server_seen_but_never_signalled() -> None:
    data = raw("nvml_normal.json")
    data["ports"]["8000"] = {"pid": 6104, "state": "listen", "pgid": 6020}
    glm = attribute(parse_sample(data), MODELS).models["glm-ocr"]
    assert (glm.server_pid, glm.port_owner, glm.owns_port) == (6104, 6104, False)
    assert glm.groups == (4100,) and glm.pids == (4100, 4188)


def test_another_model_s_server_on_the_port_is_not_this_model_s_server() -> None:
    data = raw("nvml_normal.json")
    data["ports"]["8000"] = {"pid": 5200, "state": "listen", "pgid": 5200}
    glm = attribute(parse_sample(data), MODELS).models["glm-ocr"]
    assert (glm.server_pid, glm.port_owner, glm.owns_port) == (4100, 5200, False)
    assert glm.groups == (4100,) and glm.pids == (4100, 4188)


def test_the_launched_server_is_signalled_until_it_is_stopped() -> None:
    s = load("nvml_normal.json")
    launch = LaunchRecord("glm-ocr", frozenset(), None, server_pid=3999)
    assert attribute(s, MODELS, [launch]).models["glm-ocr"].groups == (3999, 4100)
    stopped = dataclasses.replace(launch, stopped=True)
    assert attribute(s, MODELS, [stopped]).models["glm-ocr"].groups == (4100,)


def test_a_zombie_is_neither_a_server_nor_a_pid_to_wait_for() -> None:
    data = raw("nvml_normal.json")
    data["ports"]["8000"] = {"pid": None, "state": None}
    for v in data["vllm"]:
        if v["pid"] in (4100, 4188):
            v["state"] = "Z"
    glm = attribute(parse_sample(data), MODELS).models["glm-ocr"]
    assert glm.server_pid is None and glm.pids == () and not glm.listening


# -- data parallel (sim_dp2_*.json: the simulator's DP=2 server, see data/SOURCES.md) ------

DP2_SERVER = 22202
DP2_LEAKED = (22333, 22335, 22336, 22341, 22351, 22354, 22410, 22413)


def test_data_parallel_ranks_are_the_model_s_each_on_its_own_gpu() -> None:
    att = attribute(load("sim_dp2_serving.json"), MODELS)
    assert [(r.pid, r.gpu, r.model, r.title) for r in att.rows] == [
        (22336, 0, "glm-ocr", "VLLM::EngineCore_DP0"),
        (22341, 1, "glm-ocr", "VLLM::EngineCore_DP1"),
    ]
    glm = att.models["glm-ocr"]
    assert (glm.server_pid, glm.owns_port, glm.orphans) == (DP2_SERVER, True, ())
    # A stop waits for every rank, its Worker, the API servers and the coordinator.
    assert glm.pids == (DP2_SERVER, *DP2_LEAKED)
    assert [g.model_mib["glm-ocr"] for g in att.gpus] == [13820, 13820]


def test_a_data_parallel_api_server_on_the_port_stands_for_the_server_that_spawned_it() -> None:
    data = raw("sim_dp2_serving.json")
    data["ports"]["8000"]["pid"] = 22410  # VLLM::APIServer_0 holds the same socket
    glm = attribute(parse_sample(data), MODELS).models["glm-ocr"]
    assert (glm.server_pid, glm.port_owner, glm.owns_port) == (DP2_SERVER, 22410, True)
    assert glm.orphans == ()


def test_kill_9_of_a_data_parallel_server_leaves_each_rank_an_orphan() -> None:
    # The VLLM::APIServer_<i> processes outlive it holding the port: a leak, not a server.
    att = attribute(load("sim_dp2_killed.json"), MODELS)
    assert [(r.pid, r.gpu, r.model) for r in att.rows] == [
        (22336, 0, "orphan:glm-ocr"),
        (22341, 1, "orphan:glm-ocr"),
    ]
    glm = att.models["glm-ocr"]
    assert (glm.server_pid, glm.port_owner, glm.owns_port) == (None, 22410, False)
    assert glm.orphan_pids == DP2_LEAKED
    assert {o.model for o in att.orphans} == {"glm-ocr"}
    assert glm.orphan_mib == 2 * 13820


def test_a_launched_servers_pid_reused_by_another_vllm_names_nothing() -> None:
    """The kernel recycles pids: once another vLLM process holds the launched server's pid
    (another start time), that pid is neither our server to signal nor the mark of our
    leftovers (a stale record made a neighbour's EngineCore our orphan, and killed it)."""
    from ocrtui.monitor.launches import Launches

    serving = raw("cpu_vllm_serving.json")
    launches = Launches(frozenset, lambda: None)
    launches.begin("tiny")
    launches.started("tiny", 6801)
    launches.observe(parse_sample(serving))  # our server, as first listed
    (record,) = launches.records
    assert record.server_start is not None and launches.pid("tiny") == 6801
    reused = raw("cpu_vllm_serving.json")
    for v in reused["vllm"]:
        if v["pid"] == 6801:
            v["start"] += 600
    launches.observe(parse_sample(reused))
    assert launches.pid("tiny") is None  # never signalled again
    killed = raw("cpu_vllm_killed.json")
    for v in killed["vllm"]:
        v["stdout"] = "pipe:[77]"  # no log to go by: the launch alone would say "tiny"
    att = attribute(parse_sample(killed), TINY, launches=launches.records)
    assert att.orphans == ()


def test_a_dying_same_named_server_on_another_port_lends_us_no_orphans() -> None:
    """Another config's `tiny` on another port, its API server a zombie while its EngineCore
    shuts down: the served name alone made those processes orphans of our `tiny` (a
    `status` right after `down` said crashed)."""
    data = raw("cpu_vllm_serving.json")
    data["ports"] = {}  # a dying server listens no more
    for v in data["vllm"]:
        v["stdout"] = "pipe:[77]"  # no log to go by
        if v["kind"] == "api":
            v.update(state="Z", port=30419)
    att = attribute(parse_sample(data), TINY)
    assert att.orphans == () and att.models["tiny"].orphan_pids == ()
    for v in data["vllm"]:
        if v["kind"] == "api":
            v["port"] = 30418  # ours after all: its leftovers are our orphans
    assert [o.pid for o in attribute(parse_sample(data), TINY).orphans] == [7018, 7019, 7113]
