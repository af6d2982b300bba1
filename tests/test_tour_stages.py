"""Every real tour stage runs end to end (quick setting), through the command line a user
types, and meets its own target."""

import json
import os
import subprocess
import sys

import pytest

from scimlx import _tour


STAGE_NAMES = [s.name for s in _tour.STAGES]


@pytest.fixture(scope="module")
def quick_tour(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tour")
    report = tmp / "report.json"
    env = {
        **os.environ,
        "SCIMLX_PROGRESS": "0",
        "SCIMLX_COMPILATION_CACHE": str(tmp / "cache"),  # never the user's cache
        "COLUMNS": "80",
    }
    out = subprocess.run(
        [sys.executable, "-m", "scimlx._cli", "tour", "--quick", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        cwd=tmp,
    )
    rows = json.loads(report.read_text())["rows"] if report.exists() else []
    return out, {r["stage"]: r for r in rows}


@pytest.mark.slow
@pytest.mark.parametrize("name", STAGE_NAMES)
def test_stage_meets_its_quick_target(quick_tour, name):
    out, rows = quick_tour
    assert name in rows, out.stdout[-2000:] + out.stderr[-3000:]
    row = rows[name]
    assert row["status"] == "ok", (row, out.stderr[-3000:])


@pytest.mark.slow
def test_quick_tour_summary_fits_80_columns(quick_tour):
    out, rows = quick_tour
    assert out.returncode == 0, out.stderr[-3000:]
    summary = out.stdout[out.stdout.index("stage  ") :]
    assert all(len(line) <= 80 for line in summary.splitlines()), summary
    assert f"{len(STAGE_NAMES)} stages in" in summary
