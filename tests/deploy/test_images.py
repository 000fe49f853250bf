"""The two Dockerfiles: hadolint-clean, and built the way the operator's pods expect.

No Docker engine runs here: the images are not built by these tests. What can be checked
statically is: the linter, the stages, the user the pods run as (the operator's builders set
``runAsUser`` 10001), the entrypoints, the torch pin (the same as the ``train`` extra's), and
that the build context (.dockerignore) holds every file a COPY names.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from fedcare_operator.builders import RUN_AS
from tests.deploy.conftest import REPO, tool

OPERATOR = REPO / "Dockerfile"
RUNTIME = REPO / "trainer-image" / "Dockerfile"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _final_stage(path: Path) -> list[tuple[str, str]]:
    instructions = _instructions(path)
    last = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last:]


@pytest.mark.parametrize("dockerfile", [OPERATOR, RUNTIME], ids=["operator", "runtime"])
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--format", "json", "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert result.returncode == 0 and findings == [], json.dumps(findings, indent=1)


@pytest.mark.parametrize("dockerfile", [OPERATOR, RUNTIME], ids=["operator", "runtime"])
def test_multi_stage_slim_non_root(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build"), froms
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", args["PYTHON_IMAGE"])
    final = _final_stage(dockerfile)
    users = [rest for word, rest in final if word == "USER"]
    assert users == [f"{RUN_AS}:{RUN_AS}"], "a numeric non-root user (the pods' runAsUser)"
    assert any(
        word == "RUN" and f"--uid {RUN_AS}" in rest and f"--gid {RUN_AS}" in rest
        for word, rest in final
    )
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"], "only the built environment"
    text = dockerfile.read_text()
    assert "[dev]" not in text and ",dev" not in text and "dev," not in text


def test_the_operator_image_runs_kopf() -> None:
    final = dict(_final_stage(OPERATOR))
    assert json.loads(final["ENTRYPOINT"]) == ["kopf", "run", "-m", "fedcare_operator"]
    cmd = json.loads(final["CMD"])
    assert "--all-namespaces" in cmd and "--standalone" in cmd
    assert "--liveness=http://0.0.0.0:8080/healthz" in cmd
    build = " ".join(rest for word, rest in _instructions(OPERATOR) if word == "RUN")
    assert "pip wheel" in build and "./trainer-image ./operator" in build
    assert "torch" not in build  # the operator needs fedcare's spec models, not its training


def test_the_runtime_image_has_cuda_torch_pinned_and_the_fedcare_entrypoint() -> None:
    instructions = _instructions(RUNTIME)
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    extras = tomllib.loads((REPO / "trainer-image" / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert f"torch=={args['TORCH_VERSION']}" in extras["train"], "the image pins the extra's torch"
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu12\d", args["TORCH_INDEX_URL"])
    build = " ".join(rest for word, rest in instructions if word == "RUN")
    assert '--index-url "${TORCH_INDEX_URL}"' in build
    assert '"torch==${TORCH_VERSION}"' in build
    assert "fedcare[train,he,s3]" in build
    final = dict(_final_stage(RUNTIME))
    assert json.loads(final["ENTRYPOINT"]) == ["fedcare"]
    assert set(final["EXPOSE"].split()) == {"50051", "50052", "8080"}
    assert final["WORKDIR"] == "/var/lib/fedcare"


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics (last matching pattern wins; ! re-includes)."""
    ignored = False
    parts = relative.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        matched = any(
            fnmatch.fnmatchcase(c, pat) or fnmatch.fnmatchcase(c, pat.replace("**/", ""))
            for c in candidates
        )
        if pat.startswith("**/"):
            matched = matched or any(fnmatch.fnmatchcase(p, pat[3:]) for p in parts)
        if matched:
            ignored = not negate
    return ignored


def test_the_build_context_holds_what_the_dockerfiles_copy_and_nothing_generated() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for dockerfile in (OPERATOR, RUNTIME):
        for word, rest in _instructions(dockerfile):
            if word != "COPY" or rest.startswith("--from"):
                continue
            *sources, _dest = rest.split()
            for source in sources:
                path = REPO / source
                assert path.exists(), source
                files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
                assert files, source
                for file in files:
                    rel = file.relative_to(REPO).as_posix()
                    assert not _ignored(rel, patterns), f"{rel} is excluded from the context"
    for excluded in (
        "data/site-1.csv",
        "tests/conftest.py",
        ".venv/bin/python",
        "trainer-image/src/fedcare/__pycache__/cli.cpython-311.pyc",
        "trainer-image/src/fedcare.egg-info/PKG-INFO",
        "README.md",
    ):
        assert _ignored(excluded, patterns), excluded
