"""Mammography under a step load: studies/s, latency and CPU per study at 1, 2, 4, 8 concurrent studies.

`duet bench` runs it after the sentiment comparison. One local stack (mammography only, free ports) serves
every (study size, transfer syntax, concurrency) step; each step is a closed-loop headless locust run of
`MammographyUser` (the load test's own user: 4-view synthetic studies as binary tensors, every response
checked) in its own process. Per step it records studies/s, p50/p95/p99, errors by kind, and the CPU
seconds the transformer (its process and its decode pool) and the predictor spent per study, read from the
kernel. Those give the sizing figures: studies per second per transformer core (1000 / transformer CPU ms per
study), and the predictor's CPU per study. Sentiment's figures per core come from the duet steps of the same
run.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from .bench import (
    ProcessGroup,
    StepResult,
    _fmt,
    machine,
    markdown_table,
    replace_section,
    run_locust,
    stack_groups,
)
from .progress import progress_bar

SECTION = "## Mammography: studies per second under a step load"
SIZING_SECTION = "## Sizing figures per core"


@dataclass(frozen=True)
class StudyStep:
    size: str  # rows x columns of each view
    syntax: str
    users: int  # concurrent closed-loop studies
    studies: int
    studies_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: dict[str, int]
    transformer_cpu_ms: float  # per study, decode pool included
    predictor_cpu_ms: float  # per study, every predictor process

    @property
    def studies_per_transformer_core(self) -> float | None:
        """Studies per second one fully busy transformer core would serve at this step's CPU cost."""
        return 1000.0 / self.transformer_cpu_ms if self.transformer_cpu_ms > 0 else None

    @property
    def transformer_cores_busy(self) -> float:
        return self.studies_per_s * self.transformer_cpu_ms / 1000.0


def measure_study_step(
    url: str,
    size: str,
    syntax: str,
    users: int,
    seconds: int,
    transformer: ProcessGroup,
    predictor: list[ProcessGroup],
) -> StudyStep:
    before = transformer.cpu_seconds(), sum(group.cpu_seconds() for group in predictor)
    run = run_locust(
        url, "MammographyUser", users, seconds, {"DUET_STUDY_SIZE": size, "DUET_STUDY_SYNTAX": syntax}
    )
    after = transformer.cpu_seconds(), sum(group.cpu_seconds() for group in predictor)
    # CPU is read around the whole locust process, so it is charged to the studies it sent: a slight
    # overestimate.
    served = max(1, run["requests"])
    return StudyStep(
        size=size,
        syntax=syntax,
        users=users,
        studies=run["requests"],
        studies_per_s=run["rps"],
        p50_ms=run["p50"],
        p95_ms=run["p95"],
        p99_ms=run["p99"],
        errors=run["errors"],
        transformer_cpu_ms=1000 * (after[0] - before[0]) / served,
        predictor_cpu_ms=1000 * (after[1] - before[1]) / served,
    )


def warm_up(url: str, size: str, syntax: str) -> None:
    """One study of this kind before its steps: first-request costs (lazy imports, codec set-up, the
    predictor's first run) would otherwise be charged to the first step's studies."""
    from loadtests.payloads import mammography_body, mammography_study

    rows, columns = (int(value) for value in size.split("x"))
    body, headers = mammography_body(mammography_study(seed=7, rows=rows, columns=columns, syntax=syntax))
    reply = httpx.post(f"{url}/v2/models/mammography/infer", content=body, headers=headers, timeout=300)
    reply.raise_for_status()


def run_study_steps(
    sizes: list[str],
    syntaxes: list[str],
    user_steps: list[int],
    seconds: int,
    model_repository: Path,
    predictor: str,
    console: Console,
) -> tuple[list[StudyStep], str]:
    """Every (size, syntax, users) step against one local mammography stack; the steps, the predictor kind."""
    from .local.stack import LocalStack, StackConfig, free_ports
    from .local.triton import TritonPorts

    http, grpc, t_http, t_grpc, t_metrics = free_ports(5)
    config = StackConfig(
        model_repository=model_repository,
        run_dir=Path(tempfile.mkdtemp(prefix="duet-bench-load-")),
        http_port=http,
        grpc_port=grpc,
        triton=TritonPorts(t_http, t_grpc, t_metrics),
        predictor=predictor,
        models=("mammography",),
    )
    steps: list[StudyStep] = []
    with progress_bar(console) as progress:
        task = progress.add_task(
            "starting a mammography stack", total=len(sizes) * len(syntaxes) * len(user_steps)
        )
        with LocalStack(config, say=console.print) as stack:
            groups = stack_groups(stack)
            transformer, predictor_groups = groups[0], groups[1:]
            for size in sizes:
                for syntax in syntaxes:
                    progress.update(task, description=f"mammography: {size} {syntax}, warming up")
                    warm_up(stack.transformer_http, size, syntax)
                    for users in user_steps:
                        progress.update(
                            task, description=f"mammography: {size} {syntax}, {users} concurrent studies"
                        )
                        steps.append(
                            measure_study_step(
                                stack.transformer_http,
                                size,
                                syntax,
                                users,
                                seconds,
                                transformer,
                                predictor_groups,
                            )
                        )
                        progress.advance(task)
            kind = stack.predictor_kind
    return steps, kind


STEP_HEADERS = [
    "view size",
    "syntax",
    "concurrent studies",
    "studies",
    "studies/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "errors",
    "transformer CPU ms per study",
    "transformer cores busy",
    "studies/s per transformer core",
    "predictor CPU ms per study",
]
SIZING_HEADERS = [
    "model",
    "request",
    "transformer CPU ms per request",
    "requests/s per transformer core",
    "predictor CPU ms per request",
    "best measured req/s (concurrency)",
    "p99 ms there",
]


def step_cells(step: StudyStep) -> list[str]:
    errors = ", ".join(f"{count} x {kind}" for kind, count in step.errors.items() if count) or "0"
    return [
        step.size,
        step.syntax,
        str(step.users),
        str(step.studies),
        f"{step.studies_per_s:.2f}",
        f"{step.p50_ms:.0f}",
        f"{step.p95_ms:.0f}",
        f"{step.p99_ms:.0f}",
        errors,
        f"{step.transformer_cpu_ms:.0f}",
        f"{step.transformer_cores_busy:.2f}",
        _fmt(step.studies_per_transformer_core),
        f"{step.predictor_cpu_ms:.0f}",
    ]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def sizing_rows(steps: list[StudyStep], sentiment: list[StepResult]) -> list[list[str]]:
    """Per-core figures: the median CPU per request over the steps of one request kind, and its best step."""
    rows = []
    for size, syntax in dict.fromkeys((step.size, step.syntax) for step in steps):
        kind = [
            step
            for step in steps
            if (step.size, step.syntax) == (size, syntax) and not sum(step.errors.values())
        ]
        if not kind:
            continue
        cpu = _median([step.transformer_cpu_ms for step in kind])
        best = max(kind, key=lambda step: step.studies_per_s)
        rows.append(
            [
                "mammography",
                f"4-view study, {size}, {syntax}",
                f"{cpu:.0f}",
                _fmt(1000 / cpu if cpu else None),
                f"{_median([step.predictor_cpu_ms for step in kind]):.0f}",
                f"{best.studies_per_s:.2f} ({best.users})",
                f"{best.p99_ms:.0f}",
            ]
        )
    for texts in sorted({result.texts for result in sentiment if result.system == "duet"}):
        kind = [r for r in sentiment if r.system == "duet" and r.texts == texts and not r.error_count]
        if not kind:
            continue
        cpu = _median([r.cpu_ms.get("transformer", 0.0) for r in kind])
        predictor = _median([sum(ms for name, ms in r.cpu_ms.items() if name != "transformer") for r in kind])
        best = max(kind, key=lambda r: r.rps)
        rows.append(
            [
                "sentiment",
                f"{texts} headline{'s' if texts > 1 else ''}",
                f"{cpu:.2f}",
                _fmt(1000 / cpu if cpu else None, ".0f"),
                f"{predictor:.2f}",
                f"{best.rps:.1f} ({best.users})",
                f"{best.p99_ms:.0f}",
            ]
        )
    return rows


def steps_note(when: str, seconds: int, predictor: str, load: float) -> str:
    return (
        f"`duet bench`, {when}, {machine()}, predictor {predictor}; 1-minute load average at the end "
        f"{load:.1f} (the machine may be shared: what else ran shows there, and the load generator shares "
        "its cores). Locust's `MammographyUser` (4-view synthetic studies, binary tensors, every response "
        f"checked), closed loop, {seconds} s per step, one local stack (transformer with one server "
        "process). CPU per study is what the kernel charged the transformer (its decode pool included) and "
        "the predictor during the step, divided by the studies served; studies/s per transformer core is "
        "1000 / that."
    )


def sizing_note(when: str) -> str:
    return (
        f"From the same `duet bench` run ({when}, {machine()}): the CPU one request costs, as medians over "
        'the error-free steps, and what it means per core. [operations.md, "Sizing"](operations.md#sizing) '
        "turns these into replicas. The predictor column is the predictor's CPU: on a machine without a "
        "GPU that is Triton running the model on CPU, not what a GPU predictor costs; measure that on the "
        "cluster."
    )


def markdown_sections(
    steps: list[StudyStep], sentiment: list[StepResult], seconds: int, predictor: str, load: float
) -> tuple[str, str]:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    steps_table = markdown_table(STEP_HEADERS, [step_cells(step) for step in steps])
    sizing_table = markdown_table(SIZING_HEADERS, sizing_rows(steps, sentiment))
    steps_text = "\n".join([SECTION, "", steps_note(when, seconds, predictor, load), "", steps_table, ""])
    sizing_text = "\n".join([SIZING_SECTION, "", sizing_note(when), "", sizing_table, ""])
    return steps_text, sizing_text


def write_markdown(
    path: Path, steps: list[StudyStep], sentiment: list[StepResult], seconds: int, predictor: str, load: float
) -> None:
    steps_text, sizing_text = markdown_sections(steps, sentiment, seconds, predictor, load)
    replace_section(path, SECTION, steps_text)
    replace_section(path, SIZING_SECTION, sizing_text)


def show(steps: list[StudyStep], sentiment: list[StepResult], console: Console) -> None:
    table = Table(*STEP_HEADERS, title=f"mammography under a step load ({machine()})")
    for step in steps:
        table.add_row(*step_cells(step))
    console.print(table)
    sizing = Table(*SIZING_HEADERS, title="sizing figures per core")
    for row in sizing_rows(steps, sentiment):
        sizing.add_row(*row)
    console.print(sizing)
