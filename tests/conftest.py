"""Shared test setup: CPU-only JAX, and the location of the shared design/sample files."""

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
