"""Synthetic mammography phantoms with exact lesion boxes (numpy + scipy + OpenCV only, never torch).

A phantom is a breast-shaped region (half-ellipse against the chest wall, smooth skin line) filled with power-law
(1/f^beta) tissue texture, carrying 0-3 lesions: spiculated masses (malignant), smooth ovals (benign) and clusters
of 5-15 bright micro-dots (calcifications), drawn about 1-4x the texture's standard deviation above it.

Image quality is graded, not two-valued: half of the images are impaired (blur, noise or low contrast of a drawn
severity in [0, 1), or a blank exposure). An impaired image is non-diagnostic (`degraded`) when its severity is at
least `QUALITY_THRESHOLD` (0.5) or it is blank, so about 29% of images are degraded and the rest include mildly
blurred, noisy or flat images that are still diagnostic: the cases around the threshold that make quality
prediction a measurement.

Coordinate conventions:
- `image[row, col]`, rows = y (top to bottom), cols = x (left to right). The chest wall is the LEFT edge (x = 0),
  the nipple points right.
- Boxes are (x_min, y_min, x_max, y_max) in continuous pixel coordinates of `image`: pixel (r, c) covers
  [c, c+1) x [r, r+1), so a box spans whole image at (0, 0, W, H).
- Geometry is drawn in normalised coordinates (u = x / W, v = y / H) and every random draw that shapes the picture
  is independent of the output size, so the same seed at 4096x3328 and at 320x256 gives the same picture scaled
  and boxes that scale by (W, H). Only the fine-grain noise differs between sizes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import fft as sfft
from scipy import ndimage

CLASS_NAMES: tuple[str, ...] = ("malignant_mass", "benign_mass", "calcification")
MALIGNANT, BENIGN, CALCIFICATION = 0, 1, 2

# Lesion shapes are isotropic in a frame where the image height is 1 and the width is this fraction of it (the
# 4096x3328 detector aspect); at other aspects they stretch by a few percent, which keeps boxes exactly scalable.
_ASPECT = 3328 / 4096
# Fixed band of texture frequencies (cycles per image): drawn in full for every size, then cut to the output's
# Nyquist band, so the texture is one band-limited function sampled at whatever resolution is asked for.
_TEX_KY, _TEX_KX = 256, 208
_FINE_BETA, _FINE_WEIGHT = 1.6, 0.45
# Heavy-noise grain is drawn on at most this many rows so its strength survives the transformer's downscale.
_NOISE_ROWS = 384
IMPAIRED_SHARE = 0.5  # images with some blur, noise, low contrast or a blank exposure
QUALITY_THRESHOLD = 0.5  # an impairment of this severity or more makes the image non-diagnostic
_LESION_COUNT_P = (0.25, 0.35, 0.25, 0.15)  # P(0..3 lesions)
_CLASS_P = (0.35, 0.35, 0.30)  # malignant, benign, calcification
_DEGRADATIONS = ("blur", "noise", "low_contrast", "blank")
_DEGRADATION_P = (0.3, 0.3, 0.25, 0.15)


@dataclass(frozen=True)
class Phantom:
    """One synthetic mammogram.

    image: float32 [H, W] in [0, 1]; 0 = air, tissue brighter; chest wall at column 0.
    boxes: float32 [n, 4] (x_min, y_min, x_max, y_max) in pixels of `image`, tight around each lesion drawn.
    labels: int64 [n], index into CLASS_NAMES.
    degraded: True when the image is non-diagnostic (an impairment of severity >= QUALITY_THRESHOLD, or blank).
    breast_mask: bool [H, W], the breast region (all False for a blank image).
    impairment: "none", "blur", "noise", "low_contrast" or "blank".
    severity: the impairment's strength in [0, 1) (0 for none and for blank).
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    degraded: bool
    breast_mask: np.ndarray
    impairment: str = "none"
    severity: float = 0.0

    @property
    def malignant(self) -> bool:
        """True when any lesion is a malignant (spiculated) mass."""
        return bool(np.any(self.labels == MALIGNANT))


@dataclass(frozen=True)
class _Breast:
    cy: float  # centre row of the half-ellipse (normalised v)
    ax: float  # semi-axis along x (fraction of width)
    by: float  # semi-axis along y (fraction of height)
    wobble: np.ndarray  # [k, 3]: harmonic order, amplitude, phase of the skin-line perturbation
    base: float  # mean tissue brightness
    contrast: float  # texture std in brightness units
    beta: float  # power-law exponent of the texture spectrum
    pectoral: tuple[float, float] | None  # (u, v) intercepts of the pectoral muscle triangle (MLO view)


@dataclass(frozen=True)
class _Lesion:
    label: int
    cu: float  # centre (normalised u, v)
    cv: float
    amp: float
    box: tuple[float, float, float, float]  # normalised (u_min, v_min, u_max, v_max)
    params: dict[str, np.ndarray | float]


def make_phantom(
    seed: int | np.random.Generator,
    height: int,
    width: int,
    *,
    n_lesions: int | None = None,
    degraded: bool | None = None,
) -> Phantom:
    """Draw one phantom of `height` x `width` pixels.

    seed: an int (same int, same picture) or a Generator (advanced in place).
    n_lesions: 0-3 lesions (drawn from P = 0.25/0.35/0.25/0.15 when None).
    degraded: force a non-diagnostic (True: an impairment of severity in [0.5, 1) or blank) or diagnostic (False:
        unimpaired, or impaired with severity in [0, 0.5)) image; None draws it (module docstring).
    A blank degraded image (no breast, no lesions) is only drawn when `n_lesions` is None or 0, so a caller asking
    for lesions always gets them drawn.
    """
    if height < 16 or width < 16:
        raise ValueError(f"phantom size must be at least 16x16, got {height}x{width}")
    if n_lesions is not None and not 0 <= n_lesions <= 3:
        raise ValueError(f"n_lesions must be in 0..3, got {n_lesions}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    # Every draw is independent of the output size, and the draws happen in the same order whatever the keyword
    # arguments, so one seed with n_lesions=0 and n_lesions=2 gives the same breast, texture and noise, differing
    # only by the lesions (the first lesions of a larger count are the same lesions).
    breast = _draw_breast(rng)
    drawn_count = int(rng.choice(4, p=_LESION_COUNT_P))
    impaired = bool(rng.random() < IMPAIRED_SHARE)
    kind = str(rng.choice(_DEGRADATIONS, p=_DEGRADATION_P))
    spectrum = _draw_spectrum(rng, breast.beta)
    severity = float(rng.random())
    blank_level = float(rng.uniform(0.0, 0.6))
    pixel_seed = int(rng.integers(2**63))
    count = drawn_count if n_lesions is None else n_lesions
    if kind == "blank" and count > 0 and n_lesions is not None:
        kind = "noise"
    if degraded is True:
        # The drawn severity folded into the non-diagnostic half, so one seed forced either way keeps its kind.
        impaired, severity = True, QUALITY_THRESHOLD + (1.0 - QUALITY_THRESHOLD) * severity
    elif degraded is False:
        impaired = impaired and kind != "blank"
        severity = QUALITY_THRESHOLD * severity
    is_degraded = impaired and (kind == "blank" or severity >= QUALITY_THRESHOLD)
    if kind == "blank" and impaired:
        count = 0
    lesions = _draw_lesions(rng, breast, count)

    pixel_rng = np.random.default_rng(pixel_seed)
    if impaired and kind == "blank":
        image = np.full((height, width), blank_level, np.float32)
        image += pixel_rng.standard_normal((height, width), dtype=np.float32) * 0.01
        return Phantom(
            image=np.clip(image, 0.0, 1.0, out=image),
            boxes=np.zeros((0, 4), np.float32),
            labels=np.zeros((0,), np.int64),
            degraded=True,
            breast_mask=np.zeros((height, width), bool),
            impairment="blank",
        )

    u = (np.arange(width, dtype=np.float32) + 0.5) / width
    v = (np.arange(height, dtype=np.float32) + 0.5) / height
    radius = _breast_radius(breast, u, v)
    breast_mask = radius < 1.0
    # Compressed breast: full thickness inside, falling smoothly to zero over the outer 8% towards the skin line.
    thickness = np.clip((1.0 - radius) / 0.08, 0.0, 1.0)
    thickness = thickness * thickness * (3.0 - 2.0 * thickness)

    texture = _render_texture(spectrum, height, width)
    tissue = breast.base + breast.contrast * texture
    if breast.pectoral is not None:
        pu, pv = breast.pectoral
        # Signed distance (in normalised units) inside the triangle (0,0)-(pu,0)-(0,pv), soft over 1% of the image.
        inside = 1.0 - u[None, :] / pu - v[:, None] / pv
        tissue += 0.18 * np.clip(inside * min(pu, pv) / 0.01, 0.0, 1.0)
    lesion_layer = np.zeros((height, width), np.float32)
    for lesion in lesions:
        _draw_lesion(lesion_layer, lesion, height, width)
    image = (tissue + lesion_layer) * thickness

    if impaired:
        image = _degrade(image, kind, severity, breast.base * thickness, pixel_rng)
    image += pixel_rng.standard_normal((height, width), dtype=np.float32) * 0.008
    image = np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)

    scale = np.array([width, height, width, height], np.float32)
    boxes = np.array([lesion.box for lesion in lesions], np.float32).reshape(-1, 4) * scale
    labels = np.array([lesion.label for lesion in lesions], np.int64)
    return Phantom(image=image, boxes=boxes, labels=labels, degraded=is_degraded, breast_mask=breast_mask,
                   impairment=kind if impaired else "none", severity=severity if impaired else 0.0)


def _draw_breast(rng: np.random.Generator) -> _Breast:
    cy = float(rng.uniform(0.46, 0.54))
    by = float(rng.uniform(0.36, min(cy, 1.0 - cy) - 0.02))
    orders = np.arange(2, 6, dtype=np.float64)
    wobble = np.stack(
        [orders, rng.uniform(0.0, 0.03, 4) / orders * 2.0, rng.uniform(0, 2 * np.pi, 4)], axis=1
    )
    pectoral = (float(rng.uniform(0.22, 0.38)), float(rng.uniform(0.3, 0.5))) if rng.random() < 0.5 else None
    return _Breast(
        cy=cy,
        ax=float(rng.uniform(0.72, 0.94)),
        by=by,
        wobble=wobble,
        base=float(rng.uniform(0.32, 0.48)),
        contrast=float(rng.uniform(0.07, 0.11)),
        beta=float(rng.uniform(2.7, 3.3)),
        pectoral=pectoral,
    )


def _breast_radius(breast: _Breast, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Normalised elliptical radius [H, W]: < 1 inside the breast, 1 on the skin line."""
    du = u[None, :] / breast.ax
    dv = (v[:, None] - breast.cy) / breast.by
    theta = np.arctan2(dv, du)
    edge = np.ones_like(theta)
    for order, amp, phase in breast.wobble:
        edge += np.float32(amp) * np.cos(np.float32(order) * theta + np.float32(phase))
    return (np.sqrt(du * du + dv * dv) / edge).astype(np.float32)


def _inside_breast(breast: _Breast, u: float, v: float) -> float:
    """Normalised elliptical radius of one point (same formula as `_breast_radius`)."""
    return float(_breast_radius(breast, np.array([u], np.float32), np.array([v], np.float32))[0, 0])


def _draw_lesions(rng: np.random.Generator, breast: _Breast, count: int) -> list[_Lesion]:
    lesions: list[_Lesion] = []
    for _ in range(count):
        label = int(rng.choice(3, p=_CLASS_P))
        shape = {MALIGNANT: _spiculated, BENIGN: _oval, CALCIFICATION: _cluster}[label](rng)
        extent_u, extent_v = shape["extent"]
        # Rejection sampling with a fixed number of tries keeps the draw deterministic; the last try is kept.
        for _attempt in range(50):
            cu = float(rng.uniform(0.08, breast.ax * 0.8))
            cv = float(rng.uniform(breast.cy - breast.by * 0.8, breast.cy + breast.by * 0.8))
            corners = [(cu + su * extent_u, cv + sv * extent_v) for su in (-1, 1) for sv in (-1, 1)]
            if max(_inside_breast(breast, a, b) for a, b in corners) > 0.85:
                continue
            if (
                breast.pectoral is not None
                and (cu - extent_u) / breast.pectoral[0] + (cv - extent_v) / breast.pectoral[1] < 1.05
            ):
                continue
            if any(
                abs(cu - other.cu) < (extent_u + (other.box[2] - other.box[0]) / 2) * 1.05
                and abs(cv - other.cv) < (extent_v + (other.box[3] - other.box[1]) / 2) * 1.05
                for other in lesions
            ):
                continue
            break
        box = (
            max(cu + shape["box"][0], 0.0),
            max(cv + shape["box"][1], 0.0),
            min(cu + shape["box"][2], 1.0),
            min(cv + shape["box"][3], 1.0),
        )
        lesions.append(_Lesion(label, cu, cv, float(shape["amp"]), box, shape))
    return lesions


def _box_from_points(px: np.ndarray, py: np.ndarray, margin: float) -> tuple[np.ndarray, tuple[float, ...]]:
    """Box (relative to the lesion centre, normalised units) of points given in the isotropic frame."""
    box = (
        (px.min() - margin) / _ASPECT,
        py.min() - margin,
        (px.max() + margin) / _ASPECT,
        py.max() + margin,
    )
    extent = np.array([max(-box[0], box[2]), max(-box[1], box[3])])
    return extent, tuple(float(b) for b in box)


def _spiculated(rng: np.random.Generator) -> dict:
    """Malignant mass: irregular dense core with thin radiating spicules fading towards their tips."""
    radius = float(rng.uniform(0.022, 0.045))
    orders = np.arange(2, 7, dtype=np.float64)
    harmonics = np.stack(
        [orders, rng.uniform(0.03, 0.12, 5) / np.sqrt(orders), rng.uniform(0, 2 * np.pi, 5)], 1
    )
    n_spicules = int(rng.integers(8, 19))
    angles = rng.uniform(0, 2 * np.pi, n_spicules)
    lengths = radius * rng.uniform(1.5, 2.6, n_spicules)
    width = float(rng.uniform(0.004, 0.007))
    amp = float(rng.uniform(0.1, 0.3))
    theta = np.linspace(0, 2 * np.pi, 361)
    # The core's soft edge reaches 7.5% of the radius beyond its outline; spicules are Gaussian lines of
    # sigma = width / 2, so `width` of margin is two sigma around their tips.
    rho = radius * (1.075 + sum(a * np.cos(k * theta + p) for k, a, p in harmonics))
    px = np.concatenate([rho * np.cos(theta), lengths * np.cos(angles)])
    py = np.concatenate([rho * np.sin(theta), lengths * np.sin(angles)])
    extent, box = _box_from_points(px, py, width)
    return {
        "radius": radius, "harmonics": harmonics, "angles": angles, "lengths": lengths, "width": width,
        "amp": amp, "box": box, "extent": extent,
    }  # fmt: skip


def _oval(rng: np.random.Generator) -> dict:
    """Benign mass: smooth, well-circumscribed ellipse with a gentle dome profile."""
    a = float(rng.uniform(0.024, 0.052))
    b = a * float(rng.uniform(0.6, 1.0))
    psi = float(rng.uniform(0, np.pi))
    amp = float(rng.uniform(0.1, 0.3))
    half_x = np.sqrt((a * np.cos(psi)) ** 2 + (b * np.sin(psi)) ** 2)
    half_y = np.sqrt((a * np.sin(psi)) ** 2 + (b * np.cos(psi)) ** 2)
    extent, box = _box_from_points(np.array([-half_x, half_x]), np.array([-half_y, half_y]), 0.0)
    return {"a": a, "b": b, "psi": psi, "amp": amp, "box": box, "extent": extent}


def _cluster(rng: np.random.Generator) -> dict:
    """Calcification cluster: 5-15 bright Gaussian micro-dots scattered in a small disc."""
    n_dots = int(rng.integers(5, 16))
    spread = float(rng.uniform(0.014, 0.032))
    r = spread * np.sqrt(rng.random(n_dots))
    phi = rng.uniform(0, 2 * np.pi, n_dots)
    dx, dy = r * np.cos(phi), r * np.sin(phi)
    sigma = rng.uniform(0.0022, 0.0036, n_dots)
    dot_amp = rng.uniform(0.2, 0.5, n_dots)
    # The cluster's extent: dot centres plus 2 sigma, where a dot has faded to an eighth of its peak.
    extent, box = _box_from_points(dx, dy, float(sigma.max()) * 2.0)
    return {"dx": dx, "dy": dy, "sigma": sigma, "dot_amp": dot_amp, "amp": float(dot_amp.max()), "box": box,
            "extent": extent}  # fmt: skip


def _draw_lesion(layer: np.ndarray, lesion: _Lesion, height: int, width: int) -> None:
    """Add one lesion's intensity into `layer` [H, W] inside a window around its box (vectorised)."""
    p = lesion.params
    # Window: the box plus a margin for soft edges, in pixels.
    margin_u, margin_v = 0.01 / _ASPECT, 0.01
    c0 = max(int(np.floor((lesion.box[0] - margin_u) * width)), 0)
    c1 = min(int(np.ceil((lesion.box[2] + margin_u) * width)) + 1, width)
    r0 = max(int(np.floor((lesion.box[1] - margin_v) * height)), 0)
    r1 = min(int(np.ceil((lesion.box[3] + margin_v) * height)) + 1, height)
    if c1 <= c0 or r1 <= r0:
        return
    # Isotropic-frame offsets of pixel centres from the lesion centre.
    x = (((np.arange(c0, c1, dtype=np.float32) + 0.5) / width) - lesion.cu) * _ASPECT
    y = ((np.arange(r0, r1, dtype=np.float32) + 0.5) / height) - lesion.cv
    xx, yy = np.meshgrid(x, y)
    if lesion.label == MALIGNANT:
        patch = _spiculated_patch(xx, yy, p)
    elif lesion.label == BENIGN:
        patch = _oval_patch(xx, yy, p)
    else:
        patch = _cluster_patch(xx, yy, p)
    layer[r0:r1, c0:c1] += patch


def _spiculated_patch(xx: np.ndarray, yy: np.ndarray, p: dict) -> np.ndarray:
    r = np.sqrt(xx * xx + yy * yy)
    theta = np.arctan2(yy, xx)
    rho = np.full_like(r, p["radius"])
    for k, a, ph in p["harmonics"]:
        rho += np.float32(p["radius"] * a) * np.cos(np.float32(k) * theta + np.float32(ph))
    edge = 0.15 * p["radius"]
    core = np.clip((rho - r) / edge + 0.5, 0.0, 1.0) * (0.8 + 0.2 * np.clip(1 - r / rho, 0, 1))
    spicules = np.zeros_like(r)
    for angle, length in zip(p["angles"], p["lengths"]):
        along = xx * np.float32(np.cos(angle)) + yy * np.float32(np.sin(angle))
        across = -xx * np.float32(np.sin(angle)) + yy * np.float32(np.cos(angle))
        fade = np.clip(1.0 - along / np.float32(length), 0.0, 1.0) * (along > 0)
        np.maximum(spicules, fade * np.exp(-0.5 * (across / np.float32(p["width"] * 0.5)) ** 2), out=spicules)
    return (p["amp"] * np.maximum(core, 0.8 * spicules)).astype(np.float32)


def _oval_patch(xx: np.ndarray, yy: np.ndarray, p: dict) -> np.ndarray:
    c, s = np.float32(np.cos(p["psi"])), np.float32(np.sin(p["psi"]))
    ra = (xx * c + yy * s) / np.float32(p["a"])
    rb = (-xx * s + yy * c) / np.float32(p["b"])
    re = np.sqrt(ra * ra + rb * rb)
    # Sharp, smooth margin (well-circumscribed) over the outer 8% of the radius; gentle dome inside.
    rim = np.clip((1.0 - re) / 0.08, 0.0, 1.0)
    dome = 0.75 + 0.25 * np.sqrt(np.clip(1.0 - re * re, 0.0, 1.0))
    return (p["amp"] * rim * dome).astype(np.float32)


def _cluster_patch(xx: np.ndarray, yy: np.ndarray, p: dict) -> np.ndarray:
    dx = xx[..., None] - p["dx"].astype(np.float32)
    dy = yy[..., None] - p["dy"].astype(np.float32)
    sig2 = (p["sigma"] ** 2).astype(np.float32)
    dots = p["dot_amp"].astype(np.float32) * np.exp(-0.5 * (dx * dx + dy * dy) / sig2)
    return dots.max(axis=-1)


@functools.cache
def _log_frequency() -> tuple[np.ndarray, np.ndarray]:
    """log|f| [2*KY, KX+1] (cycles per image height, isotropic frame; DC set to 0) and the DC mask."""
    fy = np.fft.fftfreq(2 * _TEX_KY, 1.0 / (2 * _TEX_KY))[:, None]
    fx = np.arange(_TEX_KX + 1, dtype=np.float64)[None, :] / _ASPECT
    f = np.sqrt(fy * fy + fx * fx)
    dc = f == 0
    f[dc] = 1.0
    return np.log(f).astype(np.float32), dc


def _power_law(beta: float) -> np.ndarray:
    """Unit-energy amplitude spectrum f^(-beta/2), DC removed."""
    log_f, dc = _log_frequency()
    amplitude = np.exp(np.float32(-beta / 2.0) * log_f)
    amplitude[dc] = 0.0
    return amplitude / np.sqrt(np.square(amplitude, dtype=np.float64).sum(), dtype=np.float32)


def _draw_spectrum(rng: np.random.Generator, beta: float) -> np.ndarray:
    """Complex coefficients [2*KY, KX+1] (FFT row order) of a 1/f^beta field, DC removed, unit variance."""
    # Coarse 1/f^beta density plus a flatter fine-structure component (strands, ducts): it gives a sharp image
    # detail at the scale of a few model-input pixels whatever the resolution, which is what blur destroys.
    amplitude = _power_law(beta) + np.float32(_FINE_WEIGHT) * _fine_amplitude()
    noise = rng.standard_normal((2, *amplitude.shape), dtype=np.float32)
    coeffs = (noise[0] + 1j * noise[1]).astype(np.complex64) * amplitude
    # Real-field variance of a half spectrum: the fx > 0 columns count twice (their mirror images).
    power = coeffs.real**2 + coeffs.imag**2
    variance = float(power[:, 0].sum(dtype=np.float64) + 2.0 * power[:, 1:].sum(dtype=np.float64))
    return coeffs / np.float32(np.sqrt(variance))


@functools.cache
def _fine_amplitude() -> np.ndarray:
    return _power_law(_FINE_BETA)


def _render_texture(spectrum: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sample the band-limited texture at `height` x `width` (zero mean, about unit std)."""
    grid_h = min(height, 2 * _TEX_KY) // 2 * 2
    grid_w = min(width, 2 * _TEX_KX) // 2 * 2
    half = grid_h // 2
    band = np.concatenate([spectrum[:half], spectrum[-half:]], axis=0)[:, : grid_w // 2 + 1]
    field = sfft.irfft2(band, s=(grid_h, grid_w), norm="forward", workers=-1).astype(np.float32)
    if (grid_h, grid_w) != (height, width):
        field = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    return field


def _degrade(
    image: np.ndarray,
    kind: str,
    severity: float,
    mean_level: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Impair an image by `severity` in [0, 1) (non-diagnostic from `QUALITY_THRESHOLD` on): a continuous scale,
    so the images just below and just above the threshold differ by little. Strengths are relative to the image
    size, so they survive resizing."""
    height, width = image.shape
    if kind == "blur":
        # Gaussian sigma up to 1.2% of the height (3 model-input pixels); 0.6% at the threshold.
        sigma = max(0.012 * severity * height, 1e-3)
        spectrum = sfft.rfft2(image, workers=-1)
        spectrum = ndimage.fourier_gaussian(spectrum, sigma=(sigma, sigma), n=width)
        return sfft.irfft2(spectrum, s=image.shape, workers=-1).astype(np.float32)
    if kind == "noise":
        rows = min(height, _NOISE_ROWS)
        cols = max(round(rows * width / height), 1)
        grain = rng.standard_normal((rows, cols), dtype=np.float32)
        if (rows, cols) != (height, width):
            grain = cv2.resize(grain, (width, height), interpolation=cv2.INTER_NEAREST)
        # Grain std up to 0.22 (about twice the tissue texture's); 0.11 at the threshold.
        return image + grain * np.float32(0.22 * severity)
    # Low contrast: flat exposure, tissue and lesion detail squeezed around the mean tissue level (which already
    # follows the thickness fall-off, so the skin line stays smooth): to 22% at the threshold, 5% at worst.
    squeeze = np.float32(0.05**severity)
    return (mean_level + (image - mean_level) * squeeze).astype(np.float32)
