"""Typed configuration for the transformers (pydantic-settings, environment prefix `DUET_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PredictorSettings(BaseSettings):
    """How a transformer calls its Triton predictor."""

    model_config = SettingsConfigDict(env_prefix="DUET_PREDICTOR_", extra="ignore")

    timeout_seconds: float = Field(30.0, gt=0, description="Deadline of one predictor call.")
    retries: int = Field(2, ge=0, le=10, description="Extra attempts, only on UNAVAILABLE / 503.")
    retry_backoff_seconds: float = Field(0.2, ge=0, description="First backoff; doubles per attempt.")


class TextSettings(BaseSettings):
    """The `sentiment` transformer."""

    model_config = SettingsConfigDict(env_prefix="DUET_TEXT_", extra="ignore")

    max_batch_texts: int = Field(256, ge=1, description="Largest number of texts accepted in one request.")
    max_length: int | None = Field(
        None, ge=2, description="Token cap; default is the model's own (preprocess.json beside it)."
    )
    max_text_bytes: int = Field(
        8192, ge=64, description="Bytes of one text kept for tokenizing; longer texts are cut (at a character "
        "boundary) and reported in the `truncated` response parameter. The model reads at most max_length tokens, "
        "so this only bounds the tokenizer's work on hostile input (a 1 MB string).",
    )
    predictor_batch: int = Field(
        64, ge=1, description="Texts per predictor call; larger requests are split (max_batch_size in Triton)."
    )


class DicomSettings(BaseSettings):
    """The `mammography` transformer: intake caps and post-processing thresholds."""

    model_config = SettingsConfigDict(env_prefix="DUET_DICOM_", extra="ignore")

    max_images: int = Field(4, ge=1, le=4)
    max_file_bytes: int = Field(160 * 1024 * 1024, description="Per DICOM file.")
    max_rows: int = Field(6144, description="Fits a 4096x3328 mammogram with room to spare.")
    max_columns: int = Field(6144)
    max_frames: int = Field(1)
    max_inflated_bytes: int = Field(256 * 1024 * 1024, description="Cap when inflating Deflated syntax.")
    max_study_memory_bytes: int = Field(
        1024 * 1024 * 1024, ge=1024 * 1024,
        description="Memory one study's preparation may take, estimated from its headers before decoding "
        "(transformers_pre/dicom/memory.py); beyond it 413 naming the image. Four 6144 x 6144 16-bit views "
        "decoded in full need ~950 MiB.",
    )
    max_inflight_memory_bytes: int = Field(
        3 * 1024 * 1024 * 1024, ge=1024 * 1024,
        description="Memory all studies being prepared in one server process may hold together; a study that "
        "would pass it waits outside with 429 and Retry-After. With the receive buffers and ~0.5 GiB of code, "
        "this is what the transformer's memory limit must cover.",
    )
    decode_workers: int = Field(4, ge=1, description="Views of a study decoded concurrently "
                                "(the size of each pool: threads, and processes for the codecs that hold the GIL).")
    decode_in_processes: bool = Field(
        True,
        description="Decode JPEG-LS, RLE, and JPEG 2000 at full resolution in a pool of `decode_workers` "
        "processes: those codecs hold the GIL, so threads would decode one view at a time. Uncompressed views, and "
        "JPEG 2000 or baseline JPEG decoded at reduced resolution (`resolution_aware`), always use threads.",
    )
    resolution_aware: bool = Field(
        True,
        description="Decode JPEG 2000 / HTJ2K views only down to the coarsest wavelet level at which the breast "
        "crop still covers the model input (boxes map back exactly). false: always decode full resolution, for "
        "models that need it.",
    )
    score_threshold: float = Field(0.3, ge=0, le=1)
    nms_iou: float = Field(0.5, gt=0, le=1)
    quality_threshold: float = Field(0.5, ge=0, le=1)
    sr_series_number: int = Field(
        9001, ge=1, le=2**31 - 1, description="Series Number of the DICOM SR (`report: \"sr\"`): a number a site's "
        "hanging protocols can place after the images' series.",
    )
    sr_series_description: str = Field(
        "duet mammography AI results", min_length=1, max_length=41, pattern=r"^[^\\\x00-\x1f]*$",
        description="Series Description of the SR. While the model card does not clear the model for clinical "
        "use it is prefixed with 'NOT FOR CLINICAL USE - ' (23 characters; the DICOM attribute holds 64).",
    )


class Settings(BaseSettings):
    """Top-level settings shared by both transformers."""

    model_config = SettingsConfigDict(env_prefix="DUET_", extra="ignore")

    model_repository: Path = Field(
        Path("models/model_repository"),
        description="Folder with the predictor's models and their side files (tokenizer.json, labels.txt); "
        "on a cluster the same storageUri mounted at /mnt/models.",
    )
    predictor_protocol: Literal["grpc-v2", "v2"] = "grpc-v2"
    max_inflight_requests: int = Field(
        128, ge=1, description="Requests one model admits at once per server process (sentiment); beyond it the "
        "answer is 429 with Retry-After. This is the queue bound: Triton's own queue is left unbounded because its "
        "queue policy stalls the dynamic batcher (docs/benchmarks.md).",
    )
    max_inflight_studies: int = Field(
        16, ge=1, description="The same bound for mammography, lower because each study holds its DICOM files "
        "(up to ~110 MB for four uncompressed 4096 x 3328 views) until it is answered.",
    )
    log_format: Literal["json", "text"] = "json"
    retry_after_seconds: int = Field(
        1, ge=0, description="Retry-After sent with every 429 (overloaded) and 503 (predictor unavailable)."
    )
    max_request_bytes: int = Field(
        320 * 1024 * 1024,
        ge=1024,
        description="Largest request body (REST, 413 beyond) and gRPC message (the server's receive and send "
        "limits): four 6144 x 6144 16-bit uncompressed views with room for the v2 header.",
    )
    receive_buffer_pool_bytes: int = Field(
        256 * 1024 * 1024,
        ge=0,
        description="Memory kept between requests for receiving large binary bodies (a 4-view uncompressed study "
        "is ~110 MB): reusing mapped memory saves a page fault per 4 KB, which costs more than the copy "
        "(docs/benchmarks.md). 0 maps fresh memory for every request.",
    )
    bearer_token: str | None = Field(
        None,
        description="When set, every request except health, readiness and /metrics must carry "
        "'Authorization: Bearer <token>' (401 otherwise). Off by default: on a cluster, Istio or oauth2-proxy "
        "authenticate in front of the transformer.",
    )
    predictor: PredictorSettings = Field(default_factory=PredictorSettings)
    text: TextSettings = Field(default_factory=TextSettings)
    dicom: DicomSettings = Field(default_factory=DicomSettings)
