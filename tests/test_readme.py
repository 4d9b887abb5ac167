"""The README's code blocks run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, capsys):
    namespace = {}
    code = "\n".join(BLOCKS[: index + 1])  # later blocks reuse earlier names
    exec(compile(code, f"README block {index}", "exec"), namespace)
    assert "sn" in namespace
