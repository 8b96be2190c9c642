"""Theme files and the UI state: bad files are warnings, the config's theme wins once changed."""

from __future__ import annotations

import os
from pathlib import Path

from ocrtui.tui.themes import load_themes, read_state, remember_theme, theme_to_use

GOOD = 'name = "mine"\n[colors]\nprimary = "#ff00ff"\n'


def test_special_and_misshapen_theme_files_are_warnings(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text(GOOD)
    os.mkfifo(tmp_path / "pipe.toml")
    (tmp_path / "shape.toml").write_text('name = "x"\ncolors = 1\n')
    (tmp_path / "bytes.toml").write_bytes(b'name = "\xff"\n')
    loaded = load_themes(tmp_path)
    assert [t.name for t in loaded.themes] == ["mine"]
    text = "\n".join(sorted(loaded.warnings))
    assert "bytes.toml: not UTF-8 text" in text
    assert "pipe.toml: is a FIFO" in text
    assert "shape.toml: colors:" in text
    assert all("\n" not in w for w in loaded.warnings)


def test_palette_choice_lasts_until_the_config_theme_changes(tmp_path: Path) -> None:
    state = tmp_path / "ui-state.toml"
    assert theme_to_use(read_state(state), "ocrtui-dark") == "ocrtui-dark"
    remember_theme(state, "ocrtui-light", "ocrtui-dark")
    assert theme_to_use(read_state(state), "ocrtui-dark") == "ocrtui-light"
    assert theme_to_use(read_state(state), "solarized") == "solarized"
    # A state file from before the config's theme was stored: the config wins.
    assert theme_to_use({"theme": "ocrtui-light"}, "ocrtui-dark") == "ocrtui-dark"


def test_unreadable_state_counts_as_none(tmp_path: Path) -> None:
    state = tmp_path / "ui-state.toml"
    os.mkfifo(state)
    assert read_state(state) == {}
