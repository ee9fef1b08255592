"""The README's Python example runs as it is written, from the repository's root."""

from __future__ import annotations

import os
import re

from conftest import ROOT


def test_the_readme_example_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- python-example -->\n```python\n(.*?)```\n<!-- /python-example -->", readme, re.S)
    assert block, "the README has no marked Python example"
    here = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(compile(block.group(1), str(ROOT / "README.md"), "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(here)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("3 [")
    assert re.fullmatch(r"loss \d+\.\d{3} -> \d+\.\d{3} without head 0\.1", out[1])
    assert out[2].startswith("the old bird") and out[3] == "open-source"
