"""What every edgeres command shares: the error handling that turns failures into one line (``EdgeresGroup``), and
the preprocessing the flags and the artifact give together. The flags themselves: edgeres.cli_options."""

from __future__ import annotations

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
    no traceback for user mistakes."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeresError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(1)
        except OSError as e:  # read-only, no space, not a directory, permission: one line naming the path
            from edgeres.errors import describe_oserror

            click.secho(f"error: {describe_oserror(e)}", fg="red", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.secho("interrupted: finished work is kept; run the same command again to resume", fg="yellow", err=True)
            sys.exit(130)


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
