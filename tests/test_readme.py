"""The README's example runs verbatim."""

import os
import pathlib
import re
import subprocess
import sys


def test_readme_example_runs(tmp_path):
    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    assert blocks, "README.md has no python example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SCIMLX_PROGRESS": "0"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    steps = int(re.search(r"solver steps: (\d+)", out.stdout).group(1))
    assert 0 < steps < 100
    assert (tmp_path / "node.eqx").exists() and (tmp_path / "node.ckpt").exists()
