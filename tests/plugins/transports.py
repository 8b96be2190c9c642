"""The two ways to reach a pod, for tests that run on both: ``transport`` ("local" or
"ssh", a parameter) and ``pod``, a connected LocalPod or SSHPod (to the real sshd of
tests/plugins/sshd.py) for it, closed after the test. The ``"ssh"`` case is marked
``via_ssh``.

Real vLLM goes through one transport only: a test whose backend parameter
(``pod_under_test`` or ``ready``, tests/behaviour/) is ``"real"`` runs through the real sshd
and its LocalPod case is deselected. The simulator covers both transports, and each real
start costs 30 s to 4 min on the 2-core box, so a second transport added minutes and no
assertion the sshd run lacks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ocrtui.pod import Pod
from ocrtui.pod.local import LocalPod

BACKEND_PARAMS = ("pod_under_test", "ready")
REAL_TRANSPORT = "ssh"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def real_elsewhere(item: pytest.Item) -> bool:
        params = getattr(item, "callspec", None)
        if params is None or "transport" not in params.params:
            return False
        real = any(params.params.get(name) == "real" for name in BACKEND_PARAMS)
        return real and params.params["transport"] != REAL_TRANSPORT

    dropped = [item for item in items if real_elsewhere(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not real_elsewhere(item)]


# The SSH run of a test on both transports is marked via_ssh: the fast lane (./dev test-fast)
# runs the LocalPod one only; the SSH layer's own tests (tests/pod/) stay in it.
@pytest.fixture(params=["local", pytest.param("ssh", marks=pytest.mark.via_ssh)])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def pod(transport: str, request: pytest.FixtureRequest) -> AsyncIterator[Pod]:
    p: Pod = LocalPod() if transport == "local" else request.getfixturevalue("sshd").make_pod()
    await p.connect()
    try:
        yield p
    finally:
        await p.close()
