"""The build's events file, written by `duet models build --events` and read back by `duet up --build`."""

from __future__ import annotations

from pathlib import Path

from duet.local.background_build import BackgroundBuild, BuildEvents, stack_changes, still_building


def test_events_are_read_back_once_and_a_half_written_line_waits(tmp_path: Path) -> None:
    job = BackgroundBuild(tmp_path / "repository", tmp_path, ["sentiment", "mammography"])
    writer = BuildEvents(job.events_file)
    writer.emit("sentiment", "building")
    writer.emit("sentiment", "installed")
    with job.events_file.open("a") as handle:
        handle.write('{"model": "mammography", "kind": "buil')  # the build is writing this line now
    assert [(e.model, e.kind) for e in job.poll()] == [("sentiment", "building"), ("sentiment", "installed")]
    assert job.installed == ["sentiment"] and job.building is None
    with job.events_file.open("a") as handle:
        handle.write('ding", "message": ""}\n')
    assert [(e.model, e.kind) for e in job.poll()] == [("mammography", "building")]
    assert job.building == "mammography" and job.poll() == []
    writer.emit("mammography", "failed", "ap50 below its floor")
    job.poll()
    assert job.failed == {"mammography": "ap50 below its floor"} and job.building is None


def test_the_build_command_builds_what_is_asked_into_the_repository(tmp_path: Path) -> None:
    job = BackgroundBuild(tmp_path / "repository", tmp_path, ["mammography"], quick=True)
    assert f"--out={tmp_path / 'repository'}" in job.command and "--only=detector" in job.command
    assert "--quick" in job.command and "--only=sentiment" not in job.command


def test_until_the_build_ends_every_model_not_installed_or_refused_is_still_building(tmp_path: Path) -> None:
    job = BackgroundBuild(tmp_path / "repository", tmp_path, ["sentiment", "mammography"])
    assert job.poll() == [] and not job.finished
    assert still_building(job, ("mammography", "sentiment")) == ("mammography", "sentiment")
    BuildEvents(job.events_file).emit("sentiment", "installed")
    job.poll()
    assert still_building(job, ("mammography", "sentiment")) == ("mammography",)


def test_without_a_path_emitting_writes_nothing(tmp_path: Path) -> None:
    BuildEvents(None).emit("sentiment", "installed")
    assert list(tmp_path.iterdir()) == []


def test_the_stack_adds_each_model_installed_and_drops_those_the_build_ended_without() -> None:
    # Sentiment served, the detector building: nothing to do until the build reports.
    assert stack_changes(["sentiment"], False, ("sentiment",), ("mammography",)) == ([], [])
    # The detector installed: serve it.
    assert stack_changes(["sentiment", "mammography"], False, ("sentiment",), ("mammography",)) == (
        ["mammography"], [])
    # The build ended without it (a refused gate): stop answering "still being built".
    assert stack_changes(["sentiment"], True, ("sentiment",), ("mammography",)) == ([], ["mammography"])
