"""A recorded comparison (RunView) for the comparison screen's tests and snapshots."""

from __future__ import annotations

from ocrtui.compare.store import PageResult
from ocrtui.tui.run_view import RunView

MODELS = ["glm-ocr", "lighton-ocr"]
REFERENCE = "甲方：张三\n住址：北京市海淀区中关村大街27号\n租金：每月人民币8,500元"
TEXTS = {
    "glm-ocr": "甲方：张三\n住址：北京市海淀区中关村大街27号\n租金：每月人民币8,500元",
    "lighton-ocr": "甲方：张三\n住址：北京市海淀区中关村大街2了号\n租金：每月人民币8.500元",
}


def result(doc: str, page: int, model: str, text: str | None = None, **kw: object) -> PageResult:
    fields: dict[str, object] = dict(
        doc=doc,
        page=page,
        model=model,
        ok=True,
        error=None,
        latency_s=1.0 + page / 10,
        prompt_tokens=900,
        completion_tokens=60,
        finish_reason="stop",
        text=TEXTS[model] if text is None else text,
        cer=0.0 if model == "glm-ocr" else 0.05,
        category="zh_contract",
        flags=(),
    )
    fields.update(kw)
    return PageResult(**fields)  # type: ignore[arg-type]


def recorded_view() -> RunView:
    run = RunView(MODELS, "sample suite")
    run.started = 100.0
    for page in (1, 2):
        run.set_reference("contract", page, REFERENCE)
        for m in MODELS:
            run.add(result("contract", page, m))
    run.add(result("paper", 1, "glm-ocr", text="E = mc^2", cer=0.0))
    run.add(
        result(
            "paper",
            1,
            "lighton-ocr",
            ok=False,
            error="HTTP 500",
            text="",
            cer=None,
            latency_s=None,
            flags=(),
        )
    )
    run.out_dir = "runs/20261126-150000"
    run.finish()
    run.ended = 112.5
    return run
