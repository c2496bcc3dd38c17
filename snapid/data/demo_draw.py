"""Drawing for the synthetic pill dataset (see demo.py): pills, backgrounds, photo effects.

Everything takes a numpy Generator, so one seed gives the same pixels every time. Pills are
drawn at 2× and reduced for anti-aliasing; rotation and perspective are one homography, and
boxes come from the transformed alpha mask, so they stay tight whatever the geometry did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SUPER = 2            # supersampling factor for pills
BOX_ALPHA = 0.25     # a pixel belongs to the pill (and its box) above this coverage


@dataclass(frozen=True)
class PillLook:
    """How a pill kind looks; sizes are relative, the photo decides the scale."""

    shape: str                                  # round | oval | oblong | capsule
    colours: tuple[tuple[int, int, int], ...]   # one; capsules: (cap, body)
    imprint: tuple[str, ...]                    # one part centred, or two parts left / right
    score: bool = False                         # a score line across the short axis
    rel_size: float = 1.0


@dataclass
class Scene:
    image: np.ndarray                            # H×W×3 uint8
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # x, y, w, h per look
    quality: int | None = None                   # JPEG quality; None means save as PNG


_ASPECT = {"round": 1.0, "oval": 0.62, "oblong": 0.44, "capsule": 0.38}


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)  # scalable since Pillow 10.1


def _fit_font(text: str, max_w: float, max_h: float, start: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The largest default-font size from ``start`` down at which ``text`` fits."""
    size = max(6, start)
    while size > 6:
        x0, y0, x1, y1 = _font(size).getbbox(text)
        if x1 - x0 <= max_w and y1 - y0 <= max_h:
            break
        size -= 1
    return _font(size)


def _text_mask(shape: tuple[int, int], parts: list[tuple[str, float, float]], font_start: int,
               max_w: float, max_h: float) -> np.ndarray:
    """Parts are (text, centre x, centre y); returns a soft [0, 1] mask."""
    img = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(img)
    for text, cx, cy in parts:
        draw.text((cx, cy), text, fill=255, anchor="mm",
                  font=_fit_font(text, max_w, max_h, font_start))
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    return np.asarray(img, dtype=np.float32) / 255.0


def _pill_flat(look: PillLook, length2: float, light_src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw the unrotated pill at 2×: RGB float array and alpha in [0, 1]."""
    w = length2
    h = length2 * _ASPECT[look.shape]
    pad = int(0.08 * w) + 4
    cw, ch = int(np.ceil(w)) + 2 * pad, int(np.ceil(h)) + 2 * pad
    x0, y0, x1, y1 = pad, pad, pad + w, pad + h
    mask_img = Image.new("L", (cw, ch), 0)
    draw = ImageDraw.Draw(mask_img)
    cap = None
    if look.shape in ("round", "oval"):
        draw.ellipse((x0, y0, x1, y1), fill=255)
    elif look.shape == "oblong":
        draw.rounded_rectangle((x0, y0, x1, y1), radius=h * 0.42, fill=255)
    else:  # capsule: a body and a slightly wider cap with a straight seam
        inset = h * 0.03
        draw.rounded_rectangle((x0, y0 + inset, x1, y1 - inset), radius=h / 2 - inset - 1, fill=255)
        cap_img = Image.new("L", (cw, ch), 0)
        ImageDraw.Draw(cap_img).rounded_rectangle((x0, y0, x0 + w * 0.55, y1), radius=h / 2 - 1,
                                                  fill=255, corners=(True, False, False, True))
        cap = np.asarray(cap_img, dtype=np.float32) / 255.0
        mask_img = Image.fromarray(np.maximum(np.asarray(mask_img), np.asarray(cap_img)))
    mask = np.asarray(mask_img, dtype=np.float32) / 255.0

    # Dome shading from a blurred mask: darker rim, brighter middle.
    height = np.asarray(mask_img.filter(ImageFilter.GaussianBlur(h * 0.16)), dtype=np.float32) / 255.0
    glossy = look.shape == "capsule"
    shade = 0.68 + 0.32 * np.clip((height - 0.5) * 2.0, 0.0, 1.0) ** (0.5 if glossy else 0.7)
    base = np.empty((ch, cw, 3), dtype=np.float32)
    base[:] = look.colours[0]
    if cap is not None:
        base[cap < 0.5] = look.colours[1]
    rgb = base * shade[..., None]

    # Specular highlight on the side facing the light (light_src is in this unrotated frame).
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    hx = (x0 + x1) / 2 + light_src[0] * w * 0.22
    hy = (y0 + y1) / 2 + light_src[1] * h * 0.25
    sx, sy = (w * 0.22, h * 0.2) if glossy else (w * 0.3, h * 0.3)
    amp = 0.45 if glossy else 0.18
    hl = amp * np.exp(-(((xx - hx) / sx) ** 2 + ((yy - hy) / sy) ** 2)) * mask
    rgb += (255.0 - rgb) * hl[..., None]

    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if look.score:  # an engraved groove with a lit lower edge
        groove = Image.new("L", (cw, ch), 0)
        lw = max(2, int(h * 0.045))
        ImageDraw.Draw(groove).line((cx, y0 + h * 0.06, cx, y1 - h * 0.06), fill=255, width=lw)
        g = np.asarray(groove.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32) / 255.0 * mask
        lit = np.roll(g, lw // 2 + 1, axis=1)
        rgb *= 1.0 - 0.42 * g[..., None]
        rgb += (255.0 - rgb) * (0.22 * np.clip(lit - g, 0, 1))[..., None]

    if look.imprint:
        if look.shape == "capsule":  # printed in ink, one part on cap and one on body
            centres = [(x0 + w * 0.28, cy), (x0 + w * 0.76, cy)]
            max_w = w * 0.38
        elif len(look.imprint) == 2:
            centres = [(cx - w * 0.22, cy), (cx + w * 0.22, cy)]
            max_w = w * 0.34
        else:
            centres = [(cx, cy)]
            max_w = w * 0.56
        # strict=False: a capsule has two centres even when its imprint has one part
        parts = [(t, px, py) for t, (px, py) in zip(look.imprint, centres, strict=False)]
        start = int(h * (0.42 if look.shape == "capsule" else 0.34))
        t = _text_mask((ch, cw), parts, start, max_w, h * 0.46) * mask
        if look.shape == "capsule":  # dark ink on light halves, light ink on dark ones
            light_half = base.mean(axis=2, keepdims=True) > 120
            ink_colour = np.where(light_half, 35.0, 235.0)
            ink = 0.85 * t[..., None]
            rgb = rgb * (1 - ink) + ink_colour * ink
        else:  # debossed: dark letters, lit lower-right rim
            lit = np.roll(t, (2, 2), axis=(0, 1))
            rgb *= 1.0 - 0.36 * t[..., None]
            rgb += (255.0 - rgb) * (0.2 * np.clip(lit - t, 0, 1))[..., None]
    return np.clip(rgb, 0, 255), mask


def _homography(src: np.ndarray, dst: np.ndarray) -> list[float]:
    """PIL PERSPECTIVE coefficients: for each output (dst) pixel, where to sample in src."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((X, Y), (x, y)) in enumerate(zip(dst, src, strict=True)):
        a[2 * i] = [X, Y, 1, 0, 0, 0, -X * x, -Y * x]
        a[2 * i + 1] = [0, 0, 0, X, Y, 1, -X * y, -Y * y]
        b[2 * i], b[2 * i + 1] = x, y
    return np.linalg.solve(a, b).tolist()


def _rot(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def render_pill(rng: np.random.Generator, look: PillLook, length: float,
                light: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One pill sprite at photo resolution, rotated and mildly tilted: (RGB float, alpha [0, 1])."""
    angle = rng.uniform(0, 2 * np.pi)
    jitter = rng.uniform(-0.05, 0.05, size=(4, 2))  # mild perspective
    rot = _rot(angle)
    rgb, alpha = _pill_flat(look, length * SUPER, rot.T @ light)
    h, w = alpha.shape
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    centre = np.array([w / 2, h / 2])
    dst = (src - centre) @ rot.T + jitter * max(w, h)
    dst -= dst.min(axis=0) - 2
    out_w, out_h = (int(np.ceil(v)) + 2 for v in dst.max(axis=0))
    out_w += out_w % SUPER
    out_h += out_h % SUPER
    inside = alpha > 0.5
    fill = tuple(int(v) for v in rgb[inside].mean(axis=0)) + (0,)
    rgba = Image.fromarray(np.dstack([rgb, alpha * 255]).round().astype(np.uint8), "RGBA")
    rgba = rgba.transform((out_w, out_h), Image.Transform.PERSPECTIVE, _homography(src, dst),
                          Image.Resampling.BICUBIC, fillcolor=fill)
    small = np.asarray(rgba.reduce(SUPER), dtype=np.float32)
    a = small[..., 3] / 255.0
    ys, xs = np.nonzero(a > 0.02)  # crop the empty margin
    sl = np.s_[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    return small[..., :3][sl], a[sl]


def mask_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """Tight (x, y, w, h) of the pixels above BOX_ALPHA."""
    ys, xs = np.nonzero(alpha > BOX_ALPHA)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


# --- backgrounds ---------------------------------------------------------------------------
_SURFACES = [(236, 234, 228), (205, 205, 200), (120, 122, 126), (38, 38, 42), (222, 206, 178),
             (70, 96, 140), (72, 120, 88), (150, 104, 70), (214, 180, 186), (180, 200, 214)]


def _colour(rng: np.random.Generator) -> np.ndarray:
    base = np.array(_SURFACES[rng.integers(len(_SURFACES))], dtype=np.float32)
    return np.clip(base + rng.uniform(-18, 18, 3), 0, 255)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [0, 1]: a small random grid, bicubic-upsampled."""
    gh, gw = max(2, cells * h // max(h, w)), max(2, cells * w // max(h, w))
    small = Image.fromarray(rng.random((gh, gw)).astype(np.float32), "F")
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)


def make_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Solid, gradient, speckled, cloth-like or wood-like surface; H×W×3 float."""
    kind = rng.choice(["solid", "gradient", "speckle", "cloth", "wood"])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    along = xx * np.cos(theta) + yy * np.sin(theta)
    c1, c2 = _colour(rng), _colour(rng)
    if kind == "solid":
        t = np.zeros((h, w), np.float32)
    elif kind == "gradient":
        t = (along - along.min()) / max(1.0, float(along.max() - along.min()))
    elif kind == "speckle":
        c2 = np.clip(c1 + rng.uniform(-50, 50, 3), 0, 255)
        t = 0.6 * _smooth_noise(rng, h, w, 10) + 0.4 * rng.random((h, w), dtype=np.float32)
    elif kind == "cloth":  # stripes plus a fine weave
        period = rng.uniform(8, 30)
        across = -xx * np.sin(theta) + yy * np.cos(theta)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * along / period)
        weave = 0.5 + 0.5 * np.sin(2 * np.pi * along / 3.1) * np.sin(2 * np.pi * across / 3.1)
        t = 0.65 * (stripes > 0.5) + 0.15 * stripes + 0.15 * weave
    else:  # wood: wavy rings along the grain
        wood = np.array([[196, 150, 100], [150, 100, 60], [112, 72, 44], [210, 176, 130]])
        c1 = wood[rng.integers(len(wood))].astype(np.float32)
        c2 = c1 * rng.uniform(0.55, 0.75)
        across = -xx * np.sin(theta) + yy * np.cos(theta)
        turb = _smooth_noise(rng, h, w, 6) * rng.uniform(8, 20)
        rings = 0.5 + 0.5 * np.sin(2 * np.pi * (across + turb) / rng.uniform(10, 26))
        t = rings ** 2 * 0.8 + 0.2 * rng.random((h, w), dtype=np.float32)
    t = np.asarray(t, dtype=np.float32)[..., None]
    return c1 * (1 - t) + c2 * t


# --- scenes -----------------------------------------------------------------------------------
def _place(rng: np.random.Generator, sizes: list[tuple[int, int]], w: int, h: int,
           margin: int = 3) -> list[tuple[int, int]] | None:
    """Non-overlapping top-left corners for sprites of the given (w, h), or None."""
    placed: list[tuple[int, int, int, int]] = []
    for sw, sh in sizes:
        if sw + 2 * margin > w or sh + 2 * margin > h:
            return None
        for _ in range(60):
            x = int(rng.integers(margin, w - sw - margin + 1))
            y = int(rng.integers(margin, h - sh - margin + 1))
            if all(x + sw + margin <= px or px + pw + margin <= x or
                   y + sh + margin <= py or py + ph + margin <= y for px, py, pw, ph in placed):
                placed.append((x, y, sw, sh))
                break
        else:
            return None
    return [(x, y) for x, y, _, _ in placed]


def render_scene(rng: np.random.Generator, looks: list[PillLook], size: tuple[int, int], *,
                 mask_only: bool = False) -> Scene:
    """A photo of the given pills. mask_only=True draws, with the same random draws and so the
    same geometry, each pill's coverage as white on black instead: tests check boxes with it."""
    w, h = size
    bg = make_background(rng, w, h)
    light = _rot(rng.uniform(0, 2 * np.pi)) @ np.array([1.0, 0.0])
    grad_amp, vignette = rng.uniform(0.05, 0.3), rng.uniform(0.0, 0.25)
    balance = rng.uniform(0.95, 1.05, 3)
    blur = rng.uniform(0.0, 0.9) if rng.random() < 0.7 else 0.0
    noise_sigma = rng.uniform(1.0, 5.0)
    shadow_strength, shadow_blur = rng.uniform(0.25, 0.55), rng.uniform(1.5, 4.0)
    quality = None if rng.random() < 0.08 else int(rng.integers(70, 96))

    # Singles fill a good part of the frame; groups are smaller so 2–4 fit side by side.
    lo, hi = (0.34, 0.58) if len(looks) == 1 else (0.22, 0.36)
    scale = rng.uniform(lo, hi) * min(w, h)
    for _ in range(20):
        sprites = [render_pill(rng, look, scale * look.rel_size, light) for look in looks]
        corners = _place(rng, [(a.shape[1], a.shape[0]) for _, a in sprites], w, h)
        if corners is not None:
            break
        scale *= 0.85  # did not fit: smaller pills
    else:
        raise RuntimeError("could not place the pills")  # unreachable at sane sizes

    img = np.empty((h, w, 3), np.float32)
    img[:] = 0.0 if mask_only else bg
    boxes = []
    shadow_off = -light * rng.uniform(2.0, 6.0) * (scale / 80)
    for (rgb, alpha), (x, y) in zip(sprites, corners, strict=True):
        sh, sw = alpha.shape
        if mask_only:
            rgb = np.full_like(rgb, 255.0)
        else:  # soft shadow: the pill's mask, blurred and shifted away from the light
            layer = np.zeros((h, w), np.uint8)
            sx, sy = x + int(round(shadow_off[0])), y + int(round(shadow_off[1]))
            layer_img = Image.fromarray(layer)
            layer_img.paste(Image.fromarray((alpha * 255).astype(np.uint8)), (sx, sy))
            soft = np.asarray(layer_img.filter(ImageFilter.GaussianBlur(shadow_blur)), np.float32) / 255
            img *= (1.0 - shadow_strength * soft)[..., None]
        region = img[y:y + sh, x:x + sw]
        region[:] = region * (1 - alpha[..., None]) + rgb * alpha[..., None]
        bx, by, bw, bh = mask_box(alpha)
        boxes.append((x + bx, y + by, bw, bh))

    noise = rng.normal(0.0, noise_sigma, (h, w, 3)).astype(np.float32)
    if not mask_only:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        along = ((xx - w / 2) * light[0] + (yy - h / 2) * light[1]) / (max(w, h) / 2)
        radius = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
        gain = (1.0 + grad_amp * along) * (1.0 - vignette * radius ** 2 / 2)
        img *= gain[..., None] * balance
        if blur > 0.2:
            pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
            img = np.asarray(pil.filter(ImageFilter.GaussianBlur(blur)), np.float32)
        img = img + noise
    return Scene(np.clip(img + 0.5, 0, 255).astype(np.uint8), boxes, quality)
