import sys
import types

import pytest

from scimlx import _cli, _tour


@pytest.fixture(autouse=True)
def no_compilation_cache(monkeypatch):
    # The tour turns JAX's persistent cache on for the process; keep the test process clean.
    monkeypatch.setenv("SCIMLX_COMPILATION_CACHE", "0")


@pytest.fixture
def fake_stages(monkeypatch):
    ok = types.ModuleType("scimlx_fake_ok")
    ok.tour_stage = lambda: {"what": "fast check", "figure": "error 1e-9", "ok": True}
    bad = types.ModuleType("scimlx_fake_bad")

    def broken():
        raise RuntimeError("boom")

    bad.tour_stage = broken
    monkeypatch.setitem(sys.modules, "scimlx_fake_ok", ok)
    monkeypatch.setitem(sys.modules, "scimlx_fake_bad", bad)
    stages = (
        _tour.Stage("ok", "scimlx_fake_ok", "a stage that works"),
        _tour.Stage("bad", "scimlx_fake_bad", "a stage that fails"),
        _tour.Stage("absent", "scimlx_not_a_package.sub", "not installed"),
    )
    monkeypatch.setattr(_tour, "STAGES", stages)
    monkeypatch.setattr(
        _tour.importlib.util,
        "find_spec",
        lambda name: object() if name.startswith("scimlx_fake") else None,
    )
    return stages


def test_list(fake_stages, capsys):
    assert _cli.main(["tour", "--list"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "bad" in out and "absent" not in out


def test_tour_table_and_failure_exit_code(fake_stages, capsys):
    assert _cli.main(["tour", "ok"]) == 0
    out = capsys.readouterr().out
    assert "error 1e-9" in out and "stage" in out and "time" in out
    assert _cli.main(["tour"]) == 1  # the broken stage is reported, the others still run
    out = capsys.readouterr().out
    assert "FAILED" in out and "RuntimeError: boom" in out and "error 1e-9" in out


def test_unknown_stage_named(fake_stages, capsys):
    assert _cli.main(["tour", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_real_stage_registry_is_importable():
    names = [s.name for s in _tour.available_stages()]
    assert "node" in names


def test_version(capsys):
    import scimlx

    assert _cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"scimlx {scimlx.__version__}"


def test_tour_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as e:
        _cli.main(["tour", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for stage in _tour.STAGES:
        assert stage.name in out and stage.capability in out
    assert "--quick" in out


def test_summary_wraps_to_width():
    rows = [
        {"stage": "linsolve", "status": "ok", "seconds": 12.345, "figure": "x " * 80, "what": "w"},
        {"stage": "dsf", "status": "below target", "seconds": 3, "figure": "short", "what": "w"},
    ]
    for width in (60, 80, 100):
        text = _tour.format_summary(rows, width=width)
        assert all(len(line) <= width for line in text.splitlines()), text
        assert text.count("x") == 80  # nothing lost by wrapping
    assert "w" not in _tour.format_summary(rows[1:], width=80).split("short")[1]
    assert _tour.format_summary(rows[1:], width=80, verbose=True).rstrip().endswith("w")


def test_quick_flag_reaches_stages(fake_stages, monkeypatch, tmp_path, capsys):
    seen = {}

    def stage(quick=False):
        seen["quick"] = quick
        return {"what": "w", "figure": "f", "ok": True}

    monkeypatch.setattr(sys.modules["scimlx_fake_ok"], "tour_stage", stage)
    report = tmp_path / "r.json"
    assert _cli.main(["tour", "--quick", "--no-cache", "--report", str(report), "ok"]) == 0
    assert seen == {"quick": True}
    import json

    rows = json.loads(report.read_text())["rows"]
    assert [r["stage"] for r in rows] == ["ok"] and rows[0]["status"] == "ok"
