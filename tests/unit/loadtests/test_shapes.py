"""The load shapes say how many users run when, and stop the test themselves."""

from __future__ import annotations

import pytest

from loadtests import shapes


def ticks(shape_class: type, monkeypatch: pytest.MonkeyPatch, times: list[float]) -> list:
    shape = shape_class()
    answers = []
    for moment in times:
        monkeypatch.setattr(shape, "get_run_time", lambda moment=moment: moment)
        answers.append(shape.tick())
    return answers


def test_step_rises_in_equal_steps_then_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUET_SHAPE_USERS", "40")
    monkeypatch.setenv("DUET_SHAPE_STEPS", "4")
    monkeypatch.setenv("DUET_SHAPE_STEP_SECONDS", "10")
    users = [answer and answer[0] for answer in ticks(shapes.StepShape, monkeypatch, [0, 9.9, 10, 25, 39, 40])]
    assert users == [10, 10, 20, 30, 40, None]


def test_spike_jumps_to_the_peak_in_the_middle_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUET_SHAPE_USERS", "100")
    monkeypatch.setenv("DUET_SHAPE_SECONDS", "50")
    users = [answer and answer[0] for answer in ticks(shapes.SpikeShape, monkeypatch, [0, 19, 20, 29, 30, 49, 50])]
    assert users == [25, 25, 100, 100, 25, 25, None]


def test_soak_holds_its_users_for_its_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUET_SHAPE_USERS", "12")
    monkeypatch.setenv("DUET_SHAPE_SECONDS", "600")
    assert ticks(shapes.SoakShape, monkeypatch, [0, 599, 600]) == [(12, 12.0), (12, 12.0), None]


def test_shape_selection_names_the_choices() -> None:
    assert shapes.selected_shape("") is None
    assert shapes.selected_shape("spike") is shapes.SpikeShape
    with pytest.raises(ValueError, match="soak"):
        shapes.selected_shape("ramp")
