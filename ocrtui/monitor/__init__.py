"""Client side of the pod agent: typed samples, attribution, orphan detection, the monitor.

Importing this package (and ``agent_samples`` / ``attribution``) pulls in the standard library
only, so the GPU benchmark can use them on a bare machine. The monitor that drives the agent
over a Pod lives in ``ocrtui.monitor.agent_monitor``.
"""

from ocrtui.monitor.agent_samples import (
    PROTOCOL_VERSION,
    AgentSample,
    GpuProc,
    GpuSample,
    ProtocolMismatch,
    SampleError,
    VllmProc,
    parse_line,
    parse_sample,
)
from ocrtui.monitor.attribution import (
    ORPHAN_PREFIX,
    Attribution,
    GpuUsage,
    LaunchRecord,
    ModelRef,
    ModelUsage,
    Orphan,
    Row,
    attribute,
)

__all__ = [
    "ORPHAN_PREFIX",
    "PROTOCOL_VERSION",
    "AgentSample",
    "Attribution",
    "GpuProc",
    "GpuSample",
    "GpuUsage",
    "LaunchRecord",
    "ModelRef",
    "ModelUsage",
    "Orphan",
    "ProtocolMismatch",
    "Row",
    "SampleError",
    "VllmProc",
    "attribute",
    "parse_line",
    "parse_sample",
]
