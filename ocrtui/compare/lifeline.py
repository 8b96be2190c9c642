"""Helper processes that end with the process that started them.

A render worker forks from multiprocessing's forkserver, so its parent is the forkserver,
not the run; ``kill -9`` of the run would leave it (and, through the fds it holds, the
resource tracker) running forever. :func:`die_with` ties a worker to the run itself: a
thread waits on a pidfd of the run and exits the worker the moment the run is gone,
however it ended. The forkserver and the resource tracker end on their own once the run
and the workers are gone (each waits for EOF on a pipe only those hold).
"""

from __future__ import annotations

import os
import select
import threading


def die_with(pid: int) -> None:
    """Exit this process as soon as process ``pid`` has ended (a pool initializer)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # it ended before we started
        os._exit(1)

    def watch() -> None:
        select.select([fd], [], [])  # a pidfd turns readable when its process ends
        os._exit(1)

    threading.Thread(target=watch, name="ocrtui-lifeline", daemon=True).start()
