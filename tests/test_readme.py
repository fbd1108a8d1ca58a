"""README's Python examples run and its set-up commands are the ones CI runs."""

import importlib.util
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_python_examples_run():
    blocks = python_blocks()
    assert blocks, "README has no Python example"
    for code in blocks:
        if "mlpgrad.sklearn" in code and importlib.util.find_spec("sklearn") is None:
            continue  # needs the sklearn extra: .ci/run runs this test again with it installed
        exec(compile(code, str(README), "exec"), {})  # noqa: S102 - our own documentation


def test_readme_shows_the_two_setup_commands():
    text = README.read_text(encoding="utf-8")
    assert "pip install . && python -m mlpgrad demo" in text
    assert 'pip install ".[test]" && python -m pytest' in text
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install . && python -m mlpgrad demo" in ci
    assert 'pip install ".[test]" && python -m pytest' in ci


def test_readme_refers_only_to_files_in_the_repository():
    """Every `path/with/slashes` README quotes exists here: the project refers to nothing outside itself."""
    root = README.parent
    text = README.read_text(encoding="utf-8")
    paths = re.findall(r"`([\w.][\w./-]*/[\w./-]*)`", text)
    assert "tests/test_fuzz.py" in paths  # the pattern finds README's paths
    # build/ is the build tree pip makes (pyproject's build-dir): named by README, present only after a build.
    made_by_the_build = {"build/"}
    missing = [p for p in paths if ".." in p.split("/") or not ((root / p).exists() or p in made_by_the_build)]
    assert missing == []
