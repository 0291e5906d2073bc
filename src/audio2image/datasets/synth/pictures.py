"""Image content of the synthetic Caltech-256: what one image of a class looks like.

Each class is a distinct (shape, palette, texture) combination (`class_design`); every image draws it
at a random position, scale and rotation over a noisy background with distractor blobs
(`render_image`). Owns SHAPES, PALETTES, TEXTURES, MAX_CLASSES, GRAYSCALE_RATE and the drawing helpers.
"""
from __future__ import annotations

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "bars", "hexagon")
# (background, first and second foreground colour) per palette.
PALETTES = (((200, 200, 195), (200, 30, 30), (250, 160, 40)), ((220, 200, 160), (30, 60, 180), (100, 180, 240)),
            ((40, 40, 50), (40, 170, 60), (200, 230, 80)), ((240, 230, 200), (120, 40, 150), (230, 120, 200)),
            ((30, 110, 120), (250, 130, 20), (250, 220, 120)), ((150, 190, 230), (20, 20, 20), (240, 240, 240)),
            ((110, 70, 40), (240, 210, 40), (250, 250, 180)), ((120, 140, 110), (0, 200, 210), (220, 0, 140)))
TEXTURES = ("solid", "stripes", "dots", "checker", "gradient")
GRAYSCALE_RATE = 0.03  # the real set has ~1.4% grayscale JPEGs; a few more make sure small sets have some
MAX_CLASSES = len(SHAPES) * len(PALETTES) * len(TEXTURES)


def class_design(c: int) -> tuple[str, int, str]:
    """(shape, palette, texture) of class c; distinct for every c < MAX_CLASSES.

    Consecutive classes differ in palette, and shape and texture are shifted by the digits before them,
    so even a handful of classes covers many shapes and textures. The digits (p, q, r) = (c mod 8,
    c div 8 mod 8, c div 64) identify c, and each shift depends only on earlier digits, so the design
    stays one-to-one.
    """
    p, q, r = c % len(PALETTES), c // len(PALETTES) % len(SHAPES), c // (len(PALETTES) * len(SHAPES))
    palette = p
    shape = (q + 3 * p) % len(SHAPES)
    texture = (r + p + q) % len(TEXTURES)
    return SHAPES[shape], palette, TEXTURES[texture]


def _unit_shape(shape: str) -> list[tuple[np.ndarray, int]]:
    """Polygons in unit coordinates (radius ~1) with the mask value each paints, in order."""
    def circle(r=1.0, k=48):
        a = np.linspace(0, 2 * np.pi, k, endpoint=False)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)

    def regular(k, r=1.0):
        return circle(r, k)

    def rect(x0, y0, x1, y1):
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)

    if shape == "circle":
        return [(circle(), 255)]
    if shape == "square":
        return [(rect(-.8, -.8, .8, .8), 255)]
    if shape == "triangle":
        return [(regular(3), 255)]
    if shape == "hexagon":
        return [(regular(6), 255)]
    if shape == "star":
        pts = regular(10)
        pts[1::2] *= 0.45
        return [(pts, 255)]
    if shape == "cross":
        w = .3
        return [(rect(-1, -w, 1, w), 255), (rect(-w, -1, w, 1), 255)]
    if shape == "ring":
        return [(circle(), 255), (circle(.55), 0)]
    if shape == "bars":
        return [(rect(-1, y - .15, 1, y + .15), 255) for y in (-.6, 0, .6)]
    raise ValueError(f"unknown shape {shape!r}")


def _shape_mask(shape: str, size: tuple[int, int], rng: np.random.Generator):
    from PIL import Image, ImageDraw

    w, h = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    radius = rng.uniform(0.18, 0.38) * min(w, h)
    centre = np.array([rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h])
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    for polygon, value in _unit_shape(shape):
        points = polygon @ rotation.T * radius + centre
        draw.polygon([tuple(p) for p in points], fill=value)
    return mask


def _jitter(colour, rng: np.random.Generator, amount: float = 18) -> np.ndarray:
    return np.clip(np.array(colour, dtype=np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _texture(texture: str, fg1: np.ndarray, fg2: np.ndarray, size: tuple[int, int], rng: np.random.Generator):
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    period = rng.uniform(8, 24)
    if texture == "solid":
        weight = np.zeros_like(u)
    elif texture == "stripes":
        weight = (u // period) % 2
    elif texture == "dots":
        weight = ((u % period - period / 2) ** 2 + (v % period - period / 2) ** 2 < (period / 3) ** 2)
    elif texture == "checker":
        weight = (u // period + v // period) % 2
    else:  # gradient across the image
        weight = (u - u.min()) / (u.max() - u.min() + 1e-6)
    weight = weight.astype(np.float32)[..., None]
    return fg1 * (1 - weight) + fg2 * weight


def _background(colour: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (x * np.cos(angle) + y * np.sin(angle)) / max(w, h)  # a slow lighting gradient
    noise = rng.normal(0, 10, (h, w, 3)).astype(np.float32)
    return colour + 40 * ramp[..., None] + noise


def render_image(c: int, rng: np.random.Generator, min_side: int, max_side: int):
    """One PIL image of class c: its shape, palette and texture, at a random place, size and angle."""
    from PIL import Image, ImageDraw

    shape, palette, texture = class_design(c)
    bg, fg1, fg2 = (_jitter(colour, rng) for colour in PALETTES[palette])
    size = (int(rng.integers(min_side, max_side + 1)), int(rng.integers(min_side, max_side + 1)))
    fill = _texture(texture, fg1, fg2, size, rng)
    back = _background(bg, size, rng)
    mask = np.asarray(_shape_mask(shape, size, rng), dtype=np.float32)[..., None] / 255
    pixels = np.clip(back * (1 - mask) + fill * mask, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 4))):  # distractor blobs of random colour
        r = rng.uniform(0.03, 0.1) * min(size)
        cx, cy = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image
