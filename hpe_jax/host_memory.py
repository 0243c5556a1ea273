"""Host memory allocation settings for XLA:CPU (and PyTorch) in a training or evaluation process.

XLA:CPU allocates the temporary buffer of every compiled call (all activations of a training
step, gigabytes at 224x224) with ``malloc`` from a worker thread. By default glibc serves such a
block from a fresh ``mmap`` and unmaps it on ``free``, so the kernel zero-fills every page of it
again on the next call (the cost: BENCHMARKS.md).

``retain_freed_host_memory`` makes glibc serve every thread from the main heap
(``M_ARENA_MAX = 1``), never from ``mmap`` (``M_MMAP_MAX = 0``), and keep freed memory instead
of returning it to the system (``M_TRIM_THRESHOLD`` = the largest size), so each call reuses the
pages of the previous one. The process's resident memory then stays at its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameter numbers of glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
NEVER_TRIM = -1  # mallopt takes an int; glibc stores the trim threshold as size_t: SIZE_MAX


def retain_freed_host_memory() -> bool:
    """Sets glibc's malloc to reuse freed memory (module docstring) for this process.

    Call it before the first JAX computation (the XLA:CPU thread pool starts then); importing
    jax before is fine. Returns True when applied, False where the C library has no glibc
    ``mallopt`` (macOS, musl): nothing is changed there.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM))
    return all(mallopt(param, value) == 1 for param, value in settings)
