"""`ocrtui compare` on a terminal: the exit status after the dashboard closes, when the
comparison never ran (the live path, streaming and exit 0, is in test_live.py)."""

from __future__ import annotations

import pytest

from ocrtui.errors import InputError, PodUnreachable
from ocrtui.tui.app import comparison_exit_code
from tests.tui.conftest import AppFactory


@pytest.mark.parametrize(
    ("source_error", "compare_error", "code"),
    [
        (PodUnreachable("ssh: no route"), None, 3),
        (None, PodUnreachable("model glm-ocr is not answering"), 3),
        (None, InputError("nothing to compare"), 2),
        (None, RuntimeError("boom"), 1),
        (None, None, 1),  # quit before the run had started: interrupted
    ],
)
async def test_exit_status_without_a_run(
    make_app: AppFactory,
    source_error: BaseException | None,
    compare_error: BaseException | None,
    code: int,
) -> None:
    app, _ = make_app()
    app.source_error, app.compare_error = source_error, compare_error
    assert await comparison_exit_code(app) == code
