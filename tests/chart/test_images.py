"""The two Dockerfiles (no Docker here, so they are checked statically): every path they COPY exists and survives
.dockerignore, the transformer's entry point is the real module and starts, its image installs the `serve`
dependencies and nothing heavy, every package the transformer code imports is among them, and the users match
the chart's security context."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, REPO
from packaging.requirements import Requirement

TRANSFORMER_DOCKERFILE = REPO / "transformers_pre" / "Dockerfile"
MODEL_DOCKERFILE = REPO / "models" / "Dockerfile"
tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def copy_sources(dockerfile: Path) -> list[str]:
    """Build-context paths of every COPY (COPY --from=<stage> copies from a stage, not the context)."""
    sources = []
    for keyword, args in instructions(dockerfile):
        if keyword == "COPY" and "--from=" not in args:
            parts = [p for p in args.split() if not p.startswith("--")]
            sources += parts[:-1]
    return sources


def glob_regex(pattern: str) -> str:
    """A .dockerignore glob as a regex: `**` spans directories, `*` and `?` stay within one."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def dockerignore_excludes(path: str) -> bool:
    """Docker's .dockerignore rules: the last matching pattern wins; a pattern matching a parent directory
    matches everything below it; `!` re-includes."""
    excluded = False
    parts = Path(path.rstrip("/")).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        regex = glob_regex(pattern.lstrip("!").rstrip("/"))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


@pytest.mark.parametrize("dockerfile", [TRANSFORMER_DOCKERFILE, MODEL_DOCKERFILE], ids=["transformer", "models"])
def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile):
    sources = copy_sources(dockerfile)
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"{dockerfile.name} copies missing {source}"
        assert not dockerignore_excludes(source), f".dockerignore drops {source}"


def test_dockerignore_keeps_the_context_small():
    for heavy in (".venv/bin/python", ".git/HEAD", ".duet/tools/helm", "tests/chart/conftest.py",
                  "models/detector/train.py", "transformers_pre/__pycache__/x.pyc"):
        assert dockerignore_excludes(heavy), heavy
    for needed in ("pyproject.toml", "transformers_pre/dicom/decode.py",
                   "models/model_repository/sentiment/1/model.onnx"):
        assert not dockerignore_excludes(needed), needed


@pytest.fixture(scope="module")
def entry_point_help() -> str:
    """`python -m transformers_pre --help`, the image's entry point, run for real."""
    proc = subprocess.run([sys.executable, "-m", "transformers_pre", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_transformer_entry_point_is_the_real_module_and_starts(entry_point_help):
    entry = [args for keyword, args in instructions(TRANSFORMER_DOCKERFILE) if keyword == "ENTRYPOINT"]
    assert entry == ['["python", "-m", "transformers_pre"]']
    assert (REPO / "transformers_pre" / "__main__.py").is_file()
    for flag in ("--model", "--predictor_host", "--predictor_protocol", "--http_port", "--grpc_port",
                 "--model_name", "--workers", "--enable_predictor_health_check"):
        assert flag in entry_point_help, f"the chart passes {flag}, the entry point does not take it"


def test_chart_passes_only_flags_the_entry_point_takes(render, entry_point_help):
    isvc = next(o for o in render() if o["kind"] == "InferenceService")
    for arg in isvc["spec"]["transformer"]["containers"][0]["args"]:
        assert arg.split("=", 1)[0] in entry_point_help, arg


def image_requirements() -> list[Requirement]:
    """What the transformer image installs: pyproject's base dependencies plus the `serve` extra (the
    Dockerfile reads exactly these two lists)."""
    text = TRANSFORMER_DOCKERFILE.read_text()
    assert "p['dependencies'] + p['optional-dependencies']['serve']" in text
    project = PYPROJECT["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["serve"]]


def closure(requirements: list[Requirement]) -> set[str]:
    """Installed distributions reachable from `requirements` (normalised names), following their own
    requirements whose markers hold without extras."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-").replace(".", "-")
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in metadata.requires(req.name) or []]
        except metadata.PackageNotFoundError:
            continue
    return seen


def test_transformer_image_has_no_torch_onnxruntime_or_triton():
    names = closure(image_requirements())
    for heavy in ("torch", "onnxruntime", "onnxruntime-gpu", "nvidia-pytriton", "tritonclient", "locust"):
        assert heavy not in names, f"the transformer image would install {heavy}"


def absolute_imports(source: Path) -> list[str]:
    """The modules a source file imports by absolute name (relative imports stay inside its package)."""
    modules = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
    return modules


def provided(top: str, installed: set[str], providers: dict[str, list[str]]) -> bool:
    """Whether top-level module `top` comes from one of the `installed` distributions."""
    return bool({d.lower().replace("_", "-").replace(".", "-") for d in providers.get(top, [])} & installed)


def test_every_package_the_transformer_imports_is_in_the_image():
    installed = closure(image_requirements())
    providers = metadata.packages_distributions()
    missing = set()
    for source in (REPO / "transformers_pre").rglob("*.py"):
        for module in absolute_imports(source):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "transformers_pre":
                continue
            if not provided(top, installed, providers):
                missing.add(f"{top} ({source.relative_to(REPO)})")
    assert not missing, f"imported by transformers_pre but not installed in its image: {sorted(missing)}"


def test_images_run_as_the_non_root_users_the_chart_expects():
    users = [args for keyword, args in instructions(TRANSFORMER_DOCKERFILE) if keyword == "USER"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    ctx = values["transformer"]["securityContext"]
    assert users == [f"{ctx['runAsUser']}:{ctx['runAsGroup']}"]
    model_users = [args for keyword, args in instructions(MODEL_DOCKERFILE) if keyword == "USER"]
    assert model_users and not model_users[-1].startswith("0")


def test_model_image_puts_the_repository_where_kserve_modelcar_looks():
    copies = [args for keyword, args in instructions(MODEL_DOCKERFILE) if keyword == "COPY"]
    assert copies == ["models/model_repository/ /models/"]
    base = next(args for keyword, args in instructions(MODEL_DOCKERFILE) if keyword == "FROM")
    assert base.startswith("busybox:"), "modelcar needs a shell and sleep in the image"
    for model in ("mammo_detector", "sentiment"):
        assert (REPO / "models" / "model_repository" / model / "config.pbtxt").is_file()


def test_transformer_image_has_what_the_dev_hot_reload_runs(render):
    """The dev profile runs `python -m watchfiles` and `sh` inside the transformer image."""
    isvc = next(o for o in render([CHART / "ci" / "dev-values.yaml"]) if o["kind"] == "InferenceService")
    command = " ".join(isvc["spec"]["transformer"]["containers"][0]["command"])
    assert command.startswith("sh -c exec python -m watchfiles")
    assert "watchfiles" in closure(image_requirements())
    base = next(args for keyword, args in instructions(TRANSFORMER_DOCKERFILE) if keyword == "FROM")
    assert "-slim" in base, "a Debian slim base has /bin/sh; distroless would not"
