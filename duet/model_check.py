"""`duet models check`: does a model folder meet the tensor contract the transformer enforces?

A team bringing its own ONNX puts it in a Triton model folder (`<repository>/<triton model>/1/model.onnx`
plus its side files). This module checks that folder the way the serving path will use it, and names the
broken rule: the layout and side files (with their schemas), the ONNX graph's inputs and outputs against the
contract and against `config.pbtxt`, and then the model itself, run by ONNX Runtime at the contract's shapes
(batch 1 and a larger batch), checking what the transformer assumes of the numbers (probabilities, not
logits; scores sorted; class ids that `labels.txt` names; boxes inside the input frame).

Nothing here is skipped: a rule that cannot be checked (no ONNX file, say) is itself a failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models import model_config
from transformers_pre import registry

# ONNX Runtime's element types by the name the contract uses, and Triton's config names for them.
ORT_TYPES = {"tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(int32)": "INT32", "tensor(int64)": "INT64"}
CONFIG_TYPES = {"FP32": "TYPE_FP32", "FP16": "TYPE_FP16", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64"}
FLOATS = ("FP32", "FP16")
INTEGERS = ("INT32", "INT64")
# The batch sizes a check runs at: one image, and a batch the dynamic batcher can form.
CHECK_BATCHES = (1, 4)
# Model-input pixels a box corner may lie outside the frame by (rounding in the graph's own decoding).
BOX_TOLERANCE_PX = 1.0
THRESHOLD_KEYS = ("score", "quality", "nms_iou")


@dataclass(frozen=True)
class Problem:
    """One broken rule: `rule`, a short stable name (docs/models.md lists them), and what is wrong."""

    rule: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


@dataclass(frozen=True)
class TensorRule:
    """What the contract requires of one graph input or output: allowed datatypes, rank (batch included)."""

    name: str
    datatypes: tuple[str, ...]
    rank: int


@dataclass
class Report:
    """The rules checked on one folder and the problems found."""

    folder: Path
    model: str
    checked: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, rule: str, message: str) -> None:
        self.problems.append(Problem(rule, message))


DETECTOR_INPUTS = (TensorRule("image", FLOATS, 4),)
DETECTOR_OUTPUTS = (
    TensorRule("boxes", FLOATS, 3),
    TensorRule("scores", FLOATS, 2),
    TensorRule("classes", INTEGERS, 2),
    TensorRule("malignancy", FLOATS, 2),
    TensorRule("quality", FLOATS, 2),
)
TEXT_INPUTS = (TensorRule("input_ids", ("INT64",), 2), TensorRule("attention_mask", ("INT64",), 2))
TEXT_OUTPUTS = (TensorRule("logits", FLOATS, 2),)


@dataclass(frozen=True)
class GraphTensor:
    """A graph input or output as ONNX declares it: datatype name and dims (None for a symbolic axis)."""

    name: str
    datatype: str
    dims: tuple[int | None, ...]


def declared_tensors(session: Any) -> tuple[dict[str, GraphTensor], dict[str, GraphTensor]]:
    """The graph's inputs and outputs as the ONNX file declares them (ONNX Runtime's view of the loaded model:
    a symbolic or unknown axis is None)."""

    def tensors(node_args: Any) -> dict[str, GraphTensor]:
        return {
            arg.name: GraphTensor(arg.name, ORT_TYPES.get(arg.type, arg.type),
                                  tuple(d if isinstance(d, int) else None for d in arg.shape))
            for arg in node_args
        }

    return tensors(session.get_inputs()), tensors(session.get_outputs())


def read_labels(report: Report, folder: Path) -> list[str]:
    path = folder / "labels.txt"
    report.checked.append("labels")
    if not path.exists():
        report.fail("labels", "labels.txt is missing: one class name per line, line N names class id N")
        return []
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        report.fail("labels", "labels.txt names no class")
    spaced = [line for line in lines if len(line.split()) > 1]
    if spaced:
        report.fail(
            "labels",
            f"labels.txt names must be single words (the transformer splits on whitespace): {spaced[:3]}",
        )
    if len(set(lines)) != len(lines):
        report.fail("labels", "labels.txt repeats a class name")
    return lines


def read_json(report: Report, path: Path, rule: str) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        report.fail(rule, f"{path.name} is missing")
        return None
    except json.JSONDecodeError as error:
        report.fail(rule, f"{path.name} is not JSON: {error}")
        return None
    if not isinstance(document, dict):
        report.fail(rule, f"{path.name} must be a JSON object")
        return None
    return document


def check_thresholds(report: Report, folder: Path) -> None:
    """thresholds.json: {"score": p, "quality": p, "nms_iou": p}, each in [0, 1]; every key optional."""
    report.checked.append("thresholds")
    document = read_json(report, folder / "thresholds.json", "thresholds")
    if document is None:
        return
    unknown = sorted(set(document) - set(THRESHOLD_KEYS))
    if unknown:
        report.fail(
            "thresholds", f"thresholds.json has unknown keys {unknown}; allowed: {list(THRESHOLD_KEYS)}"
        )
    for key in THRESHOLD_KEYS:
        value = document.get(key)
        if value is not None and (not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0):
            report.fail("thresholds", f"thresholds.json {key!r} must be a number in [0, 1], got {value!r}")


def check_calibration(report: Report, folder: Path) -> None:
    """calibration.json (optional): {"slope": a, "intercept": b}, finite numbers, slope > 0."""
    path = folder / "calibration.json"
    if not path.exists():
        return
    report.checked.append("calibration")
    document = read_json(report, path, "calibration")
    if document is None:
        return
    for key in ("slope", "intercept"):
        value = document.get(key)
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            report.fail("calibration", f"calibration.json {key!r} must be a finite number, got {value!r}")
    if isinstance(document.get("slope"), (int, float)) and document["slope"] <= 0:
        report.fail(
            "calibration", "calibration.json 'slope' must be positive (a negative slope inverts the risk)"
        )


def check_preprocess(report: Report, folder: Path) -> int:
    """preprocess.json: {"max_length": n}, the tokenizer's truncation length (n > 0); n, or 0 if broken."""
    report.checked.append("preprocess")
    document = read_json(report, folder / "preprocess.json", "preprocess")
    if document is None:
        return 0
    max_length = document.get("max_length")
    if not isinstance(max_length, int) or max_length < 1:
        report.fail(
            "preprocess", f"preprocess.json 'max_length' must be a positive integer, got {max_length!r}"
        )
        return 0
    return max_length


def check_graph(
    report: Report, declared: dict[str, GraphTensor], rules: tuple[TensorRule, ...], kind: str
) -> None:
    report.checked.append(f"onnx-{kind}s")
    expected = {rule.name for rule in rules}
    extra = sorted(set(declared) - expected)
    if kind == "input" and extra:
        report.fail("onnx-inputs", f"the graph has inputs the transformer never sends: {extra}")
    for rule in rules:
        tensor = declared.get(rule.name)
        if tensor is None:
            report.fail(f"onnx-{kind}s", f"the graph has no {kind} {rule.name!r} (it has {sorted(declared)})")
            continue
        if tensor.datatype not in rule.datatypes:
            report.fail(
                f"onnx-{kind}s",
                f"{kind} {rule.name!r} is {tensor.datatype}; the contract allows "
                f"{' or '.join(rule.datatypes)}",
            )
        if len(tensor.dims) != rule.rank:
            report.fail(
                f"onnx-{kind}s",
                f"{kind} {rule.name!r} has rank {len(tensor.dims)}, the contract needs "
                f"{rule.rank} (batch axis first)",
            )
        elif tensor.dims[0] is not None:
            report.fail(
                "batch-axis",
                f"{kind} {rule.name!r} has a fixed batch axis ({tensor.dims[0]}); export it "
                "dynamic so Triton can batch",
            )


def check_config(report: Report, folder: Path, tensors: dict[str, GraphTensor]) -> Any:
    """config.pbtxt names the graph's tensors with the same datatypes and (batch-less) dims."""
    report.checked.append("config")
    path = folder / "config.pbtxt"
    if not path.exists():
        report.fail(
            "config", "config.pbtxt is missing (`duet models check --write-config` writes one from the ONNX)"
        )
        return None
    try:
        config = model_config.load(path)
    except Exception as error:  # noqa: BLE001 - protobuf raises its own ParseError; any failure is the rule's
        report.fail("config", f"config.pbtxt does not parse: {error}")
        return None
    if config.name and config.name != folder.name:
        report.fail("config", f"config.pbtxt name {config.name!r} differs from its folder {folder.name!r}")
    for entry in list(config.input) + list(config.output):
        tensor = tensors.get(entry.name)
        if tensor is None:
            report.fail("config", f"config.pbtxt names {entry.name!r}, which the graph does not have")
            continue
        datatype = model_config.datatype_name(entry.data_type)
        wanted = CONFIG_TYPES.get(tensor.datatype)
        if wanted is not None and datatype != wanted:
            report.fail("config", f"config.pbtxt {entry.name!r} is {datatype}, the graph's is {wanted}")
        graph_dims = tensor.dims[1:] if config.max_batch_size > 0 else tensor.dims
        for position, (config_dim, graph_dim) in enumerate(zip(entry.dims, graph_dims)):
            if graph_dim is not None and config_dim not in (-1, graph_dim):
                report.fail(
                    "config",
                    f"config.pbtxt {entry.name!r} dims {list(entry.dims)} disagree with the "
                    f"graph's {list(graph_dims)} at axis {position}",
                )
    return config


def load_session(onnx_path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def check_declared(
    report: Report, folder: Path, onnx_path: Path, inputs: tuple[TensorRule, ...], outputs: tuple[TensorRule, ...]
) -> tuple[Any, dict[str, GraphTensor], dict[str, GraphTensor]] | None:
    """Load the model once and check what its graph declares against the contract's tensors and config.pbtxt;
    (session, inputs, outputs), or None when ONNX Runtime cannot load it."""
    try:
        session = load_session(onnx_path)
    except Exception as error:  # noqa: BLE001 - ONNX Runtime raises several types for one meaning
        report.fail("onnx-loads", f"ONNX Runtime cannot load {onnx_path.name}: {error}")
        return None
    declared_inputs, declared_outputs = declared_tensors(session)
    check_graph(report, declared_inputs, inputs, "input")
    check_graph(report, declared_outputs, outputs, "output")
    check_config(report, folder, {**declared_inputs, **declared_outputs})
    return session, declared_inputs, declared_outputs


def detector_inputs(folder: Path, image: GraphTensor, batch: int, seed: int) -> np.ndarray:
    """A batch at the contract's input shape: the model's own warmup image when it has one of that size,
    otherwise smooth random images in [0, 1] (a model must answer any valid input, not only a phantom)."""
    channels, height, width = (int(d) for d in image.dims[1:])
    warmup = folder / "warmup" / "image"
    if warmup.exists() and warmup.stat().st_size == height * width * 4:
        grey = np.fromfile(warmup, dtype="<f4").reshape(height, width)
    else:
        rng = np.random.default_rng(seed)
        grey = rng.random((height // 8 + 1, width // 8 + 1)).repeat(8, 0).repeat(8, 1)[:height, :width]
    pixels = np.repeat(np.clip(grey, 0.0, 1.0)[None, None], channels, axis=1)
    dtype = np.float16 if image.datatype == "FP16" else np.float32
    return np.repeat(pixels, batch, axis=0).astype(dtype)


def check_probability(report: Report, name: str, values: np.ndarray, rule: str) -> None:
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        report.fail(
            rule,
            f"{name} must be probabilities in [0, 1] (apply the sigmoid/softmax inside the graph), "
            f"got values in [{values.min():.3g}, {values.max():.3g}]",
        )


def check_detector_outputs(
    report: Report, outputs: dict[str, np.ndarray], batch: int, frame: tuple[int, int], class_count: int
) -> None:
    """What `findings.collect_findings` assumes of one batch of detector outputs."""
    report.checked.append(f"run-batch-{batch}")
    boxes, scores, classes = outputs["boxes"], outputs["scores"], outputs["classes"]
    if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[2] != 4:
        report.fail("shapes", f"boxes is {list(boxes.shape)} at batch {batch}; the contract is [B, K, 4]")
        return
    top_k = boxes.shape[1]
    for name, expected in (
        ("scores", [batch, top_k]),
        ("classes", [batch, top_k]),
        ("malignancy", [batch, 1]),
        ("quality", [batch, 1]),
    ):
        if list(outputs[name].shape) != expected:
            report.fail(
                "shapes",
                f"{name} is {list(outputs[name].shape)} at batch {batch}; the contract is "
                f"{expected} (K = {top_k} from boxes)",
            )
            return
    for name, values in outputs.items():
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            report.fail("finite", f"{name} holds NaN or infinity at batch {batch}")
            return
    check_probability(report, "scores", scores, "probabilities")
    check_probability(report, "quality", outputs["quality"], "probabilities")
    check_probability(report, "malignancy", outputs["malignancy"], "probabilities")
    if (np.diff(scores.astype(np.float64), axis=1) > 1e-6).any():
        report.fail(
            "scores-sorted", "scores must be sorted descending along K (pad unused slots with score 0)"
        )
    if ((classes < 0) | (classes >= max(class_count, 1))).any():
        report.fail(
            "class-ids",
            f"classes holds ids outside [0, {class_count}) although labels.txt names {class_count} classes",
        )
    height, width = frame
    live = scores > 0
    corners = boxes[live].astype(np.float64)
    if corners.size:
        inverted = (corners[:, 2] < corners[:, 0]) | (corners[:, 3] < corners[:, 1])
        outside = (
            (corners[:, [0, 2]] < -BOX_TOLERANCE_PX) | (corners[:, [0, 2]] > width + BOX_TOLERANCE_PX)
        ).any(1)
        outside |= (
            (corners[:, [1, 3]] < -BOX_TOLERANCE_PX) | (corners[:, [1, 3]] > height + BOX_TOLERANCE_PX)
        ).any(1)
        if inverted.any():
            report.fail(
                "boxes", "boxes must be (x_min, y_min, x_max, y_max) with x_max >= x_min, y_max >= y_min"
            )
        if outside.any():
            report.fail(
                "boxes",
                f"boxes must be in model-input pixels, inside the {width} x {height} frame; "
                f"{int(outside.sum())} scored boxes fall outside",
            )


def check_detector(report: Report, folder: Path, onnx_path: Path) -> None:
    labels = read_labels(report, folder)
    check_thresholds(report, folder)
    check_calibration(report, folder)
    declared = check_declared(report, folder, onnx_path, DETECTOR_INPUTS, DETECTOR_OUTPUTS)
    if declared is None:
        return
    session, inputs, _ = declared
    image = inputs.get("image")
    if image is None or len(image.dims) != 4 or any(d is None or d < 1 for d in image.dims[1:]):
        report.fail("input-geometry", "input 'image' must be [B, C, H, W] with fixed C, H and W")
        return
    if report.problems:
        return  # running a graph whose declared contract is already broken only adds noise
    names = [rule.name for rule in DETECTOR_OUTPUTS]
    for seed, batch in enumerate(CHECK_BATCHES):
        try:
            values = session.run(names, {"image": detector_inputs(folder, image, batch, seed)})
        except Exception as error:  # noqa: BLE001 - any runtime failure is the model's problem to report
            report.fail("runs", f"ONNX Runtime failed at batch {batch}: {error}")
            return
        check_detector_outputs(
            report, dict(zip(names, values)), batch, (int(image.dims[2]), int(image.dims[3])), len(labels)
        )


def check_text(report: Report, folder: Path, onnx_path: Path) -> None:
    labels = read_labels(report, folder)
    max_length = check_preprocess(report, folder)
    report.checked.append("tokenizer")
    tokenizer = None
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as error:  # noqa: BLE001 - a missing or unreadable file is one rule broken
        report.fail("tokenizer", f"tokenizer.json cannot be loaded by HF tokenizers: {error}")
    declared = check_declared(report, folder, onnx_path, TEXT_INPUTS, TEXT_OUTPUTS)
    if declared is None:
        return
    session, _, outputs = declared
    logits = outputs.get("logits")
    if logits is not None and len(logits.dims) == 2 and logits.dims[1] not in (None, len(labels)):
        report.fail("labels", f"logits has {logits.dims[1]} classes but labels.txt names {len(labels)}")
    if report.problems or tokenizer is None or not max_length:
        return
    texts = [
        "Markets rally as inflation cools",
        "Storm closes ports",
        "Council meets on Tuesday",
        "Shares slide",
    ]
    for batch in CHECK_BATCHES:
        report.checked.append(f"run-batch-{batch}")
        tokenizer.enable_truncation(max_length)
        tokenizer.enable_padding()
        encoded = tokenizer.encode_batch(texts[:batch])
        feed = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
        }
        try:
            (values,) = session.run(["logits"], feed)
        except Exception as error:  # noqa: BLE001
            report.fail("runs", f"ONNX Runtime failed at batch {batch}: {error}")
            return
        if list(values.shape) != [batch, len(labels)]:
            report.fail(
                "shapes",
                f"logits is {list(values.shape)} at batch {batch}; expected [{batch}, {len(labels)}]",
            )
        elif not np.isfinite(values).all():
            report.fail("finite", f"logits holds NaN or infinity at batch {batch}")


CHECKS: dict[str, Callable[[Report, Path, Path], None]] = {
    "mammography": check_detector,
    "sentiment": check_text,
}


def model_for_folder(folder: Path, name: str | None) -> registry.PublicModel:
    """The public model a folder serves: `name` when given, else the one whose Triton model is its name."""
    if name:
        return registry.model(name)
    for candidate in registry.MODELS.values():
        if candidate.triton_model == folder.name:
            return candidate
    known = ", ".join(f"{m.triton_model} ({m.name})" for m in registry.MODELS.values())
    raise KeyError(f"{folder.name!r} is not a Triton model duet serves ({known}); pass --model")


def check_folder(folder: Path, name: str | None = None) -> Report:
    """Check one model folder (`<repository>/<triton model>`) against its public model's contract."""
    public = model_for_folder(folder, name)
    report = Report(folder=folder, model=public.name)
    report.checked.append("layout")
    onnx_path = folder / "1" / "model.onnx"
    if not onnx_path.exists():
        report.fail(
            "layout",
            f"{onnx_path.relative_to(folder.parent)} is missing (the served file is "
            "<repository>/<triton model>/1/model.onnx)",
        )
        return report
    CHECKS[public.name](report, folder, onnx_path)
    return report


def folders_under(path: Path) -> Iterator[Path]:
    """`path` itself when it is a model folder, else every model folder of the repository at `path`."""
    if (path / "1").is_dir() or (path / "config.pbtxt").exists():
        yield path
        return
    for candidate in sorted(path.iterdir()):
        if candidate.is_dir() and ((candidate / "1").is_dir() or (candidate / "config.pbtxt").exists()):
            yield candidate


def write_config(folder: Path, name: str | None = None) -> Path:
    """Write `config.pbtxt` for a ready-made ONNX (no build package): the shipped model's batching, instance
    and warmup settings, with the tensor names, datatypes and dims read from the ONNX graph. The warmup is
    kept only when the folder has a `warmup/` file of the new input's size (Triton refuses a load whose
    warmup is wrong)."""
    from duet.paths import MODEL_REPOSITORY

    public = model_for_folder(folder, name)
    template = model_config.load(MODEL_REPOSITORY / public.triton_model / "config.pbtxt")
    inputs, outputs = declared_tensors(load_session(folder / "1" / "model.onnx"))
    declared = {**inputs, **outputs}
    template.name = folder.name
    batched = template.max_batch_size > 0
    for entry in list(template.input) + list(template.output):
        tensor = declared.get(entry.name)
        if tensor is None:
            raise ValueError(
                f"the ONNX graph has no tensor {entry.name!r}; `duet models check` says what is wrong"
            )
        if tensor.datatype in CONFIG_TYPES:
            entry.data_type = model_config.datatype_value(CONFIG_TYPES[tensor.datatype])
        dims = tensor.dims[1:] if batched else tensor.dims
        del entry.dims[:]
        entry.dims.extend(-1 if d is None else d for d in dims)
    keep_warmup = True
    for warmup in template.model_warmup:
        for input_name, data in warmup.inputs.items():
            tensor = declared.get(input_name)
            source = folder / "warmup" / data.input_data_file
            element_bytes = 2 if tensor is not None and tensor.datatype == "FP16" else 4
            size = int(np.prod([d or 0 for d in (tensor.dims[1:] if tensor else ())])) * element_bytes
            if tensor is None or not source.exists() or source.stat().st_size != size:
                keep_warmup = False
            else:
                data.data_type = model_config.datatype_value(CONFIG_TYPES[tensor.datatype])
                del data.dims[:]
                data.dims.extend(int(d) for d in tensor.dims[1:])
    if not keep_warmup:
        template.ClearField("model_warmup")
    target = folder / "config.pbtxt"
    target.write_text(model_config.dump(template))
    return target
