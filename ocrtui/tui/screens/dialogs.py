"""Modal dialogs. Cancel is the focused (default) button wherever the action is destructive."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from ocrtui.compare.launch import CompareRequest, validate_request
from ocrtui.config import CompareConfig, Config, int_limits
from ocrtui.errors import OcrtuiError
from ocrtui.tui.widgets.format import visible

DIALOG_CSS = """
.dialog { align: center middle; background: $background 60%; }
.dialog > Vertical { width: 76; height: auto; max-height: 90%; border: thick $primary;
                     background: $surface; padding: 1 2; }
.dialog .title { text-style: bold; width: 1fr; margin-bottom: 1; }
.dialog .buttons { height: auto; align-horizontal: right; margin-top: 1; }
.dialog Button { margin-left: 2; }
.dialog Input { margin-bottom: 1; }
.dialog VerticalScroll { height: auto; max-height: 20; }
"""


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel")
    ]

    def __init__(self, title: str, body: str | Content, confirm: str) -> None:
        super().__init__(classes="dialog")
        self._title = title
        self._body = body
        self._confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title")
            yield Static(self._body, id="body")
            with Horizontal(classes="buttons"):
                yield Button(self._confirm, variant="error", id="confirm")
                yield Button("Cancel", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_cancel(self) -> None:
        self.dismiss(False)


class LauncherDialog(ModalScreen["CompareRequest | None"]):
    """The dashboard's way to ask for a comparison: the same request `ocrtui compare`
    builds, checked by the same validation (limits from the config schema)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel")
    ]

    def __init__(self, config: Config) -> None:
        super().__init__(classes="dialog")
        self._config = config

    def compose(self) -> ComposeResult:
        cfg = self._config.compare
        low, high = int_limits(CompareConfig, "concurrency")
        with Vertical():
            yield Label("Compare the models", classes="title")
            yield Label("Documents (paths, space-separated; empty = the sample suite)")
            yield Input(placeholder="sample suite", id="docs")
            yield Label("Pages (e.g. 1-3,7,10-; empty = all)")
            yield Input(placeholder="all", id="pages")
            yield Label(f"Concurrency of the throughput phase ({low}–{high})")
            yield Input(str(cfg.concurrency), id="concurrency", type="integer")
            with RadioSet(id="schedule"):
                yield RadioButton("one model at a time", value=cfg.schedule == "sequential")
                yield RadioButton("both at once", value=cfg.schedule == "parallel")
            yield Static(id="error")
            with Horizontal(classes="buttons"):
                yield Button("Start", variant="success", id="start")
                yield Button("Cancel", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#start", Button).focus()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#start")
    @on(Input.Submitted)
    def _start(self) -> None:
        raw = self.query_one("#concurrency", Input).value.strip()
        radio = self.query_one("#schedule", RadioSet)
        try:
            concurrency = int(raw)
        except ValueError:
            self._problem(f"concurrency: {raw or 'empty'}: not a whole number")
            return
        request = CompareRequest(
            documents=tuple(self.query_one("#docs", Input).value.split()),
            pages=self.query_one("#pages", Input).value.strip() or None,
            concurrency=concurrency,
            schedule="parallel" if radio.pressed_index == 1 else "sequential",
        )
        try:
            validate_request(self._config, request)
        except OcrtuiError as exc:
            self._problem(str(exc))
            return
        self.dismiss(request)

    def _problem(self, text: str) -> None:
        self.query_one("#error", Static).update(Content.styled(text, "$error"))


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close", id="dialog.close")
    ]

    def __init__(self, rows: list[tuple[str, str]], readonly: bool) -> None:
        super().__init__(classes="dialog")
        self._rows = rows
        self._readonly = readonly

    def compose(self) -> ComposeResult:
        width = max((len(k) for k, _ in self._rows), default=4) + 2
        text = "\n".join(f"{k:<{width}}{d}" for k, d in self._rows)
        if self._readonly:
            text += "\n\nread-only: actions that change the pod are off."
        with Vertical():
            yield Label("Keys", classes="title")
            with VerticalScroll():
                yield Static(text, id="keys")
            with Horizontal(classes="buttons"):
                yield Button("Close", variant="primary", id="close")

    @on(Button.Pressed)
    def action_close(self) -> None:
        self.dismiss(None)


class TextDialog(ModalScreen[None]):
    """A title over plain text from the pod (control characters shown, never markup)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close", id="dialog.close")
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__(classes="dialog")
        self._title = title
        self._text = text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title")
            with VerticalScroll():
                yield Static(Content(visible(self._text)), id="text")
            with Horizontal(classes="buttons"):
                yield Button("Close", variant="primary", id="close")

    @on(Button.Pressed)
    def action_close(self) -> None:
        self.dismiss(None)
