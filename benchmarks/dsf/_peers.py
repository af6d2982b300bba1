"""Peer implementations the results name (none is timed here)."""

from .._harness import optional_import


def peer_rows() -> list[dict]:
    """A row saying why recurrentgemma's RG-LRU is absent, when it is not installed."""
    if optional_import("recurrentgemma") is None:
        return [dict(family="rglru_peer", note="recurrentgemma not installed (bench extra)")]
    return []
