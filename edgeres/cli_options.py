"""The click flags of each command, made from the option table (edgeres.options): one declaration per option, the same
check for a flag as for its key in a YAML file (a bad value is a usage error, exit 2, before any work)."""

from __future__ import annotations

import click

from edgeres.errors import ConfigError
from edgeres.options import BY_KEY, OPTIONS, STAGE_COMMANDS, Option, check

DEPRECATED_FLAGS = {("quantize", "--max-accuracy-drop"): "int8_max_drop"}  # an old spelling: it warns once
_warned: set = set()


class _Checked(click.ParamType):
    """A flag's text parsed and checked as its option's value (finite numbers, ranges, lists, names)."""

    def __init__(self, o: Option):
        self.o = o
        self.name = o.kind

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        o = self.o
        if o.nullable and value.strip().lower() in ("none", "null"):
            return None
        try:
            if o.kind in ("int", "float"):
                try:
                    v = int(value) if o.kind == "int" else float(value)
                except ValueError:
                    raise ConfigError(o.key, f"must be {'a whole number' if o.kind == 'int' else 'a number'}", value) from None
                return check(o, v)
            if o.kind == "list3":
                try:
                    v = [float(x) for x in value.split(",")]
                except ValueError:
                    raise ConfigError(o.key, "give three comma-separated numbers, e.g. 0.485,0.456,0.406", value) from None
                return check(o, v)
            return check(o, value)
        except ConfigError as e:
            self.fail(f"{e.need} (got {value!r})", param, ctx)


def _help(o: Option, command: str) -> str:
    text = o.help[0].upper() + o.help[1:]
    if o.kind == "choice" and len(o.choices) > 1:
        text += f" ({' | '.join(o.choices)})"
    if command in STAGE_COMMANDS and o.default not in (None, [], False, ""):
        shown = ",".join(map(str, o.default)) if isinstance(o.default, list) else o.default
        text += f" (default {shown})"
    return text + "."


def click_option(o: Option, command: str):
    """The click option of ``o`` on ``command``. On optimize and demo an unset flag is None: the config file, then the
    default, decide."""
    unset = command in STAGE_COMMANDS
    default = None if unset else o.cli_default.get(command, o.default)
    kw = dict(help=_help(o, command), required=command in o.required)
    if o.kind == "bool":
        if o.invert:
            return click.option(o.invert, o.key, flag_value=False, default=None if unset else default, **kw)
        return click.option(o.flag_for(command), o.key, is_flag=True, default=None if unset else default, **kw)
    if o.multiple:
        return click.option(o.flag_for(command), o.key, multiple=True, **kw)
    kind = click.Choice(o.choices) if o.kind == "choice" else _Checked(o)
    show = None if unset or default is None else (",".join(default) if isinstance(default, list) else True)
    return click.option(o.flag_for(command), o.key, type=kind, default=default, show_default=show, **kw)


def flags(command: str, keys: tuple | None = None):
    """Decorator: the flags of ``command`` (or only ``keys`` of them), in the table's order."""
    chosen = [o for o in OPTIONS if command in o.commands and (keys is None or o.key in keys)]
    extra = [click.option(flag, f"{key}__old", type=_Checked(BY_KEY[key]), default=None, hidden=True)
             for (cmd, flag), key in DEPRECATED_FLAGS.items() if cmd == command and (keys is None or key in keys)]

    def deco(f):
        if command not in STAGE_COMMANDS and any(o.key == "skip_corrupt" for o in chosen):
            f = _skipping_corrupt(f)
        for opt in reversed([click_option(o, command) for o in chosen] + extra):
            f = opt(f)
        return f

    return deco


def _skipping_corrupt(f):
    """``f`` run with its --skip-corrupt applied to every reader of images it reaches (edgeres.data.folder); the flag
    itself is not passed on. On optimize and demo the config key does the same for the whole run."""
    import functools

    @functools.wraps(f)
    def run(*args, **kw):
        from edgeres.data.folder import skipping_corrupt

        with skipping_corrupt(bool(kw.pop("skip_corrupt", False))):
            return f(*args, **kw)

    return run


def values(command: str, kw: dict) -> dict:
    """The flags' values as config keys: a deprecated spelling moved to its key (said once), repeatable flags as
    lists, an unset flag of optimize/demo left None."""
    out = dict(kw)
    for (cmd, flag), key in DEPRECATED_FLAGS.items():
        old = out.pop(f"{key}__old", None)
        if cmd == command and old is not None:
            if flag not in _warned:
                _warned.add(flag)
                click.secho(f"warning: {command} {flag} is deprecated: use {BY_KEY[key].flag_for(command)}",
                            fg="yellow", err=True)
            out[key] = out[key] if _given(key) else old  # the new spelling, given too, wins
    for o in OPTIONS:
        if o.multiple and o.key in out:
            out[o.key] = list(out[o.key]) or (None if command in STAGE_COMMANDS else [])
    return out


def _given(key: str) -> bool:
    """Whether ``key``'s flag was given on the command line (not its default)."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(key) not in (None, ParameterSource.DEFAULT)


def check_target_use(command: str, target: str | None, given: dict):
    """The target profile of ``target``, after refusing (a usage error, exit 2, before any work) an unknown target or
    an option in ``given`` ({key: value}) that the target cannot use (edgeres.targets.cannot_use: the same rule as a
    YAML key's). None for ``auto`` (the board decides, later) or no target."""
    from edgeres.errors import EdgeresError
    from edgeres.targets import cannot_use, get_target

    if target in (None, "auto"):
        return None
    try:
        t = get_target(target)
    except EdgeresError as e:
        raise click.BadParameter(str(e), param_hint="--target") from None
    for key, value in given.items():
        why = cannot_use(t, key, value)
        if why:
            shown = BY_KEY[key].flag_for(command) if key in BY_KEY and command in BY_KEY[key].commands else f"--{key}"
            raise click.UsageError(f"{shown}{'' if value is True else f' {value}'}: {why}")
    return t
