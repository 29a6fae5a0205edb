"""`edgeres optimize`'s configuration: ``OptimizeConfig``, made from the option table of edgeres.options (every key,
its type, range and default, declared once there; documented in docs/edgeres.yaml), checked the same way whether it
came from a flag, a YAML file or Python."""

from __future__ import annotations

from dataclasses import field, fields, make_dataclass

from edgeres.errors import ConfigError, EdgeresError, require_path
from edgeres.options import OPTIONS, check, conflict, resolve_deprecated

_TYPES = {"str": "str", "choice": "str", "int": "int", "float": "float", "bool": "bool", "list3": "list",
          "intlist": "list", "strlist": "list"}


class _Checked:
    """What OptimizeConfig adds to its fields: validation on construction, and from a dict (a YAML file)."""

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Types and ranges of every key, then what the keys say together; raises ConfigError naming the key."""
        for o in OPTIONS:
            setattr(self, o.key, check(o, getattr(self, o.key)))
        for key, value in resolve_deprecated({o.key: getattr(self, o.key) for o in OPTIONS if o.deprecated}).items():
            setattr(self, key, value)
        self._check_target()

    def _check_target(self) -> None:
        from edgeres.targets import cannot_use, get_target

        if self.target == "auto":
            if not self.device:
                raise ConfigError("target", "auto takes the target from the board: it needs --device", self.target)
            return
        try:
            t = get_target(self.target)
        except EdgeresError as e:
            raise ConfigError("target", "unknown target; " + str(e).split(";", 1)[-1].strip(), self.target) from None
        for key in ("dla_core", "sparsity"):
            why = cannot_use(t, key, getattr(self, key))
            if why:
                raise ConfigError(key, why, getattr(self, key))

    @classmethod
    def from_dict(cls, d: dict):
        """From a mapping of keys to values (a YAML file's): unknown keys and keys that exclude each other refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise EdgeresError(f"unknown config keys {unknown}; valid keys: {', '.join(sorted(names))}")
        both = conflict(k for k, v in d.items() if v is not None)
        if both:
            raise ConfigError(both[0], f"give {both[0]} or {both[1]}, not both", d[both[0]])
        return cls(**d)


def _field(o):
    if isinstance(o.default, list):
        return (o.key, _TYPES[o.kind], field(default_factory=lambda d=o.default: list(d)))
    return (o.key, _TYPES[o.kind] + (" | None" if o.nullable else ""), field(default=o.default))


OptimizeConfig = make_dataclass("OptimizeConfig", [_field(o) for o in OPTIONS], bases=(_Checked,),
                                namespace={"__module__": __name__})
OptimizeConfig.__doc__ = "Every key of `edgeres optimize` (edgeres.options.OPTIONS), checked on construction."


def load_config_file(path) -> dict:
    import yaml

    require_path(path, "file", "config file")  # a named pipe would block the read forever
    try:
        with open(path, encoding="utf-8") as f:
            d = yaml.safe_load(f) or {}
    except OSError as e:
        raise EdgeresError(f"cannot read config {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise EdgeresError(f"{path} is not a UTF-8 text file: a config is YAML text") from None
    except yaml.YAMLError as e:
        raise EdgeresError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(d, dict):
        raise EdgeresError(f"{path} must hold a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in d.items()}
