"""From a windowed mammogram to the detector's input, keeping the exact transform so boxes map back.

Coordinate conventions (every function here): continuous pixel coordinates, x along columns, y along rows, pixel
(row r, column c) covering [c, c+1) x [r, r+1); a box is (x_min, y_min, x_max, y_max). "Stored" coordinates are
those of the image as stored in the DICOM file (Columns x Rows); "model" coordinates are those of the detector's
H x W input.

The forward transform, per image (`ViewTransform`):
1. crop the stored image to the breast bounding box [x0, x1) x [y0, y1);
2. resize the crop with cv2.INTER_AREA by (sx, sy) = (new_w / crop_w, new_h / crop_h), the largest aspect-preserving
   size that fits inside W x H;
3. mirror horizontally when the chest wall is on the right, so the breast always sits on the left;
4. pad with 0 at the right and bottom up to W x H.
Large crops (at least 4x the model size) are first halved by OpenCV's exact 2x2 area path, then area-resized:
both are box averages, so the mapping is unchanged, and the result differs from one INTER_AREA pass only where a
2x2 block straddles an output pixel's footprint edge (mean 0.3/255 on 4096 x 3328 phantoms). It halves the
resize time. For that, the crop is grown (or, at the image border, trimmed by one pixel) to even sizes.
So x_model = (x - x0) * sx, or new_w - (x - x0) * sx when mirrored, and y_model = (y - y0) * sy. The inverse is
exact up to float rounding.

Reduced-resolution decoding (JPEG 2000 / HTJ2K with r levels left out, `jpeg2000.ReducedGrid`): the decoded image
is not the stored one, so the crop is in DECODED pixels and the transform carries how they sit on the stored grid:
x_stored = step * x_decoded + ox (step = 2^r, ox = origin_x - (step - 1) / 2, see `jpeg2000`; likewise for y),
and `to_model` / `to_stored` compose that affine map with the one above. A full-resolution decode is step 1,
offset 0. The decoded image has ceil(size / 2^r) pixels per side (the ceiling rule), so its last column may stand
for fewer than 2^r stored columns: `to_stored` clips to the stored image.

Breast bounding box: on a strided preview of the windowed image (at most `PREVIEW_SIDE` pixels per side), Otsu's
threshold (halved, to keep the thin tissue near the skin line) separates tissue from air; the largest connected
component is the breast (markers and labels burnt into the background are smaller components and are ignored);
its box grows by one preview pixel on each side. A preview without a clear foreground (uniform, blank) keeps the
whole image.

Orientation (where the chest wall is): the side of the breast component that holds more tissue (the chest wall
side is the broad base of the half-ellipse; the nipple side tapers). When the two sides are within
`ORIENTATION_MARGIN` of each other, the header decides: PatientOrientation's row direction ("A": columns run
towards anterior, chest wall left; "P": chest wall right), then ImageLaterality (by the usual hanging convention
right breasts are stored chest wall right). Otherwise no mirroring.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

PREVIEW_SIDE = 512
PRESCALE_FACTORS = (2,)
ORIENTATION_MARGIN = 0.15
MIN_BREAST_FRACTION = 0.01


@dataclass(frozen=True)
class ViewTransform:
    """The exact stored -> model transform of one image (see the module docstring)."""

    stored_shape: tuple[int, int]  # (rows, columns) as stored
    crop: tuple[int, int, int, int]  # (x0, y0, x1, y1), DECODED pixels (= stored when grid_step is 1), end-exclusive
    resized: tuple[int, int]  # (new_h, new_w), model pixels, the image part of the H x W input
    mirrored: bool
    prescale: int = 1  # exact integer area reduction applied first (rendering only; the mapping is the same)
    grid_step: int = 1  # stored pixels per decoded pixel (2^r after a reduced JPEG 2000 decode)
    grid_offset: tuple[float, float] = (0.0, 0.0)  # (ox, oy): x_stored = grid_step * x_decoded + ox

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): model pixels per STORED pixel along x and y."""
        x0, y0, x1, y1 = self.crop
        return (self.resized[1] / ((x1 - x0) * self.grid_step), self.resized[0] / ((y1 - y0) * self.grid_step))

    @property
    def stored_crop(self) -> tuple[float, float, float, float]:
        """The crop in stored pixels (continuous; may reach past the image by < grid_step at its edges)."""
        step, (ox, oy) = self.grid_step, self.grid_offset
        x0, y0, x1, y1 = self.crop
        return x0 * step + ox, y0 * step + oy, x1 * step + ox, y1 * step + oy

    def to_model(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes [n, 4] in stored pixels -> model pixels (x_min <= x_max kept when mirroring)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        sx, sy = self.scale
        x0, y0 = self.stored_crop[:2]
        xs = (boxes[:, [0, 2]] - x0) * sx
        ys = (boxes[:, [1, 3]] - y0) * sy
        if self.mirrored:
            xs = self.resized[1] - xs[:, ::-1]
        return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)

    def to_stored(self, boxes: np.ndarray, *, clip: bool = True) -> np.ndarray:
        """Boxes [n, 4] in model pixels -> stored pixels; with `clip`, first limited to the image part of the
        model input (padding holds no tissue), then to the stored image."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        new_h, new_w = self.resized
        xs = boxes[:, [0, 2]]
        ys = boxes[:, [1, 3]]
        if clip:
            xs = np.clip(xs, 0.0, new_w)
            ys = np.clip(ys, 0.0, new_h)
        if self.mirrored:
            xs = new_w - xs[:, ::-1]
        sx, sy = self.scale
        x0, y0 = self.stored_crop[:2]
        xs = xs / sx + x0
        ys = ys / sy + y0
        if clip:
            xs = np.clip(xs, 0.0, self.stored_shape[1])
            ys = np.clip(ys, 0.0, self.stored_shape[0])
        return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)


def preview_step(shape: tuple[int, int]) -> int:
    """Stride of the preview used to find the breast: at most PREVIEW_SIDE pixels on the longer side."""
    return max(1, -(-max(shape) // PREVIEW_SIDE))


def breast_region(preview: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Bounding box (x0, y0, x1, y1, end-exclusive, preview pixels) and mask of the breast in a uint8 preview.

    None when the preview has no clear foreground (blank or uniform image).
    """
    if int(preview.max()) - int(preview.min()) < 8:
        return None
    otsu, _ = cv2.threshold(preview, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Half of Otsu's split: the skin line fades towards air (thinner compressed tissue), and the crop must keep it.
    foreground = (preview > otsu / 2).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    area = int(stats[largest, cv2.CC_STAT_AREA])
    if area < MIN_BREAST_FRACTION * preview.size:
        return None
    x, y, w, h = (int(stats[largest, key]) for key in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP,
                                                        cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    return (x, y, x + w, y + h), labels == largest


def chest_wall_on_right(mask: np.ndarray | None, header_hint: bool | None) -> bool:
    """Whether the image must be mirrored: the breast mask's heavier side, else the header's hint, else no."""
    if mask is not None:
        columns = mask.sum(axis=0, dtype=np.int64)
        nonzero = np.flatnonzero(columns)
        if nonzero.size:
            x0, x1 = int(nonzero[0]), int(nonzero[-1]) + 1
            middle = (x0 + x1) // 2
            left, right = int(columns[x0:middle].sum()), int(columns[middle:x1].sum())
            total = left + right
            if total and abs(left - right) / total > ORIENTATION_MARGIN:
                return right > left
    return bool(header_hint) if header_hint is not None else False


def plan_view(
    preview: np.ndarray, step: int, stored_shape: tuple[int, int], model_hw: tuple[int, int],
    header_hint: bool | None = None,
) -> ViewTransform:
    """The transform of one image, from its uint8 preview (stored image strided by `step`).

    header_hint: True when the header says the chest wall is on the right, False when on the left, None unknown.
    """
    rows, columns = stored_shape
    region = breast_region(preview)
    if region is None:
        crop = (0, 0, columns, rows)
        mask = None
    else:
        (px0, py0, px1, py1), mask = region
        # One preview pixel of margin, mapped back to stored pixels and clamped to the image.
        crop = (
            max((px0 - 1) * step, 0),
            max((py0 - 1) * step, 0),
            min((px1 + 1) * step, columns),
            min((py1 + 1) * step, rows),
        )
    return fit_crop(crop, (rows, columns), model_hw, chest_wall_on_right(mask, header_hint))


def fit_crop(
    crop: tuple[int, int, int, int], shape: tuple[int, int], model_hw: tuple[int, int], mirrored: bool
) -> ViewTransform:
    """The transform that renders `crop` (pixels of an image of `shape` = (rows, columns)) into `model_hw`:
    aligned for the exact 2x prescale when the crop is large, then the largest aspect-preserving fit."""
    rows, columns = shape
    prescale = _prescale(crop, model_hw)
    if prescale > 1:
        x0, x1 = align(crop[0], crop[2], columns, prescale)
        y0, y1 = align(crop[1], crop[3], rows, prescale)
        crop = (x0, y0, x1, y1)
    crop_w, crop_h = crop[2] - crop[0], crop[3] - crop[1]
    height, width = model_hw
    scale = min(width / crop_w, height / crop_h)
    new_w = min(width, max(1, round(crop_w * scale)))
    new_h = min(height, max(1, round(crop_h * scale)))
    return ViewTransform(stored_shape=(rows, columns), crop=crop, resized=(new_h, new_w), mirrored=mirrored,
                         prescale=prescale)


def coarsest_reduction(crop_columns: float, crop_rows: float, model_hw: tuple[int, int]) -> int:
    """The largest r such that a crop of crop_columns x crop_rows stored pixels, shrunk 2^r times, still has at
    least as many pixels as its aspect-preserving fit into `model_hw` (so the area resize only ever shrinks)."""
    height, width = model_hw
    fit = min(width / crop_columns, height / crop_rows)  # model pixels per stored pixel
    reduction = 0
    while fit * (1 << (reduction + 1)) <= 1.0:
        reduction += 1
    return reduction


def on_grid(transform: ViewTransform, stored_shape: tuple[int, int], step: int,
            offset: tuple[float, float]) -> ViewTransform:
    """`transform`, planned on a decoded image, placed on the stored grid (x_stored = step * x_decoded + ox)."""
    return replace(transform, stored_shape=stored_shape, grid_step=step, grid_offset=offset)


def _prescale(crop: tuple[int, int, int, int], model_hw: tuple[int, int]) -> int:
    """An exact reduction factor that leaves the crop at least four times the model size (else 1).

    Larger factors save little more time and blur more: a block straddling an output pixel's footprint edge is
    averaged whole, so the error grows with the factor (on 4096 x 3328 phantoms, against one INTER_AREA pass:
    mean 0.3/255 for 2, 1.3/255 for 4, 4.2/255 for 8).
    """
    height, width = model_hw
    fit = min(width / (crop[2] - crop[0]), height / (crop[3] - crop[1]))  # model pixels per stored pixel
    return next((factor for factor in PRESCALE_FACTORS if factor * 4 * fit <= 1.0), 1)


def align(start: int, end: int, size: int, factor: int) -> tuple[int, int]:
    """[start, end) grown to a multiple of `factor` pixels inside [0, size), or trimmed where the image is full."""
    length = -(-(end - start) // factor) * factor
    if length > size:
        length = size // factor * factor
    start = min(start, size - length)
    return start, start + length


def render(windowed_crop: np.ndarray, transform: ViewTransform, model_hw: tuple[int, int]) -> np.ndarray:
    """The detector input [H, W] float32 in [0, 1] from the windowed crop (uint8, the transform's crop region).

    Resize (INTER_AREA) then mirror then pad: resizing before mirroring touches each stored pixel once and
    mirrors only the small image.
    """
    new_h, new_w = transform.resized
    factor = transform.prescale
    if factor > 1:
        # OpenCV's INTER_AREA has a fast path for exact integer factors (a plain block mean): it takes the
        # full-resolution pass down to a quarter of the general path's time, and the general area resize then
        # only sees a small image.
        crop_h, crop_w = windowed_crop.shape
        windowed_crop = cv2.resize(windowed_crop, (crop_w // factor, crop_h // factor),
                                   interpolation=cv2.INTER_AREA)
    resized = cv2.resize(windowed_crop, (new_w, new_h), interpolation=cv2.INTER_AREA)
    if transform.mirrored:
        resized = resized[:, ::-1]
    canvas = np.zeros(model_hw, dtype=np.float32)
    np.multiply(resized, np.float32(1.0 / 255.0), out=canvas[:new_h, :new_w], casting="unsafe")
    return canvas
