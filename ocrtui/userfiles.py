"""The one gate for every file the user names: documents, folders, suites, references,
themes and configs.

Whatever the file is, what comes back is either its content or one :class:`UserFileError`
line naming the file and the problem; callers turn it into their own error (a per-document
``DocumentError``, a ``ConfigError``, a theme warning). The gate refuses special files
(FIFOs, devices, sockets: opening a FIFO would block forever), files over the size cap, and
images over the pixel cap (Pillow's own bomb check raises an exception type nobody expects
and only at twice its limit); names that are not valid UTF-8 are shown with replacement
characters (:func:`display_path`), never passed on as surrogates that crash a UTF-8 write.
Standard library and Pillow only, so any layer may use it.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrtui.errors import InputError

MB = 1_000_000
# Defaults sized for a 24 GiB machine running both models: a 100 Mpx page decodes to
# 300 MB of RGB, a few of them in flight stay well clear of the models' memory.
DEFAULT_MAX_FILE_MB = 200
DEFAULT_MAX_PAGE_MPX = 100
# Suites, configs, themes and references are small text files; a larger one is a mistake.
TEXT_MAX_BYTES = 16 * MB


class UserFileError(InputError):
    """A file the user named cannot be used; the message names it and the problem."""


@dataclass(frozen=True)
class FileLimits:
    max_file_bytes: int = DEFAULT_MAX_FILE_MB * MB
    max_page_pixels: int = DEFAULT_MAX_PAGE_MPX * MB


DEFAULT_LIMITS = FileLimits()


def display_path(path: str | os.PathLike[str]) -> str:
    """The path as text that can always be printed and written as UTF-8: bytes that are not
    UTF-8 (kept by Python as surrogate escapes) become U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _special(mode: int) -> str | None:
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None


def _size_text(n: int) -> str:
    return f"{n / MB:.0f} MB" if n >= MB else f"{n} bytes"


def check_file(path: Path, *, max_bytes: int, limit_key: str = "", what: str = "file") -> int:
    """Stat ``path`` (following links) and return its size; UserFileError unless it is a
    regular file of at most ``max_bytes`` (``limit_key``: the setting that raises it)."""
    shown = display_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserFileError(f"{shown}: {what} not found") from None
    except ValueError:  # a NUL byte in the name
        raise UserFileError(f"{shown!r}: not a valid file name") from None
    except OSError as exc:
        raise UserFileError(f"{shown}: cannot read: {exc.strerror}") from None
    return _check_stat(shown, st, max_bytes, limit_key)


def _check_stat(shown: str, st: os.stat_result, max_bytes: int, limit_key: str = "") -> int:
    if stat.S_ISDIR(st.st_mode):
        raise UserFileError(f"{shown}: is a folder, not a file")
    kind = _special(st.st_mode)
    if kind is not None or not stat.S_ISREG(st.st_mode):
        raise UserFileError(f"{shown}: is {kind or 'not a regular file'}, not a regular file")
    if st.st_size > max_bytes:
        key = f" ({limit_key})" if limit_key else ""
        raise UserFileError(
            f"{shown}: {_size_text(st.st_size)}, over the {_size_text(max_bytes)} limit{key}"
        )
    return st.st_size


def read_bytes(path: Path, *, max_bytes: int = TEXT_MAX_BYTES, what: str = "file") -> bytes:
    """The whole file, checked as by :func:`check_file` on the open file itself (so a file
    swapped for a FIFO after the check still cannot block)."""
    check_file(path, max_bytes=max_bytes, what=what)
    shown = display_path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UserFileError(f"{shown}: cannot read: {exc.strerror}") from None
    try:
        _check_stat(shown, os.fstat(fd), max_bytes)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise UserFileError(f"{shown}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew since the check
        raise UserFileError(f"{shown}: over the {_size_text(max_bytes)} limit")
    return data


def read_text(path: Path, *, max_bytes: int = TEXT_MAX_BYTES, what: str = "file") -> str:
    data = read_bytes(path, max_bytes=max_bytes, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserFileError(f"{display_path(path)}: not UTF-8 text (byte {exc.start})") from None


def load_toml(path: Path, *, what: str = "file") -> dict[str, Any]:
    """A TOML file's top-level table; every failure is one UserFileError line."""
    text = read_text(path, what=what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserFileError(f"{display_path(path)}: invalid TOML: {exc}") from None
    except RecursionError:
        raise UserFileError(f"{display_path(path)}: invalid TOML: nested too deeply") from None


def apply_pixel_limit(limits: FileLimits) -> None:
    """Let Pillow open what our own check allows (its bomb check fires at twice this)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = limits.max_page_pixels


def check_pixels(shown: str, page: int, size: tuple[int, int], limits: FileLimits) -> None:
    w, h = size
    if w * h > limits.max_page_pixels:
        raise UserFileError(
            f"{shown}: page {page} is {w}x{h} = {w * h / MB:.0f} Mpx, over the "
            f"{limits.max_page_pixels / MB:.0f} Mpx limit (compare.max_page_mpx)"
        )
