"""pyproject.toml's ``[project]`` table repeats requirements.in, the list edited by hand."""

import tomllib
from pathlib import Path

from support.settings import ROOT


def requirements(path):
    """The requirements a pip requirements file lists, in order, without comments."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_the_projects_dependencies_are_the_lines_of_requirements_in():
    project = tomllib.loads((Path(ROOT) / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == requirements(Path(ROOT) / "requirements.in")
