"""Progress off a terminal: plain lines a log can show, throttled; on a terminal, rich's bar alone."""

from __future__ import annotations

import io

from rich.console import Console

from duet.progress import progress_bar


def _lines(terminal: bool, interval_s: float) -> list[str]:
    output = io.StringIO()
    console = Console(file=output, force_terminal=terminal, width=100)
    with progress_bar(console, interval_s=interval_s) as progress:
        task = progress.add_task("mammo_detector: training", total=4)
        for _ in range(3):
            progress.advance(task)
        progress.update(task, description="mammo_detector: exporting")
        progress.advance(task)
    return [line for line in output.getvalue().splitlines() if line.strip()]


def test_off_a_terminal_each_stage_is_a_line_and_steps_are_throttled() -> None:
    lines = _lines(terminal=False, interval_s=3600)
    reported = [line for line in lines if line.startswith("mammo_detector: ") and line.endswith(" s)")]
    assert [line.split(" (")[0] for line in reported] == ["mammo_detector: training: 0/4",
                                                          "mammo_detector: exporting: 3/4",
                                                          "mammo_detector: exporting: 4/4"]


def test_off_a_terminal_without_throttling_every_step_is_a_line() -> None:
    lines = _lines(terminal=False, interval_s=0)
    assert sum(line.startswith("mammo_detector: training: ") for line in lines) == 4  # added, then 3 steps


def test_on_a_terminal_only_the_bar_is_drawn() -> None:
    assert not any(line.endswith(" s)") and ": 0/4" in line for line in _lines(terminal=True, interval_s=0))


def test_off_a_terminal_live_figures_in_the_description_are_throttled_too() -> None:
    # The detector's training puts its loss in the description at every step: that is not a new phase.
    output = io.StringIO()
    with progress_bar(Console(file=output, force_terminal=False, width=100), interval_s=3600) as progress:
        task = progress.add_task("detector: training", total=50)
        for step in range(49):
            progress.update(task, description=f"detector: training (loss {10 - step / 10:.3f})", advance=1)
        progress.update(task, description="detector: exporting", advance=1)
    lines = output.getvalue().splitlines()
    reported = [line for line in lines if line.startswith("detector: ") and line.endswith(" s)")]
    assert [line.split(":")[1].strip() for line in reported] == ["training", "exporting"]
