"""What every edgeres command shares: the error handling that turns failures into one line (``EdgeresGroup``), and
the preprocessing the flags and the artifact give together. The flags themselves: edgeres.cli_options."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from edgeres.errors import EdgeresError

# bounds of the numeric flags outside the option table (edgeres.options), what a machine can do: no flag reaches a
# library unchecked (a seed beyond 32 bits dies inside numpy/torch; a batch of 10^8 images inside an allocator)
SEED = click.IntRange(0, 2**32 - 1)
MAX_BATCH = 4096
MAX_CLASSES = 1_000_000
MAX_PER_CLASS = 100_000


class EdgeresGroup(click.Group):
    """Turns edgeres errors and file-system errors (OSError) into one line on stderr and exit 1, Ctrl-C into exit 130:
    no traceback for user mistakes. The libraries' warnings (torch's, NNCF's...) are held while a command runs and
    shown after its result or its error line: the first line a user reads of a failure is edgeres's own. edgeres's
    own warnings (a skipped corrupt image) show when they happen."""

    def invoke(self, ctx):
        if _held is not None:  # a nested group (edgeres data, edgeres device): the outermost one holds and reports
            return self._invoke(ctx)
        with _holding_library_warnings():
            return self._invoke(ctx)

    def _invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeresError as e:
            _fail(f"error: {e}", 1)
        except OSError as e:  # read-only, no space, not a directory, permission: one line naming the path
            from edgeres.errors import describe_oserror

            _fail(f"error: {describe_oserror(e)}", 1)
        except KeyboardInterrupt:
            _fail("interrupted: finished work is kept; run the same command again to resume", 130, "yellow")


_held: list | None = None  # the library warnings held while the outermost command runs


def _fail(line: str, code: int, colour: str = "red"):
    click.secho(line, fg=colour, err=True)
    _release()
    sys.exit(code)


def _release() -> None:
    global _held
    if _held:
        for text in dict.fromkeys(_held):  # each once, in order
            click.echo(text, err=True)
    _held = [] if _held is not None else None


def _own_packages():
    import edgeres_deploy

    import edgeres

    return edgeres, edgeres_deploy


@contextlib.contextmanager
def _holding_library_warnings():
    global _held
    import warnings

    own = tuple(os.path.dirname(os.path.abspath(m.__file__)) for m in _own_packages())

    def show(message, category, filename, lineno, file=None, line=None):
        if os.path.abspath(str(filename)).startswith(own):
            return shown(message, category, filename, lineno, file, line)
        _held.append(f"warning: {category.__name__}: {str(message).strip()}")

    _held = []
    with warnings.catch_warnings():
        shown = warnings.showwarning
        warnings.showwarning = show
        try:
            yield
        finally:
            _release()
            _held = None


def resolve_preprocess(stored: dict | None, image_size=None, crop_ratio=None, mean=None, std=None):
    """Flags override what the artifact stores; what neither says takes the defaults."""
    from edgeres.data.model_inputs import resolve_model_preprocess

    try:
        return resolve_model_preprocess(stored, dict(image_size=image_size, crop_ratio=crop_ratio, mean=mean, std=std))
    except EdgeresError as e:
        raise click.UsageError(str(e)) from None


class FiniteFloat(click.FloatRange):
    """click.FloatRange that refuses nan and inf (a range check alone lets nan through: it compares False)."""

    def convert(self, value, param, ctx):
        import math

        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv
