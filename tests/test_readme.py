"""The README is the front door: its library example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "README has no python example"
    for block in blocks:
        # As a user runs it: a module of its own, without this file's __future__ imports.
        code = compile(block, str(README), "exec", dont_inherit=True)
        exec(code, {"__name__": "readme_example"})


def test_readme_names_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make run" in text and "make test" in text
