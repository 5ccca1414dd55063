"""Memory freed inside the C heap goes back to the system once the model is loaded."""

from __future__ import annotations

import sys

import pytest

from functions.infer import heap


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap, as on Lambda")
def test_memory_freed_between_live_blocks_leaves_the_process() -> None:
    blocks = [bytes(4000) + bytes([i % 256]) for i in range(40_000)]  # ~160 MB from malloc, not pymalloc
    kept = blocks[::16]  # live blocks every 64 kB: glibc cannot give the freed space back on its own
    del blocks
    before = _rss_mib()
    assert heap.release_freed()
    after = _rss_mib()
    assert before - after > 80, (before, after)
    assert len(kept) == 2500
