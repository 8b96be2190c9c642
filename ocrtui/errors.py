"""Errors that end a command, each with the exit code of the command-line contract.

0 all done; 1 finished with failed pages or documents, or a model server operation failed;
2 usage, config or input error; 3 pod unreachable.
"""


class OcrtuiError(Exception):
    exit_code = 2


class ConfigError(OcrtuiError):
    """A config file or option is wrong; the message names the file, the key and the problem."""


class InputError(OcrtuiError):
    """A document, suite or page spec the user gave cannot be used."""


class PodUnreachable(OcrtuiError):
    exit_code = 3


class HostKeyError(PodUnreachable):
    """The pod's host key is unknown or changed; never accepted silently."""


class HintedError(OcrtuiError):
    """A failure that says what went wrong (``message``) and, where known, what to do
    (``hint``); exit code 1."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class LifecycleError(HintedError):
    """A model server operation (preflight, start, stop) failed."""
