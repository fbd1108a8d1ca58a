"""README's Python examples run and its set-up commands are the ones CI runs."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_python_examples_run():
    blocks = python_blocks()
    assert blocks, "README has no Python example"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {})  # noqa: S102 - our own documentation


def test_readme_shows_the_two_setup_commands():
    text = README.read_text(encoding="utf-8")
    assert "pip install . && python -m mlpgrad demo" in text
    assert 'pip install ".[test]" && python -m pytest' in text
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install . && python -m mlpgrad demo" in ci
    assert 'pip install ".[test]" && python -m pytest' in ci
