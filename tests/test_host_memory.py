"""hpe_jax.host_memory: after ``retain_freed_host_memory`` a large block that is freed and
allocated again reuses its pages (no new page faults), where glibc's default maps fresh pages.

Each case runs in a subprocess: the setting lasts for the process's life."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

BLOCK = 256 << 20  # bytes: far above glibc's largest mmap threshold (32 MiB)
CHILD = f"""
import ctypes, ctypes.util, resource, sys
from hpe_jax.host_memory import retain_freed_host_memory
applied = retain_freed_host_memory() if sys.argv[1] == "retain" else None
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
faults = []
for _ in range(3):
    block = libc.malloc({BLOCK})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ctypes.memset(block, 1, {BLOCK})
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    libc.free(block)
print(applied, *faults)
"""


def _page_faults(mode: str) -> tuple[str, list[int]]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], [int(v) for v in out[1:]]


def test_freed_block_is_reused_without_page_faults():
    pages = BLOCK // 4096
    applied, faults = _page_faults("retain")
    if applied != "True":
        pytest.skip("the C library has no glibc mallopt")
    assert faults[0] >= pages // 2  # the first use touches new pages
    assert faults[1:] == [0, 0], faults  # the freed block is reused as it is


def test_default_glibc_maps_fresh_pages_every_time():
    _, faults = _page_faults("default")
    assert min(faults) >= BLOCK // 4096 // 2, faults
