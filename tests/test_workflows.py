"""Checks of the delivery files: the GitHub workflows, the Dockerfile and .dockerignore.

Consumes ``.github/workflows/{ci,deploy}.yml``, ``Dockerfile``, ``.dockerignore`` and ``.ci/actionlint.sh``;
runs ``actionlint`` (with ``shellcheck`` for ``run:`` scripts) when installed -- ``bash .ci/actionlint.sh
install`` puts it in ``.local/bin``. Locally a missing tool skips; with ``CI=true`` the test runs that
install itself and fails if the tool is still missing.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
DEPLOY = WORKFLOWS / "deploy.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ACTIONLINT_SH = ROOT / ".ci" / "actionlint.sh"
DEPLOY_ORDER = ["test", "build", "push", "deploy"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    local = ROOT / ".local" / "bin" / name
    return str(local) if local.is_file() and os.access(local, os.X_OK) else None


def _require(name: str) -> str:
    path = _tool(name)
    if path is None and _in_ci():
        # CI must lint for real: provision via the same script developers use (Go module proxy / apt).
        subprocess.run(["bash", str(ACTIONLINT_SH), "install"], cwd=ROOT, check=False, timeout=600)
        path = _tool(name)
    if path is None:
        message = f"{name} not installed (run: bash .ci/actionlint.sh install)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def _load(path: Path) -> dict[Any, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path} is not a mapping"
    return doc


def _triggers(doc: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as boolean True.
    raw = doc.get("on", doc.get(True))
    if isinstance(raw, str):
        return {raw: None}
    if isinstance(raw, list):
        return dict.fromkeys(raw)
    assert isinstance(raw, dict)
    return raw


def _needs(job: dict[str, Any]) -> list[str]:
    raw = job.get("needs", [])
    return [raw] if isinstance(raw, str) else list(raw)


def _topological(jobs: dict[str, dict[str, Any]]) -> list[str]:
    order: list[str] = []
    pending = dict(jobs)
    while pending:
        ready = sorted(name for name, job in pending.items() if set(_needs(job)) <= set(order))
        assert ready, f"dependency cycle among {sorted(pending)}"
        order.extend(ready)
        for name in ready:
            del pending[name]
    return order


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job.get("steps", [])]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def _dockerfile_stages() -> list[list[Instruction]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[Instruction]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, args = stripped.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _dockerfile_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"ARG\s+(\w+)=(\S+)", line.strip())
        if match:
            args[match.group(1)] = match.group(2)
    return args


# ---- actionlint -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workflow", [CI, DEPLOY], ids=lambda p: p.name)
def test_actionlint_workflow_reports_no_findings(workflow: Path) -> None:
    actionlint = _require("actionlint")
    cmd = [actionlint, "-no-color"]
    shellcheck = _tool("shellcheck")
    if _in_ci():
        shellcheck = _require("shellcheck")
    cmd += ["-shellcheck", shellcheck or ""]
    result = subprocess.run([*cmd, str(workflow)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_script_shellcheck_is_clean() -> None:
    shellcheck = _require("shellcheck")
    result = subprocess.run([shellcheck, str(ACTIONLINT_SH)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


# ---- deploy.yml -------------------------------------------------------------------------------------------


def test_deploy_jobs_needs_chain_is_test_build_push_deploy() -> None:
    jobs = _load(DEPLOY)["jobs"]
    assert set(jobs) == set(DEPLOY_ORDER)
    assert _needs(jobs["test"]) == []
    for before, after in itertools.pairwise(DEPLOY_ORDER):
        assert _needs(jobs[after]) == [before], f"{after} must need exactly {before}"
    assert _topological(jobs) == DEPLOY_ORDER


def test_deploy_triggers_main_push_and_dispatch_offer_three_providers() -> None:
    triggers = _triggers(_load(DEPLOY))
    assert triggers["push"]["branches"] == ["main"]
    inputs = triggers["workflow_dispatch"]["inputs"]
    assert inputs["provider"]["type"] == "choice"
    assert inputs["provider"]["options"] == ["aks", "gke", "oke"]
    assert "registry" in inputs


def test_deploy_image_tag_is_commit_sha() -> None:
    doc = _load(DEPLOY)
    assert doc["env"]["IMAGE_TAG"] == "${{ github.sha }}"
    build = doc["jobs"]["build"]["steps"]
    build_step = next(
        step for step in build if str(step.get("uses", "")).startswith("docker/build-push-action")
    )
    assert "IMAGE_TAG" in build_step["with"]["tags"]


def test_deploy_cloud_logins_each_gated_on_their_provider() -> None:
    steps = _load(DEPLOY)["jobs"]["deploy"]["steps"]
    expected = {
        "azure/login": "aks",
        "azure/aks-set-context": "aks",
        "google-github-actions/auth": "gke",
        "google-github-actions/get-gke-credentials": "gke",
    }
    seen: dict[str, str] = {}
    for step in steps:
        action = str(step.get("uses", "")).split("@")[0]
        if action in expected:
            seen[action] = step["if"]
    assert seen == {action: f"env.PROVIDER == '{provider}'" for action, provider in expected.items()}
    oke = [step for step in steps if step.get("if") == "env.PROVIDER == 'oke'"]
    assert oke and "oci ce cluster create-kubeconfig" in oke[0]["run"]


def test_deploy_steps_apply_wait_smoke_and_rollback_on_failure() -> None:
    steps = _load(DEPLOY)["jobs"]["deploy"]["steps"]
    scripts = "\n".join(str(step.get("run", "")) for step in steps)
    for fragment in (
        "kustomize edit set image",
        'kubectl apply -k "${OVERLAY}"',
        "kubectl apply -k dapr/",
        "kubectl apply -k eventing/kafka",
        "kubectl apply -k eventing/",
        "kubectl wait ksvc --all",
        "--for=condition=Ready --timeout=300s",
        "kubectl get ksvc tasktide-api",
        "/healthz",
        "/readyz",
        "SMOKE_TOKEN",
    ):
        assert fragment in scripts, fragment
    names = [str(step.get("name", "")) for step in steps]
    record, smoke = names.index("set image and record current revisions"), names.index("smoke test")
    rollback_index = next(i for i, name in enumerate(names) if name.startswith("roll back"))
    rollback = steps[rollback_index]
    assert record < smoke < rollback_index
    assert rollback["if"] == "failure() && steps.record.outcome == 'success'"
    assert "kubectl patch ksvc" in rollback["run"]
    assert "previous-traffic.txt" in rollback["run"]


# ---- ci.yml -----------------------------------------------------------------------------------------------


def test_ci_triggers_push_pull_request_and_workflow_call() -> None:
    triggers = _triggers(_load(CI))
    assert {"push", "pull_request", "workflow_call"} <= set(triggers)


def test_ci_jobs_cover_lint_test_manifests_actionlint() -> None:
    assert set(_load(CI)["jobs"]) == {"lint", "test", "manifests", "actionlint"}


def test_ci_test_job_uses_service_containers_instead_of_provisioning() -> None:
    job = _load(CI)["jobs"]["test"]
    assert job["services"]["postgres"]["image"] == "postgres:16"
    assert job["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert job["env"]["TASKTIDE_TEST_DATABASE_URL"].endswith("@localhost:5432/tasktide")
    assert job["env"]["TASKTIDE_TEST_KAFKA"] == "localhost:9092"
    assert any("make test" in str(step.get("run", "")) for step in job["steps"])


def test_ci_manifests_job_validates_with_crd_catalog() -> None:
    job = _load(CI)["jobs"]["manifests"]
    scripts = "\n".join(str(step.get("run", "")) for step in job["steps"])
    assert "-schema-location default" in scripts
    assert "datreeio/CRDs-catalog" in job["env"]["CRD_SCHEMAS"]
    for target in ("knative/overlays/prod", "eventing", "dapr"):
        assert f"render {target} " in scripts


# ---- both workflows ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("workflow", [CI, DEPLOY], ids=lambda p: p.name)
def test_workflow_actions_pinned_to_major_version(workflow: Path) -> None:
    for step in _steps(_load(workflow)):
        uses = step.get("uses")
        if uses is None or str(uses).startswith("./"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", str(uses)), f"{uses} is not pinned to a major version"


@pytest.mark.parametrize("workflow", [CI, DEPLOY], ids=lambda p: p.name)
def test_workflow_permissions_default_read_only(workflow: Path) -> None:
    doc = _load(workflow)
    assert doc["permissions"] == {"contents": "read"}
    for name, job in doc["jobs"].items():
        permissions = job.get("permissions", {})
        assert permissions not in ("write-all", "read-all"), name
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert writes <= {"packages", "id-token"}, f"{name} asks for {sorted(writes)}"


# ---- Dockerfile -------------------------------------------------------------------------------------------


def test_dockerfile_final_stage_is_slim_nonroot_with_serve_entrypoint() -> None:
    stages = _dockerfile_stages()
    assert len(stages) >= 2, "expected a multi-stage build"
    base_images = _dockerfile_args()
    for stage in stages:
        image = stage[0].args.split()[0]
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: base_images.get(m.group(1), m.group(0)), image)
        assert resolved == "python:3.11-slim"
    final = stages[-1]
    by_keyword = {i.keyword: i.args for i in final}
    assert by_keyword["USER"].split(":")[0] == "10001"
    assert json.loads(by_keyword["ENTRYPOINT"]) == ["tasktide", "serve"]
    assert by_keyword["EXPOSE"] == "8080"
    assert "HEALTHCHECK" not in by_keyword


def test_dockerfile_final_stage_has_no_build_tools_or_multiproc_dir() -> None:
    final = _dockerfile_stages()[-1]
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    for tool in ("apt-get", "gcc", "build-essential", "pip install"):
        assert tool not in runs, tool
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PROMETHEUS_MULTIPROC_DIR" not in env
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_dockerignore_allows_exactly_what_the_build_copies() -> None:
    lines = [
        ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied: set[str] = set()
    for stage in _dockerfile_stages():
        for instruction in stage:
            if instruction.keyword == "COPY" and not instruction.args.startswith("--from"):
                copied.update(instruction.args.split()[:-1])
    assert copied == allowed
