"""The loop that moves studies through their states: complete -> dispatch -> export, with retries.

It keeps no state of its own beyond what is in flight: everything is read from the spool on each pass, so a
restarted gateway picks up every study where it was (a dispatch or an export that was in flight when the
process died is simply done again; an export carries the same SR, so the destination keeps one copy).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from . import audit, metrics, outbox
from .assembly import is_complete
from .capture import secondary_captures
from .dispatch import Dispatcher, backoff_seconds, select_images
from .settings import Destination, GatewaySettings
from .spool import Export, Spool, Study

LOG = logging.getLogger("duet.gateway.scheduler")


class Scheduler:
    def __init__(self, settings: GatewaySettings, spool: Spool, wake: threading.Event | None = None) -> None:
        self.settings = settings
        self.spool = spool
        self.wake = wake or threading.Event()
        self.dispatcher = Dispatcher(settings)
        self._dispatch_pool = ThreadPoolExecutor(settings.dispatch_concurrency, thread_name_prefix="dispatch")
        self._export_pool = ThreadPoolExecutor(settings.export_concurrency, thread_name_prefix="export")
        self._in_flight: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join()
        # In-flight calls are not waited for: their outcome is not recorded, so a restart repeats them.
        self._dispatch_pool.shutdown(wait=False, cancel_futures=True)
        self._export_pool.shutdown(wait=False, cancel_futures=True)
        self.dispatcher.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.step()
            except Exception:
                LOG.exception("scheduler pass failed; retrying")
            self.wake.wait(self.settings.scheduler_interval_seconds)
            self.wake.clear()

    def step(self) -> None:
        """One pass: complete studies, start due dispatches and exports, now and then purge old studies."""
        now = time.time()
        if now - self._last_purge >= 60:
            self._last_purge = now
            purged = self.spool.purge_exported(now - self.settings.retain_seconds)
            if purged:
                audit.event("gateway", "exported studies purged from the spool", studies=purged)
        for study in self.spool.studies(("receiving",)):
            instances = self.spool.instances(study.id)
            if is_complete(study, instances, now, self.settings.stable_seconds) and self.spool.complete(
                study.id, study.generation
            ):
                metrics.STAGE_SECONDS.labels("assemble").observe(now - study.first_received)
                audit.event(
                    "study",
                    "study complete",
                    study=audit.study_ref(study.study_uid),
                    study_id=study.id,
                    generation=study.generation,
                    instances=len(instances),
                )
        for study in self.spool.studies(("pending",)):
            if study.next_dispatch_at <= now and self._claim(("study", study.id)):
                self._dispatch_pool.submit(self._guarded, ("study", study.id), self._dispatch, study)
        for export in self.spool.due_exports(now):
            if self._claim(("export", export.id)):
                self._export_pool.submit(self._guarded, ("export", export.id), self._export, export)

    def _claim(self, key: tuple[str, int]) -> bool:
        with self._lock:
            if key in self._in_flight:
                return False
            self._in_flight.add(key)
            return True

    def _guarded(self, key: tuple[str, int], work, item) -> None:
        try:
            work(item)
        except Exception:
            LOG.exception("%s %d failed unexpectedly; it is retried on a later pass", *key)
        finally:
            with self._lock:
                self._in_flight.discard(key)
            self.wake.set()

    def _dispatch(self, study: Study) -> None:
        try:
            self._dispatch_once(study)
        except Exception as error:
            # A bug or a spool problem must not spin: the study waits like a busy service's would.
            settings = self.settings
            delay = backoff_seconds(
                study.dispatch_attempts, settings.retry_base_seconds, settings.dispatch_max_backoff_seconds
            )
            error_text = f"internal error: {type(error).__name__}"
            self.spool.dispatch_retry(study.id, study.generation, delay, error_text)
            raise

    def _dispatch_once(self, study: Study) -> None:
        images = select_images(self.spool.instances(study.id))
        started = time.monotonic()
        sources = [image.path.read_bytes() for image in images]
        capture = self.settings.secondary_capture
        outcome = self.dispatcher.run(sources, study.dispatch_attempts, findings=capture)
        metrics.STAGE_SECONDS.labels("dispatch").observe(time.monotonic() - started)
        ref = audit.study_ref(study.study_uid)
        if outcome.report is not None:
            results = {"sr": outcome.report}
            if capture and outcome.findings is not None:
                findings = outcome.findings
                results |= secondary_captures(sources, findings.boxes, findings.labels, findings.image_index)
            destinations = [destination.text for destination in self.settings.destination_list]
            if self.spool.store_result(study.id, study.generation, results, destinations):
                audit.event(
                    "study",
                    "study dispatched; result queued for export",
                    study=ref,
                    study_id=study.id,
                    generation=study.generation,
                    images=len(images),
                    destinations=len(destinations),
                )
            return
        if outcome.refused:
            if self.spool.dispatch_failed(study.id, study.generation, outcome.error):
                audit.event(
                    "study",
                    "study refused by the inference service",
                    study=ref,
                    study_id=study.id,
                    error=outcome.error,
                )
            return
        self.spool.dispatch_retry(study.id, study.generation, outcome.retry_after_s or 0.0, outcome.error)
        LOG.warning("study %d: %s; retrying in %.1fs", study.id, outcome.error, outcome.retry_after_s or 0.0)

    def _export(self, export: Export) -> None:
        started = time.monotonic()
        try:
            outbox.send(Destination(export.destination), export.path, self.settings.ae_title)
        except (outbox.ExportError, OSError) as error:
            metrics.STAGE_SECONDS.labels("export").observe(time.monotonic() - started)
            delay = backoff_seconds(
                export.attempts, self.settings.retry_base_seconds, self.settings.export_max_backoff_seconds
            )
            dead = self.spool.export_retry(export.id, delay, str(error), self.settings.export_max_attempts)
            metrics.EXPORTS.labels("dead_letter" if dead else "retry").inc()
            audit.event(
                "export",
                "export dead-lettered" if dead else "export failed; retrying",
                study_id=export.study_id,
                destination=export.destination,
                kind=export.kind,
                attempts=export.attempts + 1,
                error=str(error),
                retry_in_s=None if dead else round(delay, 1),
            )
            return
        metrics.STAGE_SECONDS.labels("export").observe(time.monotonic() - started)
        self.spool.export_delivered(export.id)
        metrics.EXPORTS.labels("delivered").inc()
        audit.event(
            "export",
            "export delivered",
            study_id=export.study_id,
            destination=export.destination,
            kind=export.kind,
            attempts=export.attempts + 1,
            sop=audit.study_ref(export.sop_uid),
        )
