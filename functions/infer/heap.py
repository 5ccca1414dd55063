"""Memory freed while the model loads, given back to the system.

Making an ONNX Runtime session frees much of what it allocated on the way (the parsed model, copies of its
weights before prepacking): ~85 MiB for resnet18. glibc's malloc keeps freed memory inside its heap for reuse
rather than returning it, so the environment would carry it as resident memory for its whole life (and Lambda
counts it against ``MemorySize``). ``malloc_trim(0)`` hands it back once, after loading. Elsewhere than glibc
(musl, macOS) there is no such call, and nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache
from typing import Any

log = logging.getLogger(__name__)


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_freed() -> bool:
    """Return the heap's free memory to the system; whether this C library could."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    released = bool(trim(0))
    log.debug("freed heap %s to the system", "returned" if released else "had nothing to return")
    return True
