"""The inputs a model file implies: its preprocessing (what the artifact stores, overridden by the CLI's flags) and
its data folder (the one given, else the one an edgeres checkpoint records)."""

from __future__ import annotations


def resolve_model_preprocess(stored: dict | None, overrides: dict | None):
    """Preprocess from what the artifact stores, overridden by CLI flags (image_size/crop_ratio/mean/std)."""
    from edgeres.data import Preprocess
    from edgeres.errors import EdgeresError

    d = dict(stored or {})
    o = overrides or {}
    for key, flag in (("size", "image_size"), ("crop_ratio", "crop_ratio"), ("mean", "mean"), ("std", "std")):
        if o.get(flag) is not None:
            d[key] = o[flag]
    try:
        return Preprocess.from_dict(d)
    except ValueError as e:
        raise EdgeresError(str(e)) from None


def resolve_data_for(meta, data):
    """The data folder to use: the one given, else the one an edgeres checkpoint records; None if neither."""
    import os

    if data:
        return data
    root = getattr(meta, "data_root", None)
    return root if root and os.path.isdir(root) else None
