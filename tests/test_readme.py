"""The README's quick start stays true: CI runs its test command verbatim."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_quick_start_is_two_commands_install_and_run_then_install_and_test():
    install_and_run, install_and_test = quick_start_commands()
    assert "pip install -e ." in install_and_run
    assert install_and_run.endswith("python sweeps/ppo_lr_entropy.py")
    assert "pytest" in install_and_test


def test_ci_runs_the_readme_test_command_verbatim():
    _, install_and_test = quick_start_commands()
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert install_and_test in ci_lines
