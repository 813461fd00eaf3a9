"""Typer's test runner with the click command of an app built once per process.

``typer.testing.CliRunner.invoke`` turns the Typer app into click commands on every call (~40 ms of CPU for
limen's ~60 commands: it evaluates every parameter's annotations), which was an eighth of the unit tier's CPU.
The commands it builds do not change between calls and click keeps nothing of a run in them (each run has its
own context), so one per app serves every invocation.
"""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import typer
import typer.main
import typer.testing
from typer.testing import Result


@functools.cache
def click_command(app: typer.Typer) -> Any:
    return typer.main.get_command(app)


class CliRunner(typer.testing.CliRunner):
    def invoke(  # type: ignore[override]
        self,
        app: typer.Typer,
        args: str | Sequence[str] | None = None,
        input: bytes | str | None = None,
        env: Mapping[str, str | None] | None = None,
        catch_exceptions: bool = True,
        color: bool = False,
    ) -> Result:
        command = click_command(app)
        arguments = shlex.split(args) if isinstance(args, str) else list(args or ())
        exit_code, return_value = 0, None
        exception: BaseException | None = None
        exc_info = None
        with self.isolation(input=input, env=env, color=color) as (stdout, stderr, output):
            try:
                return_value = command.main(args=arguments, prog_name=self.get_default_prog_name(command))
            except SystemExit as exit_:
                exc_info = sys.exc_info()
                code = 0 if exit_.code is None else exit_.code
                if code != 0:
                    exception = exit_
                if not isinstance(code, int):
                    sys.stdout.write(f"{code}\n")
                    code = 1
                exit_code = code
            except Exception as error:
                if not catch_exceptions:
                    raise
                exception, exit_code, exc_info = error, 1, sys.exc_info()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            return Result(runner=self, stdout_bytes=stdout.getvalue(), stderr_bytes=stderr.getvalue(),
                          output_bytes=output.getvalue(), return_value=return_value, exit_code=exit_code,
                          exception=exception, exc_info=exc_info)  # type: ignore[arg-type]
