"""Client side of `duet infer`: real v2 requests with tritonclient.http (binary tensors), shown as tables."""

from __future__ import annotations

from pathlib import Path

import tritonclient.http as httpclient
from rich.console import Console
from rich.table import Table
from tritonclient.utils import InferenceServerException

from transformers_pre import registry

from .v2 import bytes_input


def _client(url: str) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url=url.removeprefix("http://"), connection_timeout=10, network_timeout=120)


def infer_sentiment(url: str, texts: list[str], console: Console, report: Path | None = None) -> None:
    """Score texts and print label, probabilities and entropy per text (`report` is for mammography only)."""
    if report:
        console.print("[yellow]--report is for mammography; ignored[/]")
    spec = registry.model("sentiment")
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in spec.outputs]
    try:
        result = _client(url).infer(spec.name, [bytes_input(spec.input, texts)], outputs=outputs)
    except InferenceServerException as error:
        console.print(f"[red]{error.status() or ''} {error.message()}[/]")
        raise SystemExit(1) from None
    table = Table("text", "label", "negative", "neutral", "positive", "entropy (nats)")
    for text, label, probabilities, entropy in zip(
        texts, result.as_numpy("label"), result.as_numpy("probabilities"), result.as_numpy("entropy")
    ):
        table.add_row(text[:60], label.decode(), *(f"{p:.3f}" for p in probabilities), f"{entropy:.3f}")
    console.print(table)


def infer_mammography(url: str, paths: list[str], console: Console, report: Path | None = None) -> None:
    """Send one study (1 to 4 DICOM files) and print findings per image, quality and the study risk."""
    files = [Path(path) for path in paths]
    spec = registry.model("mammography")
    names = [*spec.outputs, *(["report"] if report else [])]
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in names]
    try:
        result = _client(url).infer(
            spec.name, [bytes_input(spec.input, [f.read_bytes() for f in files])], outputs=outputs,
            parameters={"report": "sr"} if report else None,
        )
    except InferenceServerException as error:
        console.print(f"[red]{error.status() or ''} {error.message()}[/]")
        raise SystemExit(1) from None
    quality = result.as_numpy("quality")
    images = Table("image", "file", "quality")
    for index, (path, q) in enumerate(zip(files, quality)):
        images.add_row(str(index), path.name, f"{q:.3f}")
    console.print(images)
    findings = Table("image", "label", "score", "x_min", "y_min", "x_max", "y_max", title="findings (original pixels)")
    for box, score, label, index in zip(
        result.as_numpy("boxes"), result.as_numpy("scores"), result.as_numpy("labels"), result.as_numpy("image_index")
    ):
        findings.add_row(str(index), label.decode(), f"{score:.3f}", *(f"{v:.0f}" for v in box))
    console.print(findings)
    console.print(f"study malignancy risk: [bold]{float(result.as_numpy('risk')[0]):.3f}[/]")
    notice = (result.get_response().get("parameters") or {}).get("clinical_use_notice")
    if notice:
        console.print(f"[bold yellow]{notice}[/]")
    if report:
        report.write_bytes(result.as_numpy("report")[0])
        console.print(f"DICOM SR written to {report}")
