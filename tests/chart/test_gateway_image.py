"""gateway/Dockerfile (no Docker here, so it is checked statically, with the helpers of test_images.py): every
path it copies exists and survives .dockerignore, it installs the base dependencies plus the `gateway` extra,
every module the gateway imports (following its imports through duet's own modules) is copied or installed, its
entry point is the real module, and its user and spool directory are the ones the chart's security context and
volume expect."""

from __future__ import annotations

import sys
from importlib import metadata

import pytest
import yaml
from chart_support import CHART, REPO
from packaging.requirements import Requirement
from test_images import absolute_imports, closure, copy_sources, dockerignore_excludes, instructions, provided

GATEWAY_DOCKERFILE = REPO / "gateway" / "Dockerfile"
tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def test_every_copied_path_exists_and_is_in_the_build_context():
    sources = copy_sources(GATEWAY_DOCKERFILE)
    assert sources[:2] == ["pyproject.toml", "gateway/"]
    for source in sources:
        assert (REPO / source).exists(), f"gateway/Dockerfile copies missing {source}"
        assert not dockerignore_excludes(source), f".dockerignore drops {source}"
    assert dockerignore_excludes("gateway/__pycache__/app.cpython-311.pyc")


def test_entry_point_is_python_dash_m_gateway():
    entry = [args for keyword, args in instructions(GATEWAY_DOCKERFILE) if keyword == "ENTRYPOINT"]
    assert entry == ['["python", "-m", "gateway"]']
    if not (REPO / "gateway" / "__init__.py").is_file():
        pytest.skip("the gateway package is not in this checkout")
    assert (REPO / "gateway" / "__main__.py").is_file()


def test_image_runs_as_the_user_the_chart_expects_and_owns_the_spool():
    ctx = VALUES["gateway"]["securityContext"]
    users = [args for keyword, args in instructions(GATEWAY_DOCKERFILE) if keyword == "USER"]
    assert users == [f"{ctx['runAsUser']}:{ctx['runAsGroup']}"] == ["1000:1000"]
    assert VALUES["gateway"]["podSecurityContext"]["fsGroup"] == ctx["runAsGroup"]
    env = " ".join(args for keyword, args in instructions(GATEWAY_DOCKERFILE) if keyword == "ENV")
    assert "DUET_GATEWAY_SPOOL_DIR=/var/lib/duet-gateway" in env
    run = " ".join(args for keyword, args in instructions(GATEWAY_DOCKERFILE) if keyword == "RUN")
    assert "install -d -o 1000 -g 1000" in run and "/var/lib/duet-gateway" in run


def test_exposed_ports_are_the_chart_defaults():
    (exposed,) = [args for keyword, args in instructions(GATEWAY_DOCKERFILE) if keyword == "EXPOSE"]
    gateway = VALUES["gateway"]
    assert set(map(int, exposed.split())) == {gateway["dimsePort"], gateway["tls"]["port"], gateway["httpPort"]}


def gateway_requirements() -> list[Requirement]:
    """What the gateway image installs: pyproject's base dependencies plus the `gateway` extra."""
    assert "p['dependencies'] + p['optional-dependencies']['gateway']" in GATEWAY_DOCKERFILE.read_text()
    project = PYPROJECT["project"]
    extra = project.get("optional-dependencies", {}).get("gateway")
    if extra is None:
        pytest.skip("pyproject.toml has no `gateway` extra in this checkout")
    return [Requirement(r) for r in project["dependencies"] + extra]


FIRST_PARTY = {"gateway", "duet", "transformers_pre"}


def copied_into_image(relative: str) -> bool:
    """Whether a repository file is in the image: a COPY names it or a folder above it."""
    return any(relative == source or (source.endswith("/") and relative.startswith(source))
               for source in copy_sources(GATEWAY_DOCKERFILE))


def module_files(module: str) -> list[str]:
    """Repository files a first-party import needs: the module and every package __init__ above it."""
    parts = module.split(".")
    files = [f"{'/'.join(parts[:i])}/__init__.py" for i in range(1, len(parts))]
    as_file = f"{'/'.join(parts)}.py"
    files.append(as_file if (REPO / as_file).is_file() else f"{'/'.join(parts)}/__init__.py")
    return files


def test_every_module_the_gateway_imports_is_in_the_image():
    """Follows the gateway's imports through the first-party modules it uses (duet.v2, ...): each of those
    files must be copied, and every third-party package any of them imports must be installed."""
    todo = [str(p.relative_to(REPO)) for p in (REPO / "gateway").rglob("*.py")]
    if not todo:
        pytest.skip("the gateway package is not in this checkout")
    installed = closure(gateway_requirements())
    providers = metadata.packages_distributions()
    missing, seen = set(), set()
    while todo:
        relative = todo.pop()
        if relative in seen:
            continue
        seen.add(relative)
        if not copied_into_image(relative):
            missing.add(f"{relative} (not copied)")
            continue
        for module in absolute_imports(REPO / relative):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names:
                continue
            if top in FIRST_PARTY:
                todo += module_files(module)
            elif not provided(top, installed, providers):
                missing.add(f"{top} ({relative})")
    assert not missing, f"the gateway needs what its image lacks: {sorted(missing)}"


def test_gateway_image_has_no_torch_onnxruntime_or_triton():
    names = closure(gateway_requirements())
    # tritonclient (its HTTP client builds the v2 requests) is welcome; the server side and the frameworks not.
    for heavy in ("torch", "onnxruntime", "onnxruntime-gpu", "nvidia-pytriton", "opencv-python-headless"):
        assert heavy not in names, f"the gateway image would install {heavy}"
