"""The project's own CI workflow, hooks and checks stay valid and call what our CI calls."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
HOOKS = REPO / ".pre-commit-config.yaml"


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed (it is in the test extra)"
    return found


def test_the_github_workflow_is_valid_and_runs_ci_run_on_pushes_and_pull_requests():
    done = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert set(workflow[True]) == {"push", "pull_request"}  # YAML 1.1 reads "on" as True
    steps = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert "bash .ci/run" in steps


def test_a_workflow_with_an_unknown_key_is_rejected(tmp_path):
    broken = tmp_path / "ci.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "runs_on:"))
    done = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0


def test_the_pre_commit_hooks_are_valid_and_lint_format_and_type_check():
    done = subprocess.run(
        [tool("pre-commit"), "validate-config", str(HOOKS)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    hooks = {h["id"] for repo in yaml.safe_load(HOOKS.read_text())["repos"] for h in repo["hooks"]}
    assert {"ruff-check", "ruff-format", "mypy"} <= hooks


def test_ci_runs_the_same_checks_as_the_hooks():
    ci = (REPO / ".ci" / "run").read_text()
    for check in (".venv/bin/ruff check .", ".venv/bin/ruff format --check .", ".venv/bin/mypy"):
        assert check in ci.splitlines()
