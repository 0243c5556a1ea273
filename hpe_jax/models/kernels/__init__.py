"""The kernel sets of the network: the implementations of its depthwise convs, dense convs and
training-mode BatchNorm, chosen once per model from the platform it is compiled for.

- ``"xla"`` (``xla.py``): grouped depthwise convs, XLA's own convs (1x1 included) and autodiff
  BatchNorm; the program for GPUs and TPUs.
- ``"cpu"`` (``cpu.py``): shifted-sum depthwise convs, 1x1 convs as matmuls and a hand-written
  BatchNorm gradient, the forms that XLA:CPU runs fastest.

Both compute the same function (``tests/test_model_parity.py`` checks each against the PyTorch
reference); they differ in the operations of the compiled program.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import jax

from hpe_jax.models.kernels import cpu, xla

KERNEL_CHOICES = ("auto", "xla", "cpu")

# (x (N, H, W, C), kernel (kh, kw, C), stride) -> (N, ceil(H / stride), ceil(W / stride), C).
DepthwiseConv = Callable[[jax.Array, jax.Array, int], jax.Array]
# (x float32 (..., C), scale (C,), bias (C,), epsilon) -> (y, batch mean, biased batch variance).
BatchNormTrain = Callable[
    [jax.Array, jax.Array, jax.Array, float], tuple[jax.Array, jax.Array, jax.Array]
]


@dataclass(frozen=True)
class Kernels:
    """The implementations a layer needs.

    Attributes:
      name: the kernel set's name (a key of ``KERNELS``).
      conv_general_dilated: dense convolution with ``jax.lax.conv_general_dilated``'s signature
        (``nnx.Conv``'s ``conv_general_dilated`` hook).
      depthwise_conv: depthwise conv, symmetric padding (k - 1) // 2, no bias (``DepthwiseConv``).
      batch_norm_train: training-mode batch normalisation over all axes but the last, float32
        (``BatchNormTrain``).
    """

    name: str
    conv_general_dilated: Callable[..., jax.Array]
    depthwise_conv: DepthwiseConv
    batch_norm_train: BatchNormTrain


KERNELS: dict[str, Kernels] = {
    "xla": Kernels("xla", xla.conv_general_dilated, xla.depthwise_conv, xla.batch_norm_train),
    "cpu": Kernels("cpu", cpu.conv_general_dilated, cpu.depthwise_conv, cpu.batch_norm_train),
}


def resolve_kernels(kernels: str, platform: str | None = None) -> str:
    """The kernel set (a key of ``KERNELS``) for a ``kernels`` setting and a target platform.

    Args:
      kernels: one of ``KERNEL_CHOICES``; ``"auto"`` picks from ``platform``: ``"cpu"`` for the
        CPU, ``"xla"`` for every other platform (``"gpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``).
      platform: the platform of the devices the program is compiled for (``device.platform``);
        ``None`` means ``jax.default_backend()``.
    Raises:
      ValueError for a ``kernels`` not in ``KERNEL_CHOICES``.
    """
    if kernels not in KERNEL_CHOICES:
        raise ValueError(f"kernels must be one of {', '.join(KERNEL_CHOICES)}; got {kernels!r}")
    if kernels != "auto":
        return kernels
    platform = jax.default_backend() if platform is None else platform
    return "cpu" if platform == "cpu" else "xla"


def grouped_convolutions(program_text: str) -> list[int]:
    """The ``feature_group_count`` of every grouped convolution (count > 1), in program order, in
    the text of a lowered (StableHLO: ``jax.jit(f).lower(...).as_text()``) or compiled (HLO)
    program. The ``"xla"`` kernel set's depthwise convs and their input gradients are such
    convolutions; the ``"cpu"`` set has none."""
    counts = (int(n) for n in re.findall(r"feature_group_count\s*=\s*(\d+)", program_text))
    return [n for n in counts if n > 1]
