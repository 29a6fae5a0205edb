"""The embedded demo dataset: deterministic, generated shape images in ImageFolder layout. No download.

Ten classes of shapes drawn in random colours, sizes, positions and small rotations on cluttered, noisy backgrounds.
Some pairs are close (circle/hexagon/ring at small sizes, square/diamond), so a short training run lands well above
chance and well below 100%, and pruning and INT8 effects show in the accuracy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edgeres.utils import atomic_path, write_text_atomic

CLASSES = ("circle", "square", "triangle", "diamond", "cross", "ring", "star", "halfdisc", "stripes", "checker")
DEMO_IMAGE_SIZE = 72


def _polygon(cx, cy, r, n, rot):
    return [(cx + r * math.cos(rot + 2 * math.pi * k / n), cy + r * math.sin(rot + 2 * math.pi * k / n)) for k in range(n)]


def _star(cx, cy, r, rot):
    pts = []
    for k in range(10):
        rr = r if k % 2 == 0 else r * 0.45
        a = rot + math.pi * k / 5
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _contrasting_colour(rng, bg):
    for _ in range(20):
        c = rng.integers(0, 256, 3)
        if np.abs(c.astype(int) - np.asarray(bg, int)).sum() > 180:
            return tuple(int(v) for v in c)
    return tuple(int(255 - v) for v in bg)


def _background(rng: np.random.Generator, s: int):
    """A two-colour gradient, vertical or horizontal: (image, its float array)."""
    bg1, bg2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, s, dtype=np.float32)[:, None, None]
    grad = bg1 * (1 - t) + bg2 * t
    if rng.random() < 0.5:
        grad = grad.transpose(1, 0, 2)
    arr = np.broadcast_to(grad, (s, s, 3)).astype(np.float32)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8)), arr


def _clutter(d, rng: np.random.Generator, s: int) -> None:
    """A few random blobs and lines that are not the class shape."""
    for _ in range(int(rng.integers(0, 3))):
        x, y = rng.integers(0, s, 2)
        r = int(rng.integers(2, max(3, s // 12)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            d.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        else:
            x2, y2 = rng.integers(0, s, 2)
            d.line([int(x), int(y), int(x2), int(y2)], fill=colour, width=int(rng.integers(1, 3)))


def _shape(d, name: str, cx: float, cy: float, r: float, rot: float, fg, rng: np.random.Generator) -> None:
    """The class shape ``name`` centred at (cx, cy), radius r, rotated by rot."""
    w = max(2, int(r * 0.35))
    if name == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif name in ("square", "triangle", "diamond"):
        sides, scale, angle = {"square": (4, 1.15, math.pi / 4), "triangle": (3, 1.1, -math.pi / 2),
                               "diamond": (4, 1.1, 0.0)}[name]
        d.polygon(_polygon(cx, cy, r * scale, sides, angle + rot), fill=fg)
    elif name == "cross":
        d.line([cx - r, cy, cx + r, cy], fill=fg, width=w)
        d.line([cx, cy - r, cx, cy + r], fill=fg, width=w)
    elif name == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=max(2, int(r * 0.3)))
    elif name == "star":
        d.polygon(_star(cx, cy, r * 1.15, -math.pi / 2 + rot), fill=fg)
    elif name == "halfdisc":
        start = math.degrees(rot)
        d.pieslice([cx - r, cy - r * 0.5, cx + r, cy + r * 1.5], 180 + start, 360 + start, fill=fg)
    elif name == "stripes":
        n = int(rng.integers(3, 5))
        for k in range(n):
            y = cy - r + (2 * r) * (k + 0.5) / n
            d.line([cx - r, y, cx + r, y], fill=fg, width=max(2, int(r / n)))
    elif name == "checker":
        n = 3
        cell = 2 * r / n
        for i in range(n):
            for j in range(n):
                if (i + j) % 2 == 0:
                    x0, y0 = cx - r + i * cell, cy - r + j * cell
                    d.rectangle([x0, y0, x0 + cell, y0 + cell], fill=fg)


def render(label: int, rng: np.random.Generator, size: int = DEMO_IMAGE_SIZE) -> Image.Image:
    """Draw one image of class ``label`` with the randomness of ``rng``."""
    s = size
    img, arr = _background(rng, s)
    d = ImageDraw.Draw(img)
    _clutter(d, rng, s)
    fg = _contrasting_colour(rng, arr.mean(axis=(0, 1)))
    r = float(rng.uniform(0.24, 0.4)) * s
    cx = float(rng.uniform(r + 1, s - r - 1))
    cy = float(rng.uniform(r + 1, s - r - 1))
    rot = float(rng.uniform(-0.2, 0.2))
    _shape(d, CLASSES[label], cx, cy, r, rot, fg, rng)
    if rng.random() < 0.2:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    out = np.asarray(img, dtype=np.float32) + rng.normal(0, float(rng.uniform(3, 10)), (s, s, 3))
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def make_demo(out, train_per_class: int = 120, val_per_class: int = 40, size: int = DEMO_IMAGE_SIZE,
              seed: int = 0, progress: bool = True) -> Path:
    """Write ``out/train/CLASS/*.png`` and ``out/val/CLASS/*.png``. Same arguments, same bytes, on every machine."""
    from edgeres.progress import bar

    out = Path(out)
    jobs = [(split, ci, k) for split, n in (("train", train_per_class), ("val", val_per_class))
            for ci in range(len(CLASSES)) for k in range(n)]
    for split, ci, k in bar(jobs, desc="demo data", enabled=progress, unit="img"):
        path = out / split / CLASSES[ci] / f"{k:05d}.png"
        if path.exists():
            continue
        # one independent stream per image: stable under changes of the counts
        rng = np.random.default_rng([seed, 0 if split == "train" else 1, ci, k])
        with atomic_path(path) as tmp:
            render(ci, rng, size).save(tmp, format="PNG")
    write_text_atomic(out / "labels.txt", "\n".join(CLASSES) + "\n")
    return out
