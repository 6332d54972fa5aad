"""wrk, a load generator written in C, as a cross-check of the figures `duet bench` gets from locust.

On a machine with few cores the client competes with the servers it measures: a Python client spends more CPU
per request than a C one, and the more CPU a server leaves to the client, the better it looks. `duet bench`
records each client's own CPU per request and repeats the headline comparison with wrk, so a ratio that holds
with both clients is a property of the servers, not of the client.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class WrkRun:
    """One closed-loop wrk run: throughput, latency percentiles, failures and wrk's own CPU."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    failed: int  # non-2xx answers and socket errors
    client_cpu_ms: float  # wrk's user + system CPU per request

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.failed == 0


def available() -> bool:
    return shutil.which("wrk") is not None


def post_script(body: bytes, headers: dict[str, str]) -> str:
    """A wrk Lua script that POSTs `body` with `headers` on every request."""
    delimiter = "="
    while f"]{delimiter}]".encode() in body:
        delimiter += "="
    lines = ['wrk.method = "POST"', f"wrk.body = [{delimiter}[{body.decode()}]{delimiter}]"]
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    return "\n".join(lines) + "\n"


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip()).groups()  # type: ignore[union-attr]
    return float(number) * UNITS_MS[unit]


def parse_output(text: str) -> dict[str, float]:
    """requests, rps, p50_ms, p99_ms and failed from wrk's report (run with --latency)."""
    requests = re.search(r"(\d+) requests in", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if requests is None or rps is None:
        raise ValueError(f"not a wrk report: {text[-500:]!r}")
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s|m))\s*$", text, flags=re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    failed = int(non_2xx.group(1)) if non_2xx else 0
    failed += sum(int(count) for count in socket.groups()) if socket else 0
    return {"requests": float(requests.group(1)), "rps": float(rps.group(1)),
            "p50_ms": _ms(percentiles["50"]) if "50" in percentiles else float("nan"),
            "p99_ms": _ms(percentiles["99"]) if "99" in percentiles else float("nan"),
            "failed": float(failed)}


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(url: str, body: bytes, headers: dict[str, str], connections: int, seconds: int,
        threads: int = 2) -> WrkRun:
    """POST `body` to `url` from `connections` closed-loop connections for `seconds`."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "post.lua"
        script.write_text(post_script(body, headers))
        cpu_before = _children_cpu_seconds()
        completed = subprocess.run(
            ["wrk", "--latency", "-t", str(max(1, min(threads, connections))), "-c", str(connections),
             "-d", f"{seconds}s", "--timeout", "30s", "-s", str(script), url],
            capture_output=True, text=True, check=False, timeout=seconds + 60)
        # wrk has been waited for: its CPU is now in this process's children's totals.
        cpu_seconds = _children_cpu_seconds() - cpu_before
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr[-1000:]}")
    report = parse_output(completed.stdout)
    requests = int(report["requests"])
    return WrkRun(requests=requests, rps=report["rps"], p50_ms=report["p50_ms"], p99_ms=report["p99_ms"],
                  failed=int(report["failed"]), client_cpu_ms=1000 * cpu_seconds / max(1, requests))
