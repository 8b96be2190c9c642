"""Build the pod a config describes."""

from __future__ import annotations

from ocrtui.config import PodConfig
from ocrtui.pod.base import Pod
from ocrtui.pod.local import LocalPod


def make_pod(pod_config: PodConfig) -> Pod:
    """LocalPod for ``kind = "local"``, SSHPod for ``kind = "ssh"`` (not yet connected)."""
    if pod_config.kind == "local":
        return LocalPod(pod_config.label)
    # Imported here so that local-only uses (the demo, the agent's tests) skip asyncssh.
    from ocrtui.pod.ssh import SSHPod

    return SSHPod(pod_config)
