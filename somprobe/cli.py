"""The ``somprobe`` command.

Each area registers its own sub-command group from its own module, so this file only
assembles them: ``somprobe data ...``, ``somprobe finetune ...``, ``somprobe eval ...``.

Example:
    $ somprobe --help
    $ somprobe models build-tiny ./tiny-llava
"""

from __future__ import annotations

import importlib

import typer

from somprobe.errors import SomprobeError

app = typer.Typer(
    name="somprobe",
    help="Measure how multimodal LLMs tie Set-of-Mark tags to the objects they mark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (sub-command name, module with a ``app: typer.Typer``); a module that does not exist
# yet is left out, so the command works while areas are being built.
_SUBCOMMANDS: list[tuple[str, str]] = [
    ("models", "somprobe.models.cli"),
    ("data", "somprobe.data.cli"),
    ("finetune", "somprobe.finetune.cli"),
    ("eval", "somprobe.evals.cli"),
]

for _name, _module in _SUBCOMMANDS:
    try:
        _sub = importlib.import_module(_module)
    except ModuleNotFoundError as _err:
        # only a missing area module (or its package) is skipped; other import errors surface
        if _err.name is None or not _module.startswith(_err.name):
            raise
        continue
    app.add_typer(_sub.app, name=_name)


def main() -> None:
    """Entry point of the ``somprobe`` console script: a somprobe error, or a file that
    cannot be read or written, ends in one line on stderr and exit code 2."""
    try:
        app()
    except (SomprobeError, OSError) as err:
        typer.echo(f"somprobe: error: {err}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
