import sys
import types

import pytest

from scimlx import _cli, _tour


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
    assert "error 1e-9" in out and "stage" in out and "seconds" in out
    assert _cli.main(["tour"]) == 1  # the broken stage is reported, the others still run
    out = capsys.readouterr().out
    assert "FAILED" in out and "RuntimeError: boom" in out and "error 1e-9" in out


def test_unknown_stage_named(fake_stages, capsys):
    assert _cli.main(["tour", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_real_stage_registry_is_importable():
    names = [s.name for s in _tour.available_stages()]
    assert "node" in names
