"""The views of one study: laterality and view, study-level checks, and concurrent per-image preparation.

Laterality, first found wins: ImageLaterality (0020,0062), then the series' Laterality (0020,0060), else "U"
(unknown). View: ViewPosition (0018,5101) as written (CC, MLO, ML, LM, XCCL, ...), else the first View Code
Sequence (0054,0220) item's SNOMED code (cranio-caudal 399162004 -> CC, medio-lateral oblique 399368009 -> MLO,
medio-lateral 399260004 -> ML, latero-medial 399352003 -> LM), else "U". Two images with the same known
laterality and view, or the same SOP Instance UID, are a 400; so are images of different studies (one study per
request). Images with an unknown laterality or view are never called duplicates.

Each image is decoded, windowed, cropped and resized concurrently in bounded pools (`DecodePools`: processes for
JPEG-LS and RLE, whose codecs hold the GIL, threads for the rest), so a 4-view study costs little more than its
slowest view where cores allow. Per syntax, the cheapest path its bytes allow (`prepare_pixels`):
- JPEG 2000 / HTJ2K: the codestream's main header is checked against the DICOM header, then only the resolution
  levels the model needs are decoded (Pillow, see `jpeg2000`), unless `DicomSettings.resolution_aware` is off;
- native little endian: the pixels are a numpy view of the request's bytes (no copy); a strided preview finds
  the breast, then the crop's stored values are averaged over 2^r x 2^r blocks (r as for JPEG 2000: the
  coarsest level that keeps the crop at least the model size) and only those means go through the lookup table;
- the rest (JPEG-LS, RLE, big endian, deflated): pydicom's decoder, then the same block-mean, crop-before-window
  pass. With `resolution_aware` off, every syntax windows its full-resolution crop, as before.
A failure inside a pool that is not already a `DuetError` becomes a 422 naming the image, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from ..blob import Blob
from ..errors import BadRequest, DuetError, PayloadTooLarge, Unprocessable
from ..metrics import DECODED_IMAGES, STAGE_SECONDS, STUDY_IMAGES
from ..settings import DicomSettings
from .decode import (
    JPEG2000_SYNTAXES,
    check_codestream,
    decode_pixels,
    encapsulated_frame,
    locate_pixel_data,
    native_pixels,
    syntax_name,
)
from .geometry import (
    ViewTransform,
    align,
    coarsest_reduction,
    fit_crop,
    on_grid,
    plan_view,
    preview_step,
    render,
)
from .intake import ImageHeader, read_header
from .jpeg import MAX_REDUCTION, ScaledGrid, check_jpeg, decode_scaled
from .jpeg2000 import ReducedGrid, decode_reduced
from .window import (
    WindowTable,
    apply_table,
    build_table,
    canonical_range,
    canonical_table,
    stored_range,
    voi_kind,
    within_bits_stored,
)

logger = logging.getLogger("duet.mammography")

NATIVE_IN_PLACE = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})
VIEW_CODES = {"399162004": "CC", "399368009": "MLO", "399260004": "ML", "399352003": "LM"}
UNKNOWN = "U"


@dataclass(frozen=True)
class StudyImage:
    """One validated image of the study, before pixels: its header plus laterality and view."""

    header: ImageHeader
    laterality: str  # "L", "R", "B" (both) or "U" (unknown)
    view: str  # "CC", "MLO", ... or "U"

    @property
    def index(self) -> int:
        return self.header.index


@dataclass(frozen=True)
class PreparedImage:
    """One image ready for the detector: its [H, W] input and the transform back to stored pixels."""

    image: StudyImage
    pixels: np.ndarray  # float32 [H, W] in [0, 1]
    transform: ViewTransform
    voi: str  # which VOI was applied: "voi_lut", "window" or "fallback"


def laterality_of(ds: Dataset) -> str:
    """Image laterality from the header, with the fallbacks of the module docstring."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value in ("L", "R", "B", "U"):
            return value
    return UNKNOWN


def view_of(ds: Dataset) -> str:
    """View position from the header, with the fallbacks of the module docstring."""
    value = str(ds.get("ViewPosition", "") or "").strip().upper()
    if value and value.replace("_", "").isalnum() and len(value) <= 8:
        return value
    for item in ds.get("ViewCodeSequence", None) or ():
        code = str(item.get("CodeValue", "") or "").strip()
        if code in VIEW_CODES:
            return VIEW_CODES[code]
    return UNKNOWN


def chest_wall_hint(ds: Dataset, laterality: str) -> bool | None:
    """What the header says about the chest wall being on the right (None when it says nothing).

    PatientOrientation's first value is the direction of increasing column index: "A" (towards anterior, so the
    chest wall is on the left) or "P" (chest wall on the right). Without it, the usual hanging convention: right
    breasts are stored chest wall right.
    """
    orientation = ds.get("PatientOrientation", None)
    if orientation:
        first = str(orientation[0] if not isinstance(orientation, str) else orientation).strip().upper()
        if first.startswith("A"):
            return False
        if first.startswith("P"):
            return True
    if laterality in ("L", "R"):
        return laterality == "R"
    return None


def read_study(blobs: Sequence[Blob], settings: DicomSettings) -> list[StudyImage]:
    """Header-only validation of every file, then the study-level checks; no pixel is decoded here."""
    if not blobs:
        raise BadRequest("input 'dicom' is empty: send 1 to 4 DICOM files of one study")
    if len(blobs) > settings.max_images:
        raise PayloadTooLarge(f"{len(blobs)} images in one study; the limit is {settings.max_images}")
    STUDY_IMAGES.observe(len(blobs))
    images = []
    for index, blob in enumerate(blobs):
        header = read_header(blob, index, settings)
        images.append(StudyImage(header, laterality_of(header.dataset), view_of(header.dataset)))
    check_study(images)
    return images


def check_study(images: Sequence[StudyImage]) -> None:
    """One study, no image twice, no laterality + view twice (400 naming both images)."""
    studies = {str(image.header.dataset.get("StudyInstanceUID", "") or "") for image in images}
    if len(studies) > 1:
        raise BadRequest("the images belong to different studies (StudyInstanceUID differs); send one study "
                         "per request")
    seen_uid: dict[str, int] = {}
    seen_view: dict[tuple[str, str], int] = {}
    for image in images:
        first = seen_uid.setdefault(image.header.sop_instance_uid, image.index)
        if first != image.index:
            raise BadRequest(f"images {first} and {image.index} are the same SOP instance", image_index=image.index)
        if UNKNOWN in (image.laterality, image.view):
            continue
        key = (image.laterality, image.view)
        first = seen_view.setdefault(key, image.index)
        if first != image.index:
            raise BadRequest(
                f"images {first} and {image.index} are both {image.laterality} {image.view}; a study has one "
                "image per laterality and view",
                image_index=image.index,
            )


@dataclass(frozen=True)
class ViewPixels:
    """The pixel work's result for one image, with the seconds each stage took."""

    pixels: np.ndarray  # float32 [H, W] in [0, 1]
    transform: ViewTransform
    voi: str
    seconds: dict[str, float]  # "decode", "window", "resize"


def prepare_pixels(
    blob: Blob, header: ImageHeader, laterality: str, model_hw: tuple[int, int], resolution_aware: bool = True
) -> ViewPixels:
    """Decode, window, crop, orient and resize one image (pure; runs in a worker thread or process).

    resolution_aware: for JPEG 2000 / HTJ2K, decode only the wavelet levels the model needs (see the module
    docstring); False decodes them at full resolution.
    """
    started = time.perf_counter()
    hint = chest_wall_hint(header.dataset, laterality)
    syntax = header.transfer_syntax
    if syntax in JPEG2000_SYNTAXES:
        element = locate_pixel_data(blob, syntax, header.index, forced=header.forced)
        frame = encapsulated_frame(blob, element, header.index, header.frames)
        codestream = check_codestream(frame, header.rows, header.columns, header.bits_allocated,
                                      header.bits_stored, header.signed, header.index)
        if resolution_aware:
            dtype = np.dtype(f"{'int' if header.signed else 'uint'}{header.bits_allocated}")
            reduced = _prepare_reduced(
                lambda level: decode_reduced(frame, codestream, level, dtype, header.index), codestream.grid,
                codestream.levels, header, hint, model_hw, started)
            if reduced is not None:
                return reduced
    elif syntax == JPEGBaseline8Bit and resolution_aware:
        element = locate_pixel_data(blob, syntax, header.index, forced=header.forced)
        frame = encapsulated_frame(blob, element, header.index, header.frames)
        check_jpeg(frame, header.rows, header.columns, header.bits_stored, header.index)
        scaled = _prepare_reduced(
            lambda level: decode_scaled(frame, level, header.rows, header.columns, header.index),
            lambda level: ScaledGrid(1 << level), MAX_REDUCTION, header, hint, model_hw, started)
        if scaled is not None:
            return scaled
    elif syntax in NATIVE_IN_PLACE:
        element = locate_pixel_data(blob, syntax, header.index, forced=header.forced)
        raw = native_pixels(blob, element, header.rows, header.columns, header.bits_allocated, header.signed,
                            header.index)
        # Raw bit patterns: the table folds away bits above BitsStored, but block means need them clear, and the
        # fallback window needs the true range; with such bits set, block means are skipped (the full-resolution
        # crop goes through the table) and a fallback window is left to pydicom's decoder, which masks them.
        kind = voi_kind(header.dataset)
        present = canonical_range(raw, header.bits_stored, header.signed) if kind == "fallback" else None
        if kind != "fallback" or present is not None:
            clean = present is not None or (
                resolution_aware and within_bits_stored(raw, header.bits_stored, header.signed))
            window = canonical_table(build_table(header.dataset, stored_range=present), header.bits_stored,
                                     header.signed)
            return _finish(raw, window, hint, model_hw, started, time.perf_counter(), resolution_aware and clean)
    stored = decode_pixels(blob, syntax, header.index, forced=header.forced)
    decoded = time.perf_counter()
    kind = voi_kind(header.dataset)
    window = build_table(header.dataset, stored_range=stored_range(stored) if kind == "fallback" else None)
    return _finish(stored, window, hint, model_hw, started, decoded, resolution_aware)


def _finish(stored: np.ndarray, window: WindowTable, hint: bool | None, model_hw: tuple[int, int],
            started: float, decoded: float, reduce: bool) -> ViewPixels:
    """Window a strided preview and plan the crop on it; then window only the crop and render.

    reduce: first average the crop's stored values over 2^r x 2^r blocks (OpenCV's exact integer area path), r
    the coarsest level that keeps the crop at least the model's size, as the JPEG 2000 path gets from the
    codestream's LL band; the window then sees 4^r times fewer pixels.
    """
    step = preview_step(stored.shape)
    preview = apply_table(stored[::step, ::step], window)
    transform = plan_view(preview, step, stored.shape, model_hw, hint)
    x0, y0, x1, y1 = transform.crop
    factor = 1 << coarsest_reduction(x1 - x0, y1 - y0, model_hw) if reduce else 1
    if factor == 1:
        return _render(stored, window, transform, model_hw, started, decoded)
    rows, columns = stored.shape
    x0, x1 = align(x0, x1, columns, factor)
    y0, y1 = align(y0, y1, rows, factor)
    means = cv2.resize(stored[y0:y1, x0:x1], ((x1 - x0) // factor, (y1 - y0) // factor),
                       interpolation=cv2.INTER_AREA)
    reduced = fit_crop((0, 0, means.shape[1], means.shape[0]), means.shape, model_hw, transform.mirrored)
    return _render(means, window, on_grid(reduced, stored.shape, factor, (float(x0), float(y0))), model_hw,
                   started, decoded)


def _render(decoded_image: np.ndarray, window: WindowTable, transform: ViewTransform, model_hw: tuple[int, int],
            started: float, decoded: float) -> ViewPixels:
    x0, y0, x1, y1 = transform.crop
    windowed = apply_table(decoded_image[y0:y1, x0:x1], window)
    windowed_at = time.perf_counter()
    pixels = render(windowed, transform, model_hw)
    seconds = {"decode": decoded - started, "window": windowed_at - decoded,
               "resize": time.perf_counter() - windowed_at}
    return ViewPixels(pixels=pixels, transform=transform, voi=window.kind, seconds=seconds)


def _prepare_reduced(decode: Callable[[int], np.ndarray], grid_of: Callable[[int], ReducedGrid | ScaledGrid],
                     levels: int, header: ImageHeader, hint: bool | None, model_hw: tuple[int, int],
                     started: float) -> ViewPixels | None:
    """A view decoded at reduced resolution: JPEG 2000 / HTJ2K wavelet levels left out, or JPEG's scaled DCT.
    `decode(r)` returns the stored values 2^r times smaller (BadRequest when the decoder refuses), `grid_of(r)`
    where its samples sit on the stored grid, `levels` the largest r the stream allows. None when there is
    nothing to leave out, or when the decoder refuses the reduction (JPEG 2000 tile-part headers may declare fewer
    levels than the main header): the caller then decodes at full resolution.

    The first decode is one level finer than the whole image would need (the breast crop is smaller than the
    image, usually by less than half per side); the breast is found on it. When the crop turns out to need a
    finer level (a small breast on a large detector), that level is decoded and the crop mapped onto it.
    """
    rows, columns = header.rows, header.columns
    first = max(0, min(levels, coarsest_reduction(columns, rows, model_hw) - 1))
    if first == 0:
        return None
    try:
        image = decode(first)
    except BadRequest:
        return None
    kind = voi_kind(header.dataset)
    window = build_table(header.dataset, stored_range=stored_range(image) if kind == "fallback" else None)
    step = preview_step(image.shape)
    transform = plan_view(apply_table(image[::step, ::step], window), step, image.shape, model_hw, hint)
    grid = grid_of(first)
    x0, y0, x1, y1 = transform.crop
    needed = min(levels, coarsest_reduction((x1 - x0) * grid.step, (y1 - y0) * grid.step, model_hw))
    if needed < first:
        stored_box = on_grid(transform, (rows, columns), grid.step, grid.offset).stored_crop
        grid = grid_of(needed)
        try:
            image = decode(needed)
        except BadRequest:
            return None
        (ox, oy), finer_rows, finer_columns = grid.offset, *image.shape
        crop = (max(0, int(np.floor((stored_box[0] - ox) / grid.step))),
                max(0, int(np.floor((stored_box[1] - oy) / grid.step))),
                min(finer_columns, int(np.ceil((stored_box[2] - ox) / grid.step))),
                min(finer_rows, int(np.ceil((stored_box[3] - oy) / grid.step))))
        transform = fit_crop(crop, image.shape, model_hw, transform.mirrored)
    transform = on_grid(transform, (rows, columns), grid.step, grid.offset)
    return _render(image, window, transform, model_hw, started, time.perf_counter())


def _assemble(image: StudyImage, view: ViewPixels, model_name: str) -> PreparedImage:
    # Counted here, in the serving process, whichever path decoded the pixels (in place, reduced JPEG 2000, a
    # codec) and wherever it ran (a thread or a worker process, whose counters would never be exported).
    DECODED_IMAGES.labels(syntax_name(image.header.transfer_syntax)).inc()
    for name, seconds in view.seconds.items():
        STAGE_SECONDS.labels(model_name, name).observe(seconds)
    return PreparedImage(image=image, pixels=view.pixels, transform=view.transform, voi=view.voi)


def prepare_image(blob: Blob, image: StudyImage, model_hw: tuple[int, int], model_name: str) -> PreparedImage:
    """`prepare_pixels` for one image in this process, its stage times recorded under `model_name`."""
    return _assemble(image, prepare_pixels(blob, image.header, image.laterality, model_hw), model_name)


def _prepare_in_worker(
    blob: bytes, index: int, laterality: str, model_hw: tuple[int, int], caps: DicomSettings
) -> ViewPixels:
    # In a worker process: the header is read again (milliseconds) rather than pickling a dataset across.
    return prepare_pixels(blob, read_header(blob, index, caps), laterality, model_hw, caps.resolution_aware)


def _worker_init() -> None:
    # The same rules as the serving process: no pydicom warnings quoting values, one OpenCV thread per worker.
    import cv2
    import pydicom.config

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    cv2.setNumThreads(1)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Where worker processes come from: a fork server that has imported this module (and not the server's
    __main__, which would drag KServe into every worker), else plain spawn. Never a fork of the serving process,
    whose gRPC and event-loop threads make forking unsafe."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


class DecodePools:
    """Bounded pools that prepare views: threads for uncompressed pixels, processes for compressed ones.

    pylibjpeg-openjpeg, pyjpegls and pylibjpeg-rle hold the GIL while decoding (measured: a thread decoding
    JPEG 2000, JPEG-LS or RLE leaves another Python thread 10%, 25% and 35% of its speed), so compressed views
    go to `decode_workers`
    processes (from a fork server, on first use or `warm_up`, never at import) and only the blob in and the small
    model input out cross the process boundary. Uncompressed views stay on `decode_workers` threads: numpy's gather
    and OpenCV release the GIL, and copying 27 MB to a process would cost more than the whole pipeline.
    """

    def __init__(self, settings: DicomSettings) -> None:
        self.settings = settings
        self._threads: ThreadPoolExecutor | None = None
        self._processes: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def threads(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.settings.decode_workers, thread_name_prefix="dicom")
            return self._threads

    def processes(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._processes is None:
                self._processes = ProcessPoolExecutor(
                    self.settings.decode_workers, mp_context=_worker_context(), initializer=_worker_init
                )
            return self._processes

    def uses_process(self, header: ImageHeader) -> bool:
        """Processes for the slow codecs that hold the GIL: JPEG-LS, RLE, and JPEG 2000 at full resolution
        (pylibjpeg-openjpeg, seconds per view). Reduced JPEG 2000 decoding (Pillow) holds the GIL too, but takes
        ~40 ms a view: shipping a 12 MB blob to a worker and the header re-read there cost about as much as the
        parallelism gains on two cores (4-view study measured 300-520 ms on threads, 550-610 ms in processes;
        every other view in a worker, so two decode at once, measured 383-430 ms against 387-410 ms all on
        threads, for ~60 ms more CPU), so those views stay on threads."""
        syntax = header.transfer_syntax
        if syntax in JPEG2000_SYNTAXES and self.settings.resolution_aware:
            return False
        if syntax == JPEGBaseline8Bit and self.settings.resolution_aware:
            return False  # libjpeg's scaled decode: a few ms, and Pillow releases the GIL while it runs
        return self.settings.decode_in_processes and syntax.is_compressed

    def warm_up(self) -> None:
        """Start the worker processes now (each imports numpy, OpenCV and pydicom: about a second)."""
        if self.settings.decode_in_processes:
            pool = self.processes()
            for future in [pool.submit(_worker_init) for _ in range(self.settings.decode_workers)]:
                future.result()

    def _reset_processes(self) -> None:
        with self._lock:
            broken, self._processes = self._processes, None
        if broken is not None:
            broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        with self._lock:
            pools, self._threads, self._processes = [self._threads, self._processes], None, None
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def __getstate__(self) -> dict:
        # A model may be pickled into a server worker process; pools are per process and start lazily there.
        return {"settings": self.settings}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["settings"])


async def prepare_study(
    blobs: Sequence[Blob],
    images: Sequence[StudyImage],
    model_hw: tuple[int, int],
    pools: DecodePools,
    model_name: str,
) -> list[PreparedImage]:
    """Prepare every image concurrently (the pools' sizes bound the work process-wide), in request order."""
    loop = asyncio.get_running_loop()
    tasks = []
    for image in images:
        blob = blobs[image.index]
        if pools.uses_process(image.header):
            # A view of the request cannot be pickled: a worker process gets its own copy of the file.
            arguments = (_prepare_in_worker, bytes(blob), image.index, image.laterality, model_hw, pools.settings)
            try:
                tasks.append(loop.run_in_executor(pools.processes(), *arguments))
            except BrokenProcessPool:
                # A worker died before this request (killed for memory, say): start a fresh pool for it.
                pools._reset_processes()
                tasks.append(loop.run_in_executor(pools.processes(), *arguments))
        else:
            tasks.append(loop.run_in_executor(pools.threads(), prepare_pixels, blob, image.header,
                                              image.laterality, model_hw, pools.settings.resolution_aware))
    # All tasks finish before an error propagates, so no worker keeps decoding for an abandoned request.
    results = await asyncio.gather(*tasks, return_exceptions=True)
    prepared = []
    for image, result in zip(images, results):
        if isinstance(result, BrokenProcessPool):
            pools._reset_processes()
            raise Unprocessable("the pixel data could not be decoded: the decoder process crashed",
                                image_index=image.index)
        if isinstance(result, DuetError):
            if result.image_index is None:  # raised by a stage that does not know the image (window, decode)
                raise type(result)(result.message, image_index=image.index) from None
            raise result
        if isinstance(result, MemoryError):
            raise PayloadTooLarge("the image is too large to process with the memory available",
                                  image_index=image.index) from None
        if isinstance(result, Exception):
            # A decoder or numeric library failing on this file's bytes: the client's data, not the service, so a
            # 4xx naming the image. Only the type is logged (messages of some libraries quote values).
            logger.warning("image %d failed in preparation: %s", image.index, type(result).__name__)
            raise Unprocessable(f"the pixel data could not be processed ({type(result).__name__})",
                                image_index=image.index) from None
        if isinstance(result, BaseException):
            raise result
        prepared.append(_assemble(image, result, model_name))
    return prepared
