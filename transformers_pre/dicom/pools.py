"""The bounded pools that run the pixel pipeline (`pixels.py`): threads, and worker processes for the codecs
that hold the GIL."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from pydicom.uid import JPEGBaseline8Bit

from ..settings import DicomSettings
from .decode import JPEG2000_SYNTAXES
from .intake import ImageHeader, read_header
from .pixels import ViewPixels, prepare_pixels


def prepare_in_worker(
    blob: bytes, index: int, laterality: str, model_hw: tuple[int, int], caps: DicomSettings
) -> ViewPixels:
    # In a worker process: the header is read again (milliseconds) rather than pickling a dataset across.
    return prepare_pixels(blob, read_header(blob, index, caps), laterality, model_hw, caps.resolution_aware)


def worker_init() -> None:
    # The same rules as the serving process: no pydicom warnings quoting values, one OpenCV thread per worker.
    import cv2
    import pydicom.config

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    cv2.setNumThreads(1)


def worker_context() -> multiprocessing.context.BaseContext:
    """Where worker processes come from: a fork server that has imported this module (and not the server's
    __main__, which would drag KServe into every worker), else plain spawn. Never a fork of the serving
    process, whose gRPC and event-loop threads make forking unsafe."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


class DecodePools:
    """Bounded pools that prepare views: worker processes for the codecs that hold the GIL, threads for the
    rest.

    pylibjpeg-openjpeg, pyjpegls and pylibjpeg-rle hold the GIL while decoding, so a thread decoding JPEG 2000
    at full resolution, JPEG-LS or RLE stalls the others: those views go to `decode_workers` processes (from a
    fork server, on first use or `warm_up`, never at import), and only the file in and the small model input
    out cross the process boundary. Everything else stays on `decode_workers` threads (`uses_process` says
    which): numpy's gather and OpenCV release the GIL, and copying an uncompressed view to a process would
    cost more than its whole pipeline; JPEG 2000 and baseline JPEG decoded at reduced resolution are short
    enough that shipping the file to a process costs about what the parallelism gains (docs/benchmarks.md).
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
                    self.settings.decode_workers, mp_context=worker_context(), initializer=worker_init
                )
            return self._processes

    def uses_process(self, header: ImageHeader) -> bool:
        """Processes for the slow codecs that hold the GIL: JPEG-LS, RLE, and JPEG 2000 or baseline JPEG
        decoded at full resolution; threads for the rest (see the class docstring)."""
        syntax = header.transfer_syntax
        if syntax in JPEG2000_SYNTAXES and self.settings.resolution_aware:
            return False
        if syntax == JPEGBaseline8Bit and self.settings.resolution_aware:
            return False  # libjpeg's scaled decode: a few ms, and Pillow releases the GIL while it runs
        return self.settings.decode_in_processes and syntax.is_compressed

    def warm_up(self) -> None:
        """Start the worker processes now (each imports numpy, OpenCV and pydicom, which takes a while)."""
        if self.settings.decode_in_processes:
            pool = self.processes()
            for future in [pool.submit(worker_init) for _ in range(self.settings.decode_workers)]:
                future.result()

    def reset_processes(self) -> None:
        """Drop a broken process pool (a worker died); the next `processes()` starts a fresh one."""
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
