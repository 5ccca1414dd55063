"""Memory freed inside the C heap goes back to the system once the model is loaded."""

from __future__ import annotations

import os
import sys

import pytest

from functions.infer import heap
from runtime.lambdafn.memory_watch import rss_mib


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap, as on Lambda")
def test_memory_freed_between_live_blocks_leaves_the_process() -> None:
    blocks = [bytes(4000) + bytes([i % 256]) for i in range(40_000)]  # ~160 MB from malloc, not pymalloc
    kept = blocks[::16]  # live blocks every 64 kB: glibc cannot give the freed space back on its own
    del blocks
    before = rss_mib(os.getpid())
    assert heap.release_freed()
    after = rss_mib(os.getpid())
    assert before - after > 80, (before, after)
    assert len(kept) == 2500
