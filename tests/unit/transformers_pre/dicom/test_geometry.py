"""Geometry: the forward/inverse box transform (a property), and that it describes the pixels actually rendered."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transformers_pre.dicom.geometry import (
    ViewTransform,
    breast_region,
    coarsest_reduction,
    on_grid,
    plan_view,
    preview_step,
    render,
)
from transformers_pre.dicom.jpeg2000 import Codestream


@st.composite
def transforms_and_boxes(draw: st.DrawFn) -> tuple[ViewTransform, np.ndarray]:
    rows = draw(st.integers(32, 5000))
    columns = draw(st.integers(32, 4000))
    x0 = draw(st.integers(0, columns - 16))
    y0 = draw(st.integers(0, rows - 16))
    x1 = draw(st.integers(x0 + 16, columns))
    y1 = draw(st.integers(y0 + 16, rows))
    height, width = draw(st.integers(32, 512)), draw(st.integers(32, 512))
    scale = min(width / (x1 - x0), height / (y1 - y0))
    resized = (min(height, max(1, round((y1 - y0) * scale))), min(width, max(1, round((x1 - x0) * scale))))
    transform = ViewTransform((rows, columns), (x0, y0, x1, y1), resized, draw(st.booleans()))
    n = draw(st.integers(1, 8))
    corners = draw(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
                            min_size=n, max_size=n))
    boxes = []
    for a, b, c, d in corners:
        bx0, bx1 = sorted((x0 + a * (x1 - x0), x0 + c * (x1 - x0)))
        by0, by1 = sorted((y0 + b * (y1 - y0), y0 + d * (y1 - y0)))
        boxes.append((bx0, by0, bx1, by1))
    return transform, np.array(boxes)


@st.composite
def reduced_transforms_and_boxes(draw: st.DrawFn) -> tuple[ViewTransform, np.ndarray]:
    """A transform planned on a JPEG 2000 image decoded with r levels left out (odd sizes, SIZ image offsets),
    placed on the stored grid, and boxes inside the stored footprint of its crop."""
    rows, columns = draw(st.integers(64, 5000)), draw(st.integers(64, 4000))
    reduction = draw(st.integers(0, 5))
    x_offset, y_offset = draw(st.integers(0, 70)), draw(st.integers(0, 70))
    codestream = Codestream(columns=columns, rows=rows, x_offset=x_offset, y_offset=y_offset, components=1,
                            precision=12, signed=False, subsampled=False, levels=5, high_throughput=False)
    grid = codestream.grid(reduction)
    decoded_rows, decoded_columns = grid.shape
    # The ceiling rule: the stored size over 2^r, rounded up or down by the offset, never more than one off.
    assert abs(decoded_columns - columns / grid.step) <= 1 and abs(decoded_rows - rows / grid.step) <= 1
    x0 = draw(st.integers(0, max(0, decoded_columns - 2)))
    y0 = draw(st.integers(0, max(0, decoded_rows - 2)))
    x1, y1 = draw(st.integers(x0 + 1, decoded_columns)), draw(st.integers(y0 + 1, decoded_rows))
    height, width = draw(st.integers(32, 512)), draw(st.integers(32, 512))
    scale = min(width / (x1 - x0), height / (y1 - y0))
    resized = (min(height, max(1, round((y1 - y0) * scale))), min(width, max(1, round((x1 - x0) * scale))))
    planned = ViewTransform((decoded_rows, decoded_columns), (x0, y0, x1, y1), resized, draw(st.booleans()))
    transform = on_grid(planned, (rows, columns), grid.step, grid.offset)
    # The crop's stored footprint, limited to the stored image (the reduced grid can reach past its edges).
    sx0, sy0, sx1, sy1 = transform.stored_crop
    sx0, sy0, sx1, sy1 = max(sx0, 0.0), max(sy0, 0.0), min(sx1, columns), min(sy1, rows)
    n = draw(st.integers(1, 8))
    corners = draw(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
                            min_size=n, max_size=n))
    boxes = []
    for a, b, c, d in corners:
        bx0, bx1 = sorted((sx0 + a * (sx1 - sx0), sx0 + c * (sx1 - sx0)))
        by0, by1 = sorted((sy0 + b * (sy1 - sy0), sy0 + d * (sy1 - sy0)))
        boxes.append((bx0, by0, bx1, by1))
    return transform, np.array(boxes)


@settings(max_examples=300, deadline=None)
@given(reduced_transforms_and_boxes())
def test_reduced_grid_round_trip_returns_every_box_within_one_stored_pixel(
    case: tuple[ViewTransform, np.ndarray],
) -> None:
    transform, boxes = case
    model = transform.to_model(boxes)
    new_h, new_w = transform.resized
    assert np.all(model[:, 0] <= model[:, 2] + 1e-9) and np.all(model[:, 1] <= model[:, 3] + 1e-9)
    assert model.min() >= -1e-6 and np.all(model[:, [0, 2]] <= new_w + 1e-6)
    assert np.all(model[:, [1, 3]] <= new_h + 1e-6)
    back = transform.to_stored(model)
    assert np.abs(back - boxes).max() <= 1.0
    # Model pixels per stored pixel: the decoded crop's fit divided by 2^r.
    x0, _, x1, _ = transform.crop
    assert transform.scale[0] == pytest.approx(new_w / ((x1 - x0) * transform.grid_step))


def test_reduced_grid_places_decoded_sample_centres_on_stored_multiples_of_the_step() -> None:
    codestream = Codestream(columns=3327, rows=4095, x_offset=5, y_offset=0, components=1, precision=12,
                            signed=False, subsampled=False, levels=5, high_throughput=False)
    grid = codestream.grid(3)
    # Reference positions 8, 16, ... inside [5, 3332): the first sample is at reference 8 = stored 3.
    assert grid.shape == (512, 416) and grid.origin == (3, 0)
    transform = on_grid(ViewTransform((512, 416), (0, 0, 416, 512), (256, 208), False), (4095, 3327), grid.step,
                        grid.offset)
    # Decoded pixel 1's centre (x = 1.5) is stored pixel 3 + 8's centre (x = 11.5).
    centre = transform.to_stored([[1.5 * 0.5, 0.75, 1.5 * 0.5, 0.75]], clip=False)[0]
    assert centre[0] == pytest.approx(11.5) and centre[1] == pytest.approx(8 * 1.5 - 3.5)


def test_coarsest_reduction_keeps_the_crop_at_least_the_model_size() -> None:
    assert coarsest_reduction(3328, 4096, (256, 208)) == 4
    assert coarsest_reduction(2712, 3792, (256, 208)) == 3
    assert coarsest_reduction(200, 250, (256, 208)) == 0
    for columns, rows in ((2712, 3792), (1000, 3000), (3328, 900), (517, 4001)):
        reduction = coarsest_reduction(columns, rows, (256, 208))
        fit = min(208 / columns, 256 / rows)
        assert columns / 2**reduction * fit <= columns / 2**reduction  # never enlarges
        assert round(columns * fit) <= columns / 2**reduction + 1e-9 and round(rows * fit) <= rows / 2**reduction
        assert not (round(columns * fit) <= columns / 2 ** (reduction + 1)
                    and round(rows * fit) <= rows / 2 ** (reduction + 1))


@settings(max_examples=300, deadline=None)
@given(transforms_and_boxes())
def test_forward_then_inverse_returns_every_box_within_one_pixel(case: tuple[ViewTransform, np.ndarray]) -> None:
    transform, boxes = case
    model = transform.to_model(boxes)
    new_h, new_w = transform.resized
    # Boxes inside the crop land inside the image part of the model input, ordered.
    assert np.all(model[:, 0] <= model[:, 2]) and np.all(model[:, 1] <= model[:, 3])
    assert (model.min() >= -1e-6 and np.all(model[:, [0, 2]] <= new_w + 1e-6)
            and np.all(model[:, [1, 3]] <= new_h + 1e-6))
    back = transform.to_stored(model)
    assert np.abs(back - boxes).max() <= 1.0


def test_mirroring_swaps_sides() -> None:
    transform = ViewTransform((100, 80), (0, 0, 80, 100), (100, 80), mirrored=True)
    np.testing.assert_allclose(transform.to_model([[10, 5, 20, 15]]), [[60, 5, 70, 15]])


def test_boxes_in_the_padding_are_clipped_to_the_image() -> None:
    transform = ViewTransform((400, 200), (0, 0, 200, 400), (256, 128), mirrored=False)
    back = transform.to_stored([[100, 200, 180, 250]])  # x beyond new_w = 128, y within 256
    np.testing.assert_allclose(back, [[156.25, 312.5, 200.0, 390.625]])


def _stored_breast(rows: int, columns: int, right: bool, lesion: tuple[int, int, int, int]) -> np.ndarray:
    """A uint8 'windowed' image: a half-ellipse breast against the chest wall, a bright square lesion."""
    image = np.zeros((rows, columns), np.uint8)
    yy, xx = np.mgrid[0:rows, 0:columns]
    wall = columns - 1 - xx if right else xx
    inside = (wall / (0.8 * columns)) ** 2 + ((yy - rows / 2) / (0.4 * rows)) ** 2 < 1
    image[inside] = 110
    x0, y0, x1, y1 = lesion
    image[y0:y1, x0:x1] = 250
    image[5:25, 5 if right else columns - 40 : 40 if right else columns - 5] = 255  # a burnt-in marker
    return image


@pytest.mark.parametrize("right", [False, True])
def test_transform_describes_the_rendered_pixels(right: bool) -> None:
    rows, columns = 1200, 900
    lesion = (500, 400, 560, 470) if not right else (340, 400, 400, 470)
    stored = _stored_breast(rows, columns, right, lesion)
    step = preview_step(stored.shape)
    transform = plan_view(np.ascontiguousarray(stored[::step, ::step]), step, stored.shape, (256, 208))
    assert transform.mirrored is right
    # The crop is the breast (the marker is ignored): it spans the rows of the ellipse, not the top corner.
    x0, y0, x1, y1 = transform.crop
    assert 100 <= y0 <= 130 and 1070 <= y1 <= 1100
    pixels = render(stored[y0:y1, x0:x1], transform, (256, 208))
    assert pixels.shape == (256, 208) and pixels.dtype == np.float32
    # Find the lesion in the model input and compare with the forward-mapped box.
    bright = pixels > 0.9
    found_rows, found_cols = np.nonzero(bright)
    found = np.array([found_cols.min(), found_rows.min(), found_cols.max() + 1, found_rows.max() + 1], float)
    expected = transform.to_model([lesion])[0]
    assert np.abs(found - expected).max() <= 1.5
    # Breast on the left after normalisation: the left column holds tissue, the padding is zero.
    assert pixels[128, 2] > 0.3
    assert np.all(pixels[:, transform.resized[1]:] == 0) and np.all(pixels[transform.resized[0]:, :] == 0)


def test_blank_image_keeps_the_whole_frame_and_follows_the_header_hint() -> None:
    blank = np.full((300, 240), 37, np.uint8)
    assert breast_region(blank) is None
    transform = plan_view(blank, 1, blank.shape, (128, 104), header_hint=True)
    assert transform.crop == (0, 0, 240, 300) and transform.mirrored


@pytest.mark.parametrize("right", [False, True])
def test_full_size_view_uses_the_exact_2x_prescale_and_stays_faithful(right: bool) -> None:
    lesion = (1000, 1800, 1100, 1900) if not right else (2228, 1800, 2328, 1900)
    stored = _stored_breast(4095, 3327, right, lesion)  # odd sizes: the crop must be aligned inside the image
    step = preview_step(stored.shape)
    assert step == 8
    transform = plan_view(np.ascontiguousarray(stored[::step, ::step]), step, stored.shape, (256, 208))
    x0, y0, x1, y1 = transform.crop
    assert transform.prescale == 2 and (x1 - x0) % 2 == 0 and (y1 - y0) % 2 == 0
    assert 0 <= x0 < x1 <= 3327 and 0 <= y0 < y1 <= 4095
    new_h, new_w = transform.resized
    assert new_h <= 256 and new_w <= 208 and (new_h == 256 or new_w == 208)
    sx, sy = transform.scale
    assert abs(sx - sy) / sx < 0.01
    pixels = render(stored[y0:y1, x0:x1], transform, (256, 208))
    found_rows, found_cols = np.nonzero(pixels > 0.9)
    found = np.array([found_cols.min(), found_rows.min(), found_cols.max() + 1, found_rows.max() + 1], float)
    assert np.abs(found - transform.to_model([lesion])[0]).max() <= 1.5
    # Against one INTER_AREA pass over the (mirrored) crop: the same picture up to edge rounding.
    single = cv2.resize(stored[y0:y1, x0:x1], (new_w, new_h), interpolation=cv2.INTER_AREA) / 255.0
    if right:
        single = single[:, ::-1]
    difference = np.abs(pixels[:new_h, :new_w] - single)
    assert difference.mean() < 1.0 / 255.0 and difference.max() < 0.1
