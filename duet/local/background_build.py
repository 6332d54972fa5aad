"""`duet models build` as a child of `duet up --build`, so the stack can serve each model as soon as it is built.

The build reports its progress as JSON lines in an events file (`BuildEvents`): a model's `building` (training or
evaluation starts: minutes), `installed` (built, gated, signed: it can be served) or `failed` (a quality gate
refused it). `duet up` starts serving once one model is installed and the next needs minutes of work, and
restarts the stack to add each model installed later: on a fresh machine sentiment answers after its own build,
while the detector still trains.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transformers_pre import registry

from ..paths import ROOT
from .stack import DIE_WITH_PARENT, LocalStack, kill_process_group


@dataclass(frozen=True)
class BuildEvent:
    """One thing the build reported: `kind` is building, installed or failed (the message says why)."""

    model: str
    kind: str
    message: str = ""


class BuildEvents:
    """The writing side: `duet models build --events PATH` appends one JSON object per event (nothing without a
    path)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def emit(self, model: str, kind: str, message: str = "") -> None:
        if self.path is None:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps({"model": model, "kind": kind, "message": message}) + "\n")


class BackgroundBuild:
    """`duet models build` running as a child process (its own session, so stopping it stops its workers),
    its output in `log` and its events read back with `poll()`."""

    def __init__(self, repository: Path, run_dir: Path, models: list[str], quick: bool = False) -> None:
        self.log = run_dir / "build.log"
        self.events_file = run_dir / "build-events.jsonl"
        self.command = [
            sys.executable, "-m", "duet.cli", "models", "build", f"--out={repository}", f"--events={self.events_file}",
            *[f"--only={registry.model(name).build_name}" for name in models],
            *(["--quick"] if quick else []),
        ]
        self.process: subprocess.Popen | None = None
        self._offset = 0
        self.installed: list[str] = []
        self.failed: dict[str, str] = {}
        self.building: str | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.events_file.unlink(missing_ok=True)
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen([*DIE_WITH_PARENT, *self.command], stdout=handle,
                                            stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)

    def poll(self) -> list[BuildEvent]:
        """The events written since the last call (whole lines only), also folded into `installed`, `failed` and
        `building` (the model in minutes of work now, if any)."""
        if not self.events_file.exists():
            return []
        with self.events_file.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        events = [BuildEvent(**json.loads(line)) for line in complete.splitlines() if line.strip()]
        for event in events:
            if event.kind == "building":
                self.building = event.model
            elif event.kind == "installed":
                self.installed.append(event.model)
                self.building = None
            elif event.kind == "failed":
                self.failed[event.model] = event.message
                self.building = None
        return events

    @property
    def finished(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the build (an interrupted build leaves only a `.partial` folder in the cache, which the next build
        starts over)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        kill_process_group(self.process.pid)
        self.process.wait()


Say = Callable[[str, str], None]  # (level, message)


def announce(job: BackgroundBuild, events: list[BuildEvent], say: Say) -> None:
    """Tell the person at `duet up` what the build is doing, one line per event."""
    for event in events:
        if event.kind == "building":
            minutes = registry.model(event.model).first_build_minutes
            say("info", f"{event.model}: building (a first build takes about {minutes:g} min on 2 idle cores; "
                f"progress in {job.log})")
        elif event.kind == "installed":
            say("info", f"{event.model}: ready to serve (built, gated and signed)")
        elif event.kind == "failed":
            say("error", f"{event.model}: build refused, not served: {event.message} (see {job.log})")


def wait_until_servable(job: BackgroundBuild, stopping: threading.Event, say: Say,
                        tick: Callable[[], None] = lambda: None) -> None:
    """Return once a model is installed and the build has gone on to minutes of work on the next one, or once
    the build has ended (or `stopping` is set): waiting longer would keep a built model from being served."""
    while not stopping.wait(0.25):
        tick()
        announce(job, job.poll(), say)
        if job.finished:
            announce(job, job.poll(), say)
            if job.returncode and not job.failed:
                say("error", f"the model build exited with code {job.returncode} (see {job.log})")
            return
        if job.installed and job.building:
            return


def serve_new_builds(job: BackgroundBuild, stack: LocalStack, requested: tuple[str, ...], say: Say) -> bool:
    """Add the models installed since the stack started, or drop the "still being built" answer of those the
    build ended without (a refused gate, a crash), restarting the stack; True when the stack changed."""
    announce(job, job.poll(), say)
    new, abandoned = stack_changes(job.installed, job.finished, stack.config.models, stack.building)
    if not new and not abandoned:
        return False
    if job.finished and job.returncode and not job.failed:
        say("error", f"the model build exited with code {job.returncode} (see {job.log})")
    stack.config.models = tuple(name for name in requested if name in stack.config.models or name in new)
    if new:
        say("info", f"{', '.join(new)}: restarting the stack to serve it too (a few seconds)")
    if abandoned:
        say("error", f"{', '.join(abandoned)}: not built, so not served (see {job.log}); restarting the stack "
            "without it")
    stack.restart(building=still_building(job, requested))
    return True


def stack_changes(installed: list[str], build_finished: bool, served: tuple[str, ...],
                  building: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """What the stack must change: the models installed but not yet served, and (once the build has ended) the
    models still announced as building that it did not install."""
    new = [name for name in installed if name not in served]
    abandoned = [name for name in building if name not in installed] if build_finished else []
    return new, abandoned


def still_building(job: BackgroundBuild, requested: tuple[str, ...]) -> tuple[str, ...]:
    """The requested models the build may still install (none once it has ended)."""
    if job.finished:
        return ()
    return tuple(name for name in requested if name not in job.installed and name not in job.failed)
