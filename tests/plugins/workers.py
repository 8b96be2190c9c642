"""Which tests must share a pytest-xdist worker (``./dev`` runs the suite on several).

Most tests wait on subprocesses, servers and sshd rather than compute, so ``./dev`` runs
them on more workers than the box has cores (``-n``, ``--dist loadgroup``). A fixture
shared by several tests is started once per worker that runs one of them, so the tests
that share an expensive one are sent to the same worker (an ``xdist_group``):

- every ``real_vllm`` test in one group: the session's real vLLM server (3.3 GB of RAM,
  30 s to 4 min to start) starts once, and the behaviour suite's own real servers never
  run beside another worker's (tests/plugins/real_vllm.py: never more than two at once);
- the tests of a module that defines a module-scoped fixture (a shared simulated server,
  a subprocess's imports) in one group per module.

Other session fixtures are made once per worker (the sshd keys: cheap), or once per run
in a folder all workers share, :func:`run_wide_dir` (the sample suite's PDFs: seconds of
CPU each time). Without xdist (a plain ``pytest`` run) none of this changes anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REAL_VLLM_GROUP = "real_vllm"


@contextlib.contextmanager
def run_wide_dir(factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """The folder ``name`` that every worker of this run shares, held under an exclusive
    lock while the caller is inside: the first worker fills it, the others wait for that
    and reuse what it made. Under xdist each worker's temporary root is a folder of the
    run's (pytest-xdist's documented way to share one)."""
    base = factory.getbasetemp()
    root = base.parent if "PYTEST_XDIST_WORKER" in os.environ else base
    path = root / name
    path.mkdir(exist_ok=True)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield path


def _modules_with_module_fixtures(session: pytest.Session) -> set[str]:
    """Node ids of the test modules that define a module-scoped fixture (their tests may
    ask for it by name at run time, ``request.getfixturevalue``, so the tests' own fixture
    closures do not say)."""
    manager = session._fixturemanager
    return {
        d.baseid
        for defs in manager._arg2fixturedefs.values()
        for d in defs
        if d.scope == "module" and d.baseid.endswith(".py")
    }


# First: xdist names a worker's items after their groups in its own hook.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    shared = _modules_with_module_fixtures(session)
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        if item.get_closest_marker("real_vllm") is not None:
            item.add_marker(pytest.mark.xdist_group(REAL_VLLM_GROUP))
        elif module in shared:
            item.add_marker(pytest.mark.xdist_group(module))
