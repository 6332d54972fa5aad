"""Dispatch: one complete study to the mammography InferenceService over v2, as any client sends it.

The DICOM files go as one BYTES input in the binary tensor extension with the parameter `report: "sr"`; the
answer's `report` output is the study's SR (built by the transformer, never here). Busy or unreachable
services (429, 5xx, connection errors) are retried later, honouring Retry-After; a 4xx other than 429 means
the study itself was refused, and the message the service gave is kept for the operator.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx
import numpy as np
import tritonclient.http as httpclient
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO

from duet.v2 import BINARY, bytes_input

from .settings import GatewaySettings
from .spool import Instance

# The transformer takes 1 to 4 images of one study (docs/api.md).
MAX_IMAGES = 4
HANGING_ORDER = (("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))
FINDING_OUTPUTS = ("boxes", "labels", "image_index")
RETRIED_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# httpx's sync transport slices off what each partial send() took and keeps the rest as a new bytes object, so
# a body handed over whole is copied once per send(): quadratic in its size (a 109 MB study, sent in the few
# hundred KB a loopback socket takes at a time, is copied gigabytes' worth, while holding the GIL). Handed over
# in memoryview chunks, each copy is at most one chunk.
BODY_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Findings:
    """The boxes (original pixels), their labels and source image indices (for the Secondary Capture)."""

    boxes: np.ndarray
    labels: list[str]
    image_index: np.ndarray


@dataclass(frozen=True)
class Outcome:
    """What one dispatch attempt gave: the SR (SOP Instance UID, Part 10 bytes), or a retry after
    `retry_after_s`, or a refusal (`refused`: the study will not be run again without an operator)."""

    report: tuple[str, bytes] | None = None
    findings: Findings | None = None
    retry_after_s: float | None = None
    refused: bool = False
    error: str = ""


def select_images(instances: list[Instance]) -> list[Instance]:
    """At most 4 images for one request: one per (laterality, view), the latest received winning, in hanging
    order; images without laterality/view fill the remaining places in the order they arrived."""
    by_view: dict[tuple[str, str], Instance] = {}
    others = []
    for instance in instances:
        key = (instance.laterality, instance.view)
        if key in HANGING_ORDER:
            by_view[key] = instance
        else:
            others.append(instance)
    ordered = [by_view[key] for key in HANGING_ORDER if key in by_view] + others
    return ordered[:MAX_IMAGES]


def backoff_seconds(attempts: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff with full jitter over the upper half (so retries of many studies spread out)."""
    ceiling = min(cap_s, base_s * 2 ** min(attempts, 30))
    return ceiling * random.uniform(0.5, 1.0)


def retry_after_seconds(header: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def body_chunks(body: bytes) -> Iterator[memoryview]:
    """`body` in BODY_CHUNK_BYTES pieces, without copying it (send it with its Content-Length set)."""
    view = memoryview(body)
    for start in range(0, len(view), BODY_CHUNK_BYTES):
        yield view[start : start + BODY_CHUNK_BYTES]


def post_body(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST `body` in chunks with a Content-Length (not chunked transfer coding, which v2 servers need not
    take)."""
    headers = {**headers, "Content-Length": str(len(body))}
    return client.post(url, content=body_chunks(body), headers=headers)


class Dispatcher:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        headers = {}
        if settings.inference_token:
            headers["Authorization"] = f"Bearer {settings.inference_token}"
        if settings.inference_host_header:
            headers["Host"] = settings.inference_host_header
        self.url = f"{settings.inference_url.rstrip('/')}/v2/models/{settings.inference_model}/infer"
        self.client = httpx.Client(headers=headers, timeout=settings.inference_timeout_seconds)

    def close(self) -> None:
        self.client.close()

    def run(self, images: list[bytes], attempts: int, findings: bool = False) -> Outcome:
        """One v2 call; `findings`: also ask for the boxes (for the Secondary Capture)."""
        # Every output in the binary extension, as tritonclient and KServe's clients ask (a study without findings
        # gets empty tensors there too).
        requested = [httpclient.InferRequestedOutput("report", binary_data=True)]
        if findings:
            requested += [httpclient.InferRequestedOutput(name, binary_data=True) for name in FINDING_OUTPUTS]
        body, json_size = httpclient.InferenceServerClient.generate_request_body(
            [bytes_input("dicom", images)], outputs=requested, parameters={"report": "sr"}
        )
        headers = {"Content-Type": BINARY, "Inference-Header-Content-Length": str(json_size)}
        fallback = backoff_seconds(
            attempts, self.settings.retry_base_seconds, self.settings.dispatch_max_backoff_seconds
        )
        try:
            response = post_body(self.client, self.url, body, headers)
        except httpx.HTTPError as error:
            return Outcome(
                retry_after_s=fallback, error=f"inference service unreachable: {type(error).__name__}"
            )
        if response.status_code in RETRIED_STATUSES:
            hinted = retry_after_seconds(response.headers.get("Retry-After"))
            delay = fallback if hinted is None else hinted + random.uniform(0, 1)
            return Outcome(
                retry_after_s=delay,
                error=f"inference service answered {response.status_code}: {_error_message(response)}",
            )
        if response.status_code != 200:
            return Outcome(
                refused=True,
                error=f"inference service refused the study ({response.status_code}): "
                f"{_error_message(response)}",
            )
        length = response.headers.get("Inference-Header-Content-Length")
        result = httpclient.InferenceServerClient.parse_response_body(
            response.content, header_length=int(length) if length else None
        )
        report = bytes(result.as_numpy("report")[0])
        sop_uid = str(dcmread(DicomBytesIO(report), stop_before_pixels=True).SOPInstanceUID)
        found = None
        if findings:
            found = Findings(
                boxes=result.as_numpy("boxes").reshape(-1, 4),
                labels=[label.decode() if isinstance(label, bytes) else str(label)
                        for label in result.as_numpy("labels")],
                image_index=result.as_numpy("image_index"),
            )
        return Outcome(report=(sop_uid, report), findings=found)


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", ""))[:300]
    except ValueError:
        return response.text[:300]
