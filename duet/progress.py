"""Progress bars that also report off a terminal (CI logs, `make ... > log`), where rich draws nothing until
the end.

On a terminal: rich's live bar. Elsewhere: one plain line when a task starts, finishes or enters a new phase, and
at most every `interval_s` while it runs, so a log shows a long build moving without a line per step.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class LineProgress(Progress):
    """rich's Progress, printing a plain line per change (throttled) when its console is not a terminal."""

    def __init__(self, *columns: Any, interval_s: float = 15.0, **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self.interval_s = interval_s
        self._reported: dict[TaskID, tuple[str, float]] = {}

    def _report(self, task_id: TaskID) -> None:
        if self.console.is_terminal:
            return
        task = next(task for task in self.tasks if task.id == task_id)
        phase, last = self._reported.get(task_id, ("", float("-inf")))
        now = time.monotonic()
        if _phase(task.description) == phase and now - last < self.interval_s and not task.finished:
            return
        self._reported[task_id] = (_phase(task.description), now)
        done = f"{task.completed:g}/{task.total:g}" if task.total else f"{task.completed:g}"
        self.console.print(f"{task.description}: {done} ({task.elapsed or 0:.0f} s)", highlight=False)

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
        task_id = super().add_task(description, *args, **kwargs)
        self._report(task_id)
        return task_id

    def update(self, task_id: TaskID, *args: Any, **kwargs: Any) -> None:
        super().update(task_id, *args, **kwargs)
        self._report(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id)


def _phase(description: str) -> str:
    """A description without its parenthesised live figures ("training (loss 2.61)" is phase "training"), which
    change every step and are no reason for a line of their own."""
    return description.split(" (", 1)[0]


def progress_bar(console: Console, interval_s: float = 15.0) -> LineProgress:
    """The CLI's progress bar: description, bar, count and elapsed time."""
    return LineProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, interval_s=interval_s)
