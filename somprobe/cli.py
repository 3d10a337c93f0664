"""The ``somprobe`` command.

Each area registers its own sub-command group from its own module, so this file only
assembles them: ``somprobe data ...``, ``somprobe finetune ...``, ``somprobe eval ...``,
``somprobe capture ...``.
It also holds what every command shares, so that the console script, each area's
``python -m somprobe.<area>.cli`` (e.g. under ``accelerate launch``) and typer's test
runner behave alike:

* :func:`command_group` makes an area's ``typer.Typer``: a somprobe error, or a file that
  cannot be read or written, raised by any of its commands ends in one line on stderr
  (``somprobe: error: ...``) and exit code 2, never a traceback; help is plain text that
  wraps to the terminal (every option name in full at 80 columns).
* :func:`run` runs an app as a program with the same error handling, for the module
  entry points (``main()``).

Example:
    $ somprobe --help
    $ somprobe models build-tiny ./tiny-llava
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from somprobe.errors import SomprobeError

#: Errors a user can cause: shown as one line with exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (SomprobeError, OSError)


def error_line(err: BaseException) -> str:
    """The one line a user sees for ``err``: ``somprobe: error: <message>``."""
    message = " ".join(str(err).split("\n")).strip() or type(err).__name__
    return f"somprobe: error: {message}"


class SomprobeGroup(TyperGroup):
    """The command group class of every somprobe app: a user error raised by one of its
    commands is printed as one line on stderr and the command exits with code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as err:
            typer.echo(error_line(err), err=True)
            raise typer.Exit(code=2) from None


def command_group(name: str | None, help: str, **kwargs: Any) -> typer.Typer:
    """An area's command group with somprobe's error handling and 80-column help."""
    settings: dict[str, Any] = {
        "cls": SomprobeGroup,
        "no_args_is_help": True,
        "add_completion": False,
        "pretty_exceptions_enable": False,
        # plain click help: wraps descriptions and never cuts an option name (the rich
        # tables cut long option names with "…" at 80 columns)
        "rich_markup_mode": None,
    }
    settings.update(kwargs)
    return typer.Typer(name=name, help=help, **settings)


def run(app: typer.Typer, args: Sequence[str] | None = None) -> None:
    """Run ``app`` as a program (``args`` default to ``sys.argv[1:]``); errors raised
    outside a command group (a single-command app) also end in one line and exit 2."""
    try:
        app(args=None if args is None else list(args))
    except USER_ERRORS as err:
        typer.echo(error_line(err), err=True)
        raise SystemExit(2) from None


# (sub-command name, module with a ``app: typer.Typer``); a module that does not exist
# yet is left out, so the command works while areas are being built.
_SUBCOMMANDS: list[tuple[str, str]] = [
    ("models", "somprobe.models.cli"),
    ("data", "somprobe.data.cli"),
    ("finetune", "somprobe.finetune.cli"),
    ("eval", "somprobe.evals.cli"),
    ("capture", "somprobe.capture.cli"),
]

_APP: typer.Typer | None = None


def get_app() -> typer.Typer:
    """The ``somprobe`` app with every area's commands (built on first use, so the areas'
    modules can import this one)."""
    global _APP
    if _APP is None:
        root = command_group(
            "somprobe",
            "Measure how multimodal LLMs tie Set-of-Mark tags to the objects they mark.",
        )
        for name, module in _SUBCOMMANDS:
            try:
                sub = importlib.import_module(module)
            except ModuleNotFoundError as err:
                # only a missing area module (or its package) is skipped; others surface
                if err.name is None or not module.startswith(err.name):
                    raise
                continue
            root.add_typer(sub.app, name=name)
        _APP = root
    return _APP


def __getattr__(name: str) -> Any:
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``somprobe`` console script: a somprobe error, or a file that
    cannot be read or written, ends in one line on stderr and exit code 2."""
    run(get_app(), args)


if __name__ == "__main__":
    main()
