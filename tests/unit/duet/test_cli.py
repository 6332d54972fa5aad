"""What `duet up` writes: JSON lines off a terminal (children's lines untouched), colour and prefixes on one."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from duet.cli import LogFollower, UpOutput

LONG_JSON = json.dumps({"time": "t", "level": "warning", "logger": "duet.server", "message": "x" * 200}).encode()


class Captured(UpOutput):
    """UpOutput writing to a buffer instead of the process's stdout."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.lines: list[bytes] = []

    def write_line(self, line: bytes) -> None:
        self.lines.append(line)


def _off_terminal() -> Captured:
    return Captured(Console(file=io.StringIO(), force_terminal=False))


def test_off_a_terminal_child_json_lines_pass_untouched_and_others_are_wrapped() -> None:
    output = _off_terminal()
    output.child_line("transformer", LONG_JSON)
    output.child_line("predictor", b"W1202 02:44:48.1 model_lifecycle.cc:1] something odd")
    output.child_line("predictor", b"[not json]")
    output.event("error", "[red]predictor exited with code -9[/]", restarts=1)
    assert output.lines[0] == LONG_JSON
    wrapped = [json.loads(line) for line in output.lines[1:]]
    assert wrapped[0]["logger"] == "predictor" and wrapped[0]["level"] == "warning"
    assert wrapped[0]["message"].startswith("W1202")
    assert wrapped[1]["message"] == "[not json]" and wrapped[1]["level"] == "info"
    assert wrapped[2] == {**wrapped[2], "logger": "duet.up", "level": "error", "restarts": 1,
                          "message": "predictor exited with code -9"}


def test_on_a_terminal_only_warnings_and_errors_show_with_the_child_name() -> None:
    buffer = io.StringIO()
    output = Captured(Console(file=buffer, force_terminal=True, width=80))
    output.child_line("transformer", LONG_JSON)
    output.child_line("transformer", json.dumps({"level": "info", "message": "GET /ready 200"}).encode())
    text = buffer.getvalue()
    assert "transformer" in text and "x" * 200 in text.replace("\n", "")
    assert "[dim]" not in text and "GET /ready" not in text
    assert output.lines == []


def test_the_follower_passes_whole_lines_only_and_skips_earlier_runs(tmp_path: Path) -> None:
    log = tmp_path / "transformer.log"
    log.write_bytes(b'{"run": "earlier"}\n')
    output = _off_terminal()
    follower = LogFollower({"transformer": log}, output, {"transformer": log.stat().st_size})
    with log.open("ab") as handle:
        handle.write(b'{"a": 1}\n{"b": ')
    follower.poll()
    assert output.lines == [b'{"a": 1}']
    with log.open("ab") as handle:
        handle.write(b'2}\n')
    follower.poll()
    assert output.lines == [b'{"a": 1}', b'{"b": 2}']


@pytest.mark.parametrize("line", [b"{broken", b"[1, 2]"])
def test_lines_that_look_like_json_but_are_not_objects_are_wrapped(line: bytes) -> None:
    output = _off_terminal()
    output.child_line("transformer", line)
    assert json.loads(output.lines[0])["message"] == line.decode()
