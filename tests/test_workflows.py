"""The GitHub workflows cannot run here: check that they parse, call only Makefile targets, and
that every link to the repository comes from _config.yml."""
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.M))


def steps(workflow: dict) -> list[dict]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def test_there_is_a_test_and_a_book_workflow():
    assert {w.stem for w in WORKFLOWS} == {"test", "book"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_a_workflow_parses_and_calls_only_make_targets_that_exist(path):
    workflow = yaml.safe_load(path.read_text())
    assert workflow["jobs"], f"{path.name} has no jobs"
    commands = [s["run"] for s in steps(workflow) if "run" in s]
    assert commands, f"{path.name} runs nothing"
    for command in commands:
        target = re.fullmatch(r"make (\S+)", command.strip())
        assert target, f"{path.name}: {command!r} is not a single make target"
        assert target.group(1) in makefile_targets(), f"{path.name}: no Makefile target {command!r}"


def test_the_test_workflow_runs_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    workflow = yaml.safe_load((ROOT / ".github/workflows/test.yml").read_text())
    assert [s["run"] for s in steps(workflow) if "run" in s] == ["make test"]
    assert "make test" in readme


def test_the_book_workflow_publishes_the_built_html():
    workflow = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    uploads = [s for s in steps(workflow) if "upload-pages-artifact" in s.get("uses", "")]
    assert uploads and uploads[0]["with"]["path"] == "_build/html"
    assert any("deploy-pages" in s.get("uses", "") for s in steps(workflow))


def test_every_install_cell_installs_the_repository_of_config_yml():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    found = 0
    for notebook in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            source = "".join(cell["source"])
            for link in re.findall(r"git\+(https://github\.com/[^\"'\s@]+)", source):
                found += 1
                assert link == url, f"{notebook.name} installs from {link}, _config.yml says {url}"
    assert found, "no chapter has an install cell"
