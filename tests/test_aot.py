"""Ahead-of-time compilation (hpe_jax.aot): topology names, HLO counting, and the real train step
compiled for a 4-chip TPU v5e and a 2-GPU H100 node on this CPU-only host (slow; they skip
without the ``tpu`` / ``cuda`` extra)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpe_jax.aot import AotError, count_collectives, parse_topology
from hpe_jax.models.kernels import grouped_convolutions

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("name", "hosts", "topology", "devices"),
    [
        ("v5e-4", 1, "v5e:2x2", 4),
        ("v5e-8", 1, "v5e:2x4", 8),
        ("v5e-256", 1, "v5e:16x16", 256),
        ("v6e-16", 1, "v6e:4x4", 16),
        ("v5p-8", 1, "v5p:2x2x1", 4),
        ("v4-16", 1, "v4:2x2x2", 8),
        ("tpu7x-8", 1, "tpu7x:2x2x1", 8),
        ("h100x8", 1, "1x1x8", 8),
        ("a100x8", 4, "1x4x8", 32),
    ],
)
def test_topology_names_map_to_topology_descriptions(name, hosts, topology, devices):
    target = parse_topology(name, hosts)
    assert (target.topology, target.num_devices) == (topology, devices)


@pytest.mark.parametrize(
    ("name", "hosts", "message"),
    [
        ("v5e:2x4", 1, "unknown topology 'v5e:2x4'"),
        ("v5e-12", 1, "no v5e slice of 12; known sizes: v5e-1, v5e-4"),
        ("v5p-5", 1, "no v5p slice of 5"),
        ("h100x16", 1, "1 to 8 GPUs per host"),
        ("v5e-8", 2, "--hosts is for GPU targets"),
        ("h100x8", 0, "--hosts must be 1 or more"),
    ],
)
def test_bad_topology_names_say_what_is_accepted(name, hosts, message):
    with pytest.raises(AotError, match=message):
        parse_topology(name, hosts)


def test_collectives_and_grouped_convolutions_are_counted_in_hlo_text():
    hlo = "\n".join(
        [
            "  %a = f32[8]{0} all-reduce(f32[8]{0} %x), replica_groups={}",
            "  %b = f32[8]{0} all-reduce-start(f32[8]{0} %y), replica_groups={}",
            "  %c = f32[8]{0} all-reduce-done(f32[8]{0} %b)",
            "  %d = f32[16]{0} all-gather(f32[8]{0} %x), dimensions={0}",
            "  %e = f32[1,8,8,32]{3,2,1,0} convolution(%p, %k), feature_group_count=32",
            "  %f = f32[1,8,8,32]{3,2,1,0} convolution(%p, %k), feature_group_count=1",
        ]
    )
    counts = count_collectives(hlo)
    assert counts["all-reduce"] == 2 and counts["all-gather"] == 1
    assert counts["reduce-scatter"] == 0
    assert grouped_convolutions(hlo) == [32]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _compile(tmp_path: Path, topology: str) -> dict:
    """``python -m hpe_jax.aot`` at 64x64, 4 per device, bf16, in its own process (one libtpu
    per process; the CUDA plugin loaded there only)."""
    out = tmp_path / "report.json"
    hlo = tmp_path / "step.hlo"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpe_jax.aot",
            f"--topology={topology}",
            "--per-device-batch=4",
            "--image-size=64",
            "--dtype=bfloat16",
            f"--json={out}",
            f"--dump-hlo={hlo}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    report["hlo"] = hlo.read_text()
    return report


def _check_data_parallel_step(report: dict, devices: int) -> None:
    assert report["devices"] == devices
    assert report["fits"] and report["peak_bytes_per_device"] > 0
    # The batch is split over the data axis: each device's entry parameter holds 4 images.
    assert "bf16[4,64,64,3]" in report["hlo"] or "f32[4,64,64,3]" in report["hlo"]
    assert report["grouped_convolutions"] > 0  # the GPU/TPU kernels, not the CPU program
    assert report["collectives"]["all-reduce"] > 0
    assert report["collectives"]["all-gather"] == 0


@pytest.mark.slow
@pytest.mark.skipif(not _has("libtpu"), reason="needs the 'tpu' extra (libtpu)")
def test_train_step_compiles_for_a_4_chip_tpu_v5e(tmp_path):
    report = _compile(tmp_path, "v5e-4")
    _check_data_parallel_step(report, 4)
    assert report["platform"] == "tpu" and report["flops_per_device"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not _has("jax_cuda12_plugin"), reason="needs the 'cuda' extra")
def test_train_step_compiles_for_a_2_gpu_h100_node(tmp_path):
    report = _compile(tmp_path, "h100x2")
    _check_data_parallel_step(report, 2)
    assert report["platform"] == "cuda"
