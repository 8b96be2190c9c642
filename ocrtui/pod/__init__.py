"""How we reach the pod: one interface (:class:`Pod`), SSH and local implementations."""

from ocrtui.pod.base import CommandResult, ConnState, Pod, PodConnectionLost

__all__ = ["CommandResult", "ConnState", "Pod", "PodConnectionLost"]
