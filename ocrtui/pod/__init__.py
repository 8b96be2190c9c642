"""How we reach the pod: one interface (:class:`Pod`), SSH and local implementations.

`Pod` (`base.py`) has four primitives, implemented by `SSHPod` (`ssh.py`) and `LocalPod`
(`local.py`); `make_pod(pod_config)` (`factory.py`) picks one by `kind`:
`connect()`, `close()`, `run(argv, input=, timeout=) -> CommandResult`,
`stream(argv, input=) -> AsyncGenerator[str, None]` (stdout lines; raises `PodConnectionLost`),
`forward(remote_port) -> "http://127.0.0.1:PORT"` (same local port across reconnects).

Built once for both: `start_detached(argv, log_file=, env=, cwd=) -> pid` (new
session and process group, pid printed after `setsid`, so `pgid == pid`), `signal(pid, sig,
group=)` (through `kill` on the pod: sshd ignores SSH signal requests from root),
`terminate(pgid)` (SIGTERM then SIGCONT to a group: the stop of models and services), `tail(path,
n)`, `expand_dir(path)`, and `follow(argv, input=)`: `stream()` restarted after every
reconnect (ends when the command exits, raises `PodConnectionLost` once the pod is closed).
The shell snippets are constants; values travel as positional arguments, and SSHPod quotes
every argv with `shlex.join`.

Connection state (`ConnState`: connecting, connected, lost, reconnecting, closed) is
observable with `add_state_listener` and `wait_for_state`; `pod.last_error` says why the
latest (re)connect attempt failed (None while connected).

SSHPod: one asyncssh connection carries everything. `connect()` raises `PodUnreachable`
(host:port and reason), `HostKeyError` (unknown key: fingerprint and the
`accept_new_host_key` hint; changed key: always refused), both exit 3, or `ConfigError`
(missing identity or ssh config file, exit 2). After a drop a supervisor task reconnects
(backoff 0.25 s doubling to 2 s; 30 s for key refused / host key / settings). Every remote
command runs as `sh -c 'echo $$; exec "$@"' sh ARGV...`; the pid line is consumed, and a
closed stream, a cancelled or timed-out `run`, and `close()` kill that process group with
`kill` on the pod (no pty, so closing a channel alone would leave it running). Forwards
(`forward.py`) are our own 127.0.0.1 listeners, bound until `close()`, opening one
direct-tcpip channel per client on the current connection (closed at once while down).
Test fixtures: `tests/plugins/sshd.py` (`sshd`, `ssh_pod`; `sshd.pod_config()`,
`sshd.make_pod()`, `sshd.stop()/start()`). User docs: docs/pod.md.

Power state (`provider.py`, `[pod.provider]`): `provider_state(cfg) -> ProviderState(state
"running"|"stopped"|"unknown", detail, failed)`, `provider_start(cfg)`; the commands run on
the operator's machine as local subprocesses (own process group, killed on `timeout_s`),
never over SSH. `provider_command(config, "status"|"start")` is `ocrtui pod`. Presets for
runpodctl and vastai: `config.PROVIDER_PRESETS`; with JSON output the state also carries the
SSH host and port (`Pod.move_to` after a start) and the price per hour.
"""

from ocrtui.pod.base import CommandResult, ConnState, Pod, PodConnectionLost

__all__ = ["CommandResult", "ConnState", "Pod", "PodConnectionLost"]
