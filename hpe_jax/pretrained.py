"""Import the official EfficientNetV2 ImageNet weights (TF variable names) into the backbone.

The original initialises its backbone from the official TensorFlow EfficientNetV2 checkpoints,
republished as ``.npy`` files holding one pickled dict ``{tf_variable_name: array}`` (read with
``np.load(path, allow_pickle=True).item()``; unpickling runs code, so read trusted files only).
The dict covers the FULL classification network (all stages and the ``head/`` classifier); the
stem and the blocks of stages 1-5 (``blocks_0`` .. ``blocks_24`` for ``s``) are copied here, the
rest is reported as ignored.

Naming inside ``blocks_<i>`` (``i`` counts the blocks of the whole network from 0, in order):

- fused block, expand 1: ``conv2d`` + ``tpu_batch_normalization``;
- fused block with expand: ``conv2d`` + ``tpu_batch_normalization`` (the kxk expand conv), then
  ``conv2d_1`` + ``tpu_batch_normalization_1`` (the 1x1 projection);
- MBConv: ``conv2d`` + ``tpu_batch_normalization`` (1x1 expand), ``depthwise_conv2d`` +
  ``tpu_batch_normalization_1``, ``se/conv2d`` and ``se/conv2d_1`` (kernel and bias), then
  ``conv2d_1`` + ``tpu_batch_normalization_2`` (1x1 projection).

BN ``gamma``, ``beta``, ``moving_mean``, ``moving_variance`` become ``scale``, ``bias``, ``mean``,
``var``. TF conv kernels are HWIO like the NNX ones; depthwise kernels (kh, kw, C, 1) lose the
last axis; the SE 1x1 conv kernels (1, 1, in, out) become dense (in, out) kernels.

Every variable is read from its ``<name>/ExponentialMovingAverage`` copy, as the original does.
The original reads nothing else: from a file with raw weights only it silently loads nothing and
keeps its random init. Here the raw ``<name>`` is used when the EMA copy is absent; ``used``
names which one each variable came from.

The original's PyTorch BatchNorm uses eps 1e-5 with these statistics, although the TF models were
trained with eps 1e-3; the port keeps 1e-5 (``get_config().bn_epsilon``) to match the original.

``python -m hpe_jax.pretrained --npy PATH --variant s --output DIR`` writes an orbax checkpoint of
a freshly initialised network (the original's init) whose backbone comes from the file.
"""

from __future__ import annotations

import argparse
import pickle
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from hpe_jax import init_model
from hpe_jax.checkpoint import check_checkpoint_output, save_model
from hpe_jax.cli import run_cli
from hpe_jax.errors import UserError
from hpe_jax.models import BACKBONES, HPENet, get_config
from hpe_jax.models.efficientnet import FusedMBConv, MBConv
from hpe_jax.models.layers import BatchNorm, ConvBN

Transform = Callable[[np.ndarray], np.ndarray]
Entry = tuple[str, nnx.Variable, Transform]  # (TF name without EMA suffix, NNX variable, layout)

EMA_SUFFIX = "/ExponentialMovingAverage"
_BLOCK_SCOPE = re.compile(r"^blocks_(\d+)/")


def _same(w: np.ndarray) -> np.ndarray:
    return w


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:
    """(kh, kw, C, 1) -> (kh, kw, C)."""
    return np.squeeze(w, axis=3)


def _dense_kernel(w: np.ndarray) -> np.ndarray:
    """1x1 conv (1, 1, in, out) -> (in, out)."""
    return np.squeeze(w, axis=(0, 1))


def _bn(bn: BatchNorm, scope: str) -> Iterator[Entry]:
    yield f"{scope}/gamma", bn.scale, _same
    yield f"{scope}/beta", bn.bias, _same
    yield f"{scope}/moving_mean", bn.mean, _same
    yield f"{scope}/moving_variance", bn.var, _same


def _conv_bn(m: ConvBN, scope: str, conv: str, bn: str) -> Iterator[Entry]:
    yield f"{scope}/{conv}/kernel", m.conv.kernel, _same
    yield from _bn(m.bn, f"{scope}/{bn}")


def _block(m: FusedMBConv | MBConv, scope: str) -> Iterator[Entry]:
    if isinstance(m, FusedMBConv):
        yield from _conv_bn(m.fused, scope, "conv2d", "tpu_batch_normalization")
        if m.fused_point_wise is not None:
            yield from _conv_bn(m.fused_point_wise, scope, "conv2d_1", "tpu_batch_normalization_1")
        return
    yield from _conv_bn(m.linear_bottleneck, scope, "conv2d", "tpu_batch_normalization")
    yield f"{scope}/depthwise_conv2d/depthwise_kernel", m.depth_wise.kernel, _depthwise_kernel
    yield from _bn(m.depth_wise.bn, f"{scope}/tpu_batch_normalization_1")
    if m.se is not None:
        for layer, conv in ((m.se.fc1, "conv2d"), (m.se.fc2, "conv2d_1")):
            yield f"{scope}/se/{conv}/kernel", layer.kernel, _dense_kernel
            yield f"{scope}/se/{conv}/bias", layer.bias, _same
    yield from _conv_bn(m.point_wise, scope, "conv2d_1", "tpu_batch_normalization_2")


def tf_entries(model: HPENet) -> list[Entry]:
    """Every (TF variable name without the EMA suffix, NNX variable, TF -> NNX layout) of the
    backbone of ``model`` (stem, then the kept blocks in order)."""
    backbone = model.backbone
    entries = list(_conv_bn(backbone.stem, "stem", "conv2d", "tpu_batch_normalization"))
    for i, block in enumerate(backbone.blocks):
        entries += _block(block, f"blocks_{i}")
    return entries


def read_tf_npy(path: str | Path) -> dict[str, np.ndarray]:
    """The ``{tf_variable_name: array}`` dict pickled in the ``.npy`` file at ``path``."""
    try:
        obj = np.load(path, allow_pickle=True)
    except (ValueError, pickle.UnpicklingError, EOFError) as err:
        raise UserError(f"{path}: not a readable .npy file: {err}") from err
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise UserError(
            f"{path}: expected a pickled dict {{tf_variable_name: array}}, got {type(obj).__name__}"
        )
    return obj


def _variable_paths(model: nnx.Module) -> dict[int, str]:
    return {
        id(node): "/".join(map(str, path))
        for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Variable)
    }


def _variant_hint(names: Mapping[str, Any], variant: str) -> str | None:
    """A hint naming the variant whose full network has as many blocks as the file."""
    count = len({m.group(1) for name in names if (m := _BLOCK_SCOPE.match(name))})
    for other, spec in BACKBONES.items():
        if other != variant and spec.total_blocks == count:
            return f"the file has {count} blocks, as variant {other!r}: pass --variant {other}"
    return None


def load_tf_backbone_npy(
    model: HPENet, path_or_dict: str | Path | Mapping[str, Any], *, strict: bool = True
) -> dict[str, list[str]]:
    """Copies the official EfficientNetV2 TF weights into the stem and blocks of ``model``.

    Args:
      model: the network; only ``model.backbone`` is written (parameters and BN statistics).
      path_or_dict: a ``.npy`` file of the pickled ``{tf_variable_name: array}`` dict, or the dict.
      strict: when True (default), a backbone variable with no TF source is an error and nothing
        is copied; when False it keeps its current value and is listed under ``missing``.
    Returns:
      ``{'used': TF names copied (EMA copy, or the raw name when there is none), 'ignored': TF
      names of the file not used (stages after 5, ``head/``, raw copies shadowed by an EMA one,
      ...), 'missing': the ``<name>/ExponentialMovingAverage`` names found neither so nor as the
      raw ``<name>``}``, each sorted.
    Raises:
      UserError (a ValueError) naming each variable holding NaN or Inf values; else naming each
      mis-shaped variable, and (``strict``) each missing one, with its NNX path; nothing is
      copied then.
    """
    weights = path_or_dict if isinstance(path_or_dict, Mapping) else read_tf_npy(path_or_dict)
    paths = _variable_paths(model)
    used, missing, mis_shaped, non_finite, converted = [], [], [], [], []
    for name, variable, transform in tf_entries(model):
        source = name + EMA_SUFFIX if name + EMA_SUFFIX in weights else name
        if source not in weights:
            missing.append((name + EMA_SUFFIX, paths[id(variable)]))
            continue
        raw = np.asarray(weights[source])
        try:
            value = transform(raw)
        except ValueError:  # no (.., 1) axis to drop: reported as mis-shaped below
            value = raw
        if value.shape != variable.shape:
            mis_shaped.append(
                f"{source}: file {raw.shape}, network {paths[id(variable)]} expects "
                f"{variable.shape}"
            )
            continue
        if not np.issubdtype(value.dtype, np.number):
            mis_shaped.append(f"{source}: file holds {value.dtype}, not numbers")
            continue
        if not np.all(np.isfinite(value)):
            non_finite.append(source)
            continue
        used.append(source)
        converted.append((variable, value))
    if non_finite:
        raise UserError(
            f"the EfficientNetV2 weights hold NaN or Inf values: {', '.join(non_finite)}"
        )
    if mis_shaped or (strict and missing):
        lines = [
            f"the EfficientNetV2 weights do not fit the backbone of variant {model.variant!r}:"
        ]
        hint = _variant_hint(weights, model.variant)
        if hint is not None:
            lines.append(hint)
        lines += [f"missing: {name} (nor the raw name) for {path}" for name, path in missing]
        lines += [f"wrong shape: {m}" for m in mis_shaped]
        raise UserError("\n  ".join(lines))
    for variable, value in converted:
        variable[...] = value.astype(np.float32)
    return {
        "used": sorted(used),
        "ignored": sorted(weights.keys() - set(used)),
        "missing": sorted(name for name, _ in missing),
    }


def _prefix_order(prefix: str) -> tuple[str, int]:
    digits = re.search(r"\d*$", prefix).group()
    return prefix[: len(prefix) - len(digits)], int(digits) if digits else -1


def format_report(report: Mapping[str, list[str]]) -> str:
    """A summary of a ``load_tf_backbone_npy`` report: counts, and ignored names per first path
    component (``blocks_25``, ``head``, ...)."""
    used = report["used"]
    ema = sum(name.endswith(EMA_SUFFIX) for name in used)
    groups = Counter(name.split("/", 1)[0] for name in report["ignored"])
    lines = [
        f"used {len(used)} TF variables ({ema} EMA, {len(used) - ema} raw)",
        f"missing {len(report['missing'])}",
        *report["missing"],
        f"ignored {len(report['ignored'])} TF variables:",
        *(f"  {p}: {groups[p]}" for p in sorted(groups, key=_prefix_order)),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npy", required=True, help="official EfficientNetV2 weights (.npy dict)")
    parser.add_argument("--variant", default="s", choices=sorted(BACKBONES))
    parser.add_argument("--output", required=True, help="orbax checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the init outside the backbone")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a checkpoint already at --output"
    )
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    return run_cli(lambda: _convert(args), verbose=args.verbose, folder=args.output)


def _convert(args: argparse.Namespace) -> None:
    """Builds the network with the backbone of ``args.npy`` and saves it at ``args.output``."""
    output = Path(args.output).absolute()
    check_checkpoint_output(output, args.overwrite)
    model = init_model(args.variant, args.seed)
    report = load_tf_backbone_npy(model, read_tf_npy(args.npy))
    print(format_report(report))
    out = save_model(
        output,
        model,
        get_config(args.variant),
        extra_meta={"backbone_source": str(Path(args.npy).absolute()), "seed": args.seed},
    )
    print(f"wrote {out} (variant {args.variant})")


if __name__ == "__main__":
    sys.exit(main())
