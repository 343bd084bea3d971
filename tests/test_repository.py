"""The repository stands alone: nothing in it points at documents outside it."""

import subprocess

import pytest

from support.settings import ROOT

pytestmark = pytest.mark.system

OUTSIDE = "../" + "shared"  # spelled in two parts, so this file does not match itself


def test_no_file_refers_to_documents_outside_the_repository():
    found = subprocess.run(
        ["git", "grep", "-n", "--fixed-strings", OUTSIDE],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 1, found.stdout  # git grep: 1 means no match
