"""The README's Python API example runs as written (doctest) on the test store."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_examples() -> list[str]:
    """The ```pycon blocks of the README."""
    return re.findall(r"```pycon\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_python_api_example_runs(tiny_store, tiny_checkpoint):
    (example,) = readme_examples()
    globs = {"STORE": str(tiny_store), "CHECKPOINT": str(tiny_checkpoint)}
    test = doctest.DocTestParser().get_doctest(example, globs, "README.md", "README.md", 0)
    assert len(test.examples) >= 10
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
