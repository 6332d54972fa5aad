"""A study's views prepared concurrently in threads and worker processes, in request order, with failures
naming their image."""

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
from pydicom.encaps import encapsulate, generate_frames

from duet.synthetic_dicom import synth_study
from transformers_pre.dicom.pools import DecodePools
from transformers_pre.dicom.preparation import prepare_image, prepare_study
from transformers_pre.dicom.study import read_study
from transformers_pre.errors import BadRequest, Unprocessable
from transformers_pre.settings import DicomSettings


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
    """Kill the worker processes as soon as one of them is working (its CPU time grows): mid-view, as on a
    codec crash, whatever the machine's speed."""
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
