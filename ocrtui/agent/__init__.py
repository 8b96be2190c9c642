"""The pod agent (``agent.py``): shipped to the pod as source, so it imports nothing from ocrtui.

**Agent** (runs on the pod; stdlib + `pynvml` when importable; Python >= 3.8 syntax, checked
by a test). Started as `python3 -u - --interval S --port P... [--sim-gpu DIR]` with its source
on stdin; prints one JSON object per line, protocol version `v` (now 1) and `seq`. Backend:
`--sim-gpu` > NVML (init once, v3→v2→v1 process-list ladder, memory v2 for `reserved`) >
`nvidia-smi` CSV > none. Errors are state (`error`, no `gpus`), never an exit. Exits 0 on
EPIPE or when its parent changes. Sample keys:

```
v, seq, t, interval, host, home (the user's home: where "~/" log paths are), agent_pid,
python, backend ("nvml"|"nvidia-smi"|"sim"|"none"), simulated, error, cost_ms, cpu_ms,
fd_unreadable,
gpus:  [{index, uuid, name, total_mib, used_mib, free_mib, reserved_mib, util_pct, temp_c,
         power_w, simulated}]
procs: [{gpu, pid (as NVML says), used_mib, type "C"|"G"|"C+G", simulated, visible,
         title, comm, cmdline, ppid, pgid, sid, start (unix s), state, ancestors}]
mem_available_mib: MemAvailable of /proc/meminfo (host RAM for a CPU vLLM)
         visible = the pid exists here AND (holds /dev/nvidia* or /dev/dxg, checked only
         where some process does and all fds were readable); else a container's host pid
ports: {"8000": {pid, state "listen"|"bound"|null, pgid}}   # bound: vLLM before it listens
                                        # (sock_diag asks for TCP_BOUND_INACTIVE too)
nvidia_holders: [{pid, title, ppid, pgid, start, ancestors}]
vllm:  [{pid, kind "api"|"engine"|"worker"|"coordinator"|"tracker"|"spawned", title, ppid,
         pgid, sid, start, state, ancestors, stdout (fd 1 target: the log file), nvidia, rss_mib,
         and for api: served, port, model}]   # tracker/spawned: multiprocessing children
                                              # in a vLLM process group
```

Per sample on the NVML path: no process spawned; `/proc/<pid>/stat` for Python-looking and
vLLM-titled processes; any other process when it appears, then again after its age (1 s …
30 s, spread by pid); the `/proc` listing only when `/proc/loadavg`'s thread count or last
pid moved (or 5 s passed); LISTEN sockets through netlink `sock_diag` (bound-not-listening
ones only while a port has no listener, at most every 2 s; `/proc/net/tcp` fallback); fds of vLLM /
NVML-listed processes when their fd count changed (Linux >= 6.2; else every sample) or
every 5 s. Device name and UUID are read once. Zombies are not listed (a dead API server
that still leads a live EngineCore's group aside) and are re-read on the cold schedule.
"""
