"""A study's views: laterality/view fallbacks, orientation hints, concurrent preparation."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import psutil
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sequence import Sequence

from duet.synthetic_dicom import synth_image, synth_study
from transformers_pre.dicom.decode import decode_pixels
from transformers_pre.dicom.geometry import plan_view, preview_step, render
from transformers_pre.dicom.pixels import chest_wall_hint, prepare_pixels
from transformers_pre.dicom.pools import DecodePools
from transformers_pre.dicom.preparation import prepare_image, prepare_study
from transformers_pre.dicom.study import laterality_of, read_study, view_of
from transformers_pre.dicom.window import apply_table, build_table, stored_range, voi_kind
from transformers_pre.errors import BadRequest, Unprocessable
from transformers_pre.settings import DicomSettings


def _ds(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def _view_code(code: str) -> Sequence:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "SCT", "view"
    return Sequence([item])


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_laterality_prefers_image_laterality_then_series_laterality() -> None:
    assert laterality_of(_ds(ImageLaterality="R", Laterality="L")) == "R"
    assert laterality_of(_ds(Laterality="L")) == "L"
    assert laterality_of(_ds(ImageLaterality="", Laterality="r ")) == "R"
    assert laterality_of(_ds()) == "U"


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_view_prefers_view_position_then_view_code() -> None:
    assert view_of(_ds(ViewPosition="mlo", ViewCodeSequence=_view_code("399162004"))) == "MLO"
    assert view_of(_ds(ViewCodeSequence=_view_code("399162004"))) == "CC"
    assert view_of(_ds(ViewPosition="", ViewCodeSequence=_view_code("399368009"))) == "MLO"
    assert view_of(_ds(ViewCodeSequence=_view_code("12345"))) == "U"
    assert view_of(_ds()) == "U"


def test_chest_wall_hint_from_patient_orientation_then_laterality() -> None:
    assert chest_wall_hint(_ds(PatientOrientation=["P", "L"]), "L") is True
    assert chest_wall_hint(_ds(PatientOrientation=["A", "FR"]), "R") is False
    assert chest_wall_hint(_ds(), "R") is True
    assert chest_wall_hint(_ds(), "U") is None


def test_unknown_views_are_never_duplicates() -> None:
    study = synth_study(51, images=2, rows=64, columns=52)
    for image in study:
        del image.dataset.ViewPosition, image.dataset.ViewCodeSequence
    images = read_study([image.to_bytes() for image in study], DicomSettings())
    assert [(image.laterality, image.view) for image in images] == [("L", "U"), ("R", "U")]


def test_duplicate_found_through_the_view_code_fallback() -> None:
    study = synth_study(52, images=3, rows=64, columns=52)
    study[2].dataset.ImageLaterality = "L"
    study[2].dataset.ViewPosition = ""
    study[2].dataset.ViewCodeSequence = _view_code("399162004")
    with pytest.raises(BadRequest, match="images 0 and 2 are both L CC"):
        read_study([image.to_bytes() for image in study], DicomSettings())


def test_processes_and_threads_prepare_the_same_pixels_in_request_order() -> None:
    # JPEG-LS: its codec holds the GIL, so it is decoded in processes when they are on.
    study = synth_study(53, images=4, rows=256, columns=208, syntax="jpegls", degraded=False)
    blobs = [image.to_bytes() for image in study]
    images = read_study(blobs, DicomSettings())
    serial = [prepare_image(blobs[image.index], image, (128, 104), "mammography") for image in images]
    results = {}
    for in_processes in (True, False):
        pools = DecodePools(DicomSettings(decode_workers=2, decode_in_processes=in_processes))
        assert pools.uses_process(images[0].header) is in_processes
        try:
            results[in_processes] = asyncio.run(prepare_study(blobs, images, (128, 104), pools, "mammography"))
        finally:
            pools.shutdown()
    for concurrent in results.values():
        assert [item.image.index for item in concurrent] == [0, 1, 2, 3]
        for a, b in zip(serial, concurrent):
            np.testing.assert_array_equal(a.pixels, b.pixels)
            assert a.transform == b.transform
        # Right breasts (stored chest wall right) are mirrored, left ones are not.
        assert [item.transform.mirrored for item in concurrent] == [False, True, False, True]


def test_uncompressed_views_stay_on_threads() -> None:
    study = synth_study(55, images=1, rows=64, columns=52)
    header = read_study([study[0].to_bytes()], DicomSettings())[0].header
    assert not DecodePools(DicomSettings()).uses_process(header)


def test_a_decoding_error_in_a_worker_process_names_the_image() -> None:
    study = synth_study(54, images=2, rows=128, columns=104, syntax="rle")
    frame = next(generate_frames(study[1].dataset.PixelData, number_of_frames=1))
    study[1].dataset.PixelData = encapsulate([frame[:100]])  # the segments end early
    blobs = [image.to_bytes() for image in study]
    images = read_study(blobs, DicomSettings())
    pools = DecodePools(DicomSettings(decode_workers=2))
    try:
        with pytest.raises(BadRequest, match="image 1: pixel data cannot be decoded as RLE Lossless"):
            asyncio.run(prepare_study(blobs, images, (64, 52), pools, "mammography"))
    finally:
        pools.shutdown()


def _kill_workers(pools: DecodePools) -> None:
    for process in list(pools.processes()._processes.values()):
        os.kill(process.pid, signal.SIGKILL)


def _kill_workers_once_busy(pools: DecodePools, deadline_s: float = 60.0) -> None:
    """Kill the worker processes as soon as one of them is working (its CPU time grows): mid-view, as on a codec
    crash, whatever the machine's speed."""
    workers = [psutil.Process(process.pid) for process in pools.processes()._processes.values()]
    idle = [sum(worker.cpu_times()[:2]) for worker in workers]
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if any(sum(worker.cpu_times()[:2]) - before > 0.05 for worker, before in zip(workers, idle)):
            _kill_workers(pools)
            return
        time.sleep(0.005)
    raise AssertionError(f"no decoder process started working within {deadline_s} s")


def _wait_until_broken(pools: DecodePools, deadline_s: float = 60.0) -> None:
    """Return once the process pool knows its workers died (a task sent now fails with BrokenProcessPool)."""
    try:
        failure = pools.processes().submit(int).exception(timeout=deadline_s)
    except BrokenProcessPool:
        return
    assert isinstance(failure, BrokenProcessPool), "the pool still runs tasks after its workers were killed"


def test_a_decoder_process_dying_mid_view_is_a_422_and_the_pool_recovers() -> None:
    study = synth_study(56, images=1, rows=2048, columns=1664, syntax="j2k", degraded=False)
    blobs = [study[0].to_bytes()]
    images = read_study(blobs, DicomSettings())
    # Full-resolution JPEG 2000 (pylibjpeg-openjpeg) is what goes to the processes.
    pools = DecodePools(DicomSettings(decode_workers=1, resolution_aware=False))
    try:
        pools.warm_up()
        killer = threading.Thread(target=_kill_workers_once_busy, args=(pools,))
        killer.start()
        with pytest.raises(Unprocessable, match="image 0: .*decoder process crashed"):
            asyncio.run(prepare_study(blobs, images, (64, 52), pools, "mammography"))
        killer.join()
        (prepared,) = asyncio.run(prepare_study(blobs, images, (64, 52), pools, "mammography"))
        assert prepared.pixels.shape == (64, 52)
        # Workers dying between requests do not fail the next request: a fresh pool takes it.
        _kill_workers(pools)
        _wait_until_broken(pools)
        (prepared,) = asyncio.run(prepare_study(blobs, images, (64, 52), pools, "mammography"))
        assert prepared.pixels.shape == (64, 52)
    finally:
        pools.shutdown()


@pytest.mark.parametrize(("voi", "bits", "photometric"), [("window", 12, "MONOCHROME2"), ("none", 14, "MONOCHROME1"),
                                                         ("voi_lut", 16, "MONOCHROME2")])
def test_native_pixels_read_in_place_give_the_pydicom_path_s_picture(voi: str, bits: int, photometric: str) -> None:
    image = synth_image(61, rows=2048, columns=1664, bits=bits, voi=voi, photometric=photometric, n_lesions=2,
                        degraded=False)
    blob = image.to_bytes()
    (study,) = read_study([blob], DicomSettings())
    in_place = prepare_pixels(blob, study.header, study.laterality, (256, 208), resolution_aware=False)
    # The reference: pydicom decodes (a copy), the same crop-before-window code renders it.
    decoded = decode_pixels(blob, study.header.transfer_syntax, 0)
    kind = voi_kind(study.header.dataset)
    window = build_table(study.header.dataset, stored_range=stored_range(decoded) if kind == "fallback" else None)
    step = preview_step(decoded.shape)
    transform = plan_view(apply_table(decoded[::step, ::step], window), step, decoded.shape, (256, 208),
                          chest_wall_hint(study.header.dataset, study.laterality))
    x0, y0, x1, y1 = transform.crop
    reference = render(apply_table(decoded[y0:y1, x0:x1], window), transform, (256, 208))
    assert in_place.transform == transform
    np.testing.assert_array_equal(in_place.pixels, reference)
    # The default path averages 2^r blocks of stored values first: the same picture up to edge rounding.
    reduced = prepare_pixels(blob, study.header, study.laterality, (256, 208))
    assert reduced.transform.grid_step == 4 and reduced.transform.resized == transform.resized
    difference = np.abs(reduced.pixels - reference) * 255
    assert np.percentile(difference, 99) <= 4 and difference.mean() < 1.0
    np.testing.assert_allclose(reduced.transform.to_model(image.boxes), transform.to_model(image.boxes), atol=1.0)


def test_bits_above_bits_stored_are_ignored_as_pydicom_ignores_them() -> None:
    image = synth_image(62, rows=1024, columns=832, bits=12, n_lesions=1, degraded=False)
    clean = image.to_bytes()
    stored = image.dataset.pixel_array.copy()
    image.dataset.PixelData = (stored | 0xA000).astype("<u2").tobytes()  # garbage in the 4 unused high bits
    dirty = image.to_bytes()
    pictures = []
    for blob in (clean, dirty):
        (study,) = read_study([blob], DicomSettings())
        pictures += [prepare_pixels(blob, study.header, study.laterality, (128, 104), resolution_aware=aware).pixels
                     for aware in (True, False)]
    # Clean file: block means on the default path. With high bits set the block means would be wrong, so that
    # file's default path windows the full-resolution crop, exactly as the full-resolution path does.
    clean_default, clean_full, dirty_default, dirty_full = pictures
    assert not np.array_equal(clean_default, clean_full)
    np.testing.assert_array_equal(dirty_default, clean_full)
    np.testing.assert_array_equal(dirty_full, clean_full)


def test_an_unexpected_error_while_preparing_an_image_is_a_422_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stands in for a codec or numeric library raising its own exception type on one file's pixels.
    import transformers_pre.dicom.pixels as study_module

    blobs = [image.to_bytes() for image in synth_study(63, images=2, rows=128, columns=104)]
    images = read_study(blobs, DicomSettings())
    original = study_module.render

    calls = []

    def failing_render(windowed, transform, model_hw):
        calls.append(transform)
        if len(calls) == 2:  # the second image (one worker thread: images in request order)
            raise ValueError("codec said no")
        return original(windowed, transform, model_hw)

    monkeypatch.setattr(study_module, "render", failing_render)
    pools = DecodePools(DicomSettings(decode_workers=1))
    try:
        with pytest.raises(Unprocessable, match=r"image 1: the pixel data could not be processed \(ValueError\)"):
            asyncio.run(prepare_study(blobs, images, (64, 52), pools, "mammography"))
    finally:
        pools.shutdown()


@pytest.mark.parametrize(("syntax", "name"), [("explicit", "Explicit VR Little Endian"),
                                              ("j2k", "JPEG 2000 Image Compression (Lossless Only)"),
                                              ("jpegls", "JPEG-LS Lossless Image Compression")])
def test_every_prepared_image_is_counted_by_its_transfer_syntax(syntax: str, name: str) -> None:
    """duet_decoded_images_total counts in the serving process, whatever path decoded the pixels (in place,
    reduced JPEG 2000, a codec in a worker process)."""
    from transformers_pre.metrics import DECODED_IMAGES

    study = synth_study(57, images=2, rows=256, columns=208, syntax=syntax, degraded=False)
    blobs = [image.to_bytes() for image in study]
    images = read_study(blobs, DicomSettings())
    before = DECODED_IMAGES.labels(name)._value.get()
    pools = DecodePools(DicomSettings(decode_workers=2))
    try:
        asyncio.run(prepare_study(blobs, images, (128, 104), pools, "mammography"))
    finally:
        pools.shutdown()
    assert DECODED_IMAGES.labels(name)._value.get() - before == 2


@pytest.mark.parametrize("syntax", ["explicit", "rle", "jpegls", "j2k"])
def test_a_file_read_in_place_from_the_request_prepares_exactly_like_its_bytes(syntax: str) -> None:
    """Files arrive as read-only views of the request body (`codecs.split_bytes_tensor`); every path reads them
    in place and gives the same header and model input as from a `bytes` copy."""
    blob = synth_image(31, rows=512, columns=416, bits=12, syntax=syntax, n_lesions=1, degraded=False).to_bytes()
    view = memoryview(bytearray(b"\0" * 7 + blob))[7:].toreadonly()  # inside a larger buffer, as in a request
    from_bytes, from_view = read_study([blob], DicomSettings())[0], read_study([view], DicomSettings())[0]
    assert from_view.header.rows == from_bytes.header.rows == 512
    assert from_view.header.transfer_syntax == from_bytes.header.transfer_syntax
    expected = prepare_pixels(blob, from_bytes.header, from_bytes.laterality, (128, 104))
    actual = prepare_pixels(view, from_view.header, from_view.laterality, (128, 104))
    np.testing.assert_array_equal(actual.pixels, expected.pixels)
    assert actual.transform == expected.transform


@pytest.mark.parametrize("syntax", ["explicit", "j2k", "jpeg"])
def test_nothing_prepared_from_a_request_keeps_its_buffer(syntax: str) -> None:
    """Header datasets and model inputs outlive the reading of a file; none of them may hold the request's
    buffer, or `body.ReceiveBuffers` could not reuse it (pydicom keeps its reader on the dataset)."""
    import sys

    blob = synth_image(32, rows=512, columns=416, syntax=syntax, n_lesions=1, degraded=False).to_bytes()
    buffer = bytearray(blob)
    unreferenced = sys.getrefcount(buffer)
    view = memoryview(buffer).toreadonly()
    study = read_study([view], DicomSettings())[0]
    prepared = prepare_pixels(view, study.header, study.laterality, (128, 104))
    del view
    assert sys.getrefcount(buffer) == unreferenced
    assert study.header.dataset.Rows == 512 and prepared.pixels.shape == (128, 104)
