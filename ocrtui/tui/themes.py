"""Themes as TOML files, and the small UI state file that remembers the chosen one.

Built-in themes ship in the package (``ocrtui/tui/theme_files`` is a link to the repository's
``themes/``, whose files setuptools copies into the wheel as package data); users add their
own in ``[ui] theme_dir`` or ``<user config dir>/themes``. A bad file never stops the
dashboard: it becomes one warning naming the file and the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from textual.color import Color, ColorParseError
from textual.theme import Theme

from ocrtui.userfiles import UserFileError, display_path, load_toml

BUILTIN_THEME_DIR = Path(__file__).parent / "theme_files"
STATE_NAME = "ui-state.toml"


def user_theme_dir(configured: str | None) -> Path:
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_config_dir("ocrtui")) / "themes"


def default_state_path() -> Path:
    return Path(platformdirs.user_state_dir("ocrtui")) / STATE_NAME


class _Colors(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    primary: str
    secondary: str | None = None
    accent: str | None = None
    warning: str | None = None
    error: str | None = None
    success: str | None = None
    foreground: str | None = None
    background: str | None = None
    surface: str | None = None
    panel: str | None = None
    boost: str | None = None

    @field_validator("*")
    @classmethod
    def _color(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                Color.parse(v)
            except ColorParseError:
                raise ValueError(f"not a colour: {v!r}") from None
        return v


class ThemeFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    dark: bool = True
    colors: _Colors
    variables: dict[str, str] = Field(default_factory=dict)

    def to_theme(self) -> Theme:
        return Theme(
            name=self.name,
            dark=self.dark,
            variables=dict(self.variables),
            **self.colors.model_dump(),
        )


@dataclass(frozen=True)
class LoadedThemes:
    themes: list[Theme]
    warnings: list[str]


def parse_theme(path: Path) -> Theme:
    """One theme file; ValueError with a one-line reason naming the key when it is invalid."""
    try:
        data = load_toml(path)
    except UserFileError as exc:  # "PATH: problem"; the warning names the file already
        raise ValueError(str(exc).removeprefix(f"{display_path(path)}: ")) from None
    try:
        return ThemeFile.model_validate(data).to_theme()
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ValueError(f"{key}: {msg.removeprefix('Value error, ')}") from None


def load_themes(*dirs: Path) -> LoadedThemes:
    """Every ``*.toml`` in the folders, in order (a later file of the same name wins)."""
    themes: dict[str, Theme] = {}
    warnings: list[str] = []
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = parse_theme(path)
            except ValueError as exc:
                warnings.append(f"theme {display_path(path)}: {exc}")
                continue
            themes[theme.name] = theme
    return LoadedThemes(list(themes.values()), warnings)


def theme_to_use(state: Mapping[str, str], configured: str) -> str:
    """``[ui] theme`` unless the palette chose another while the config said the same as
    now: the palette's choice wins only until the config's theme changes."""
    chosen = state.get("theme")
    if chosen and state.get("config_theme") == configured:
        return chosen
    return configured


def remember_theme(path: Path, theme: str, configured: str) -> None:
    """Store the palette's choice with the config's theme it overrode (see theme_to_use)."""
    write_state(path, theme=theme, config_theme=configured)


def read_state(path: Path) -> dict[str, str]:
    """The remembered UI choices; an unreadable file counts as none remembered."""
    try:
        data = load_toml(path)
    except UserFileError:
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)}


def write_state(path: Path, **values: str) -> None:
    """Merge values into the state file; written whole to a temp file then renamed."""
    state = read_state(path)
    state.update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(tomli_w.dumps(state).encode("utf-8"))
    tmp.replace(path)
