"""Import the original PyTorch checkpoints into the NNX network.

``python -m hpe_jax.convert_torch --checkpoint PATH --variant s --output DIR`` reads a checkpoint
saved by the original code (``{'epoch', 'model': state_dict, ...}`` or a bare state_dict), loaded
with ``torch.load(weights_only=True)``, maps every key to the NNX state and writes an orbax
checkpoint (see ``hpe_jax.checkpoint``). ``num_batches_tracked`` buffers are accepted and unused;
a NaN or Inf weight is refused with its key. An existing non-empty ``--output`` is refused;
``--overwrite`` replaces a checkpoint there, never other files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from hpe_jax.checkpoint import check_checkpoint_output, save_model
from hpe_jax.cli import run_cli
from hpe_jax.errors import UserError
from hpe_jax.models import HEAD_NAMES, HPENet, get_config
from hpe_jax.models.aspp import ASPP, ASPPHead, AtrousAttentionBranch, PoolingBranch
from hpe_jax.models.efficientnet import FusedMBConv, MBConv
from hpe_jax.models.fpas import FPAS
from hpe_jax.models.layers import BatchNorm, ConvBN, ConvTranspose2x2BN, DepthwiseConvBN

Transform = Callable[[np.ndarray], np.ndarray]
Entry = tuple[str, nnx.Variable, Transform]  # (torch key, NNX variable, torch -> NNX layout)

UNUSED_SUFFIX = "num_batches_tracked"


def _same(w: np.ndarray) -> np.ndarray:
    return w


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    """(out, in, kh, kw) -> (kh, kw, in, out)."""
    return w.transpose(2, 3, 1, 0)


def _dense_kernel(w: np.ndarray) -> np.ndarray:
    """Linear (out, in) or 1x1 conv (out, in, 1, 1) -> (in, out)."""
    return w.reshape(w.shape[0], -1).T


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:
    """(C, 1, kh, kw) -> (kh, kw, C)."""
    return w[:, 0].transpose(1, 2, 0)


def _transposed_kernel(w: np.ndarray) -> np.ndarray:
    """ConvTranspose2d (in, out, kh, kw) -> (kh, kw, in, out)."""
    return w.transpose(2, 3, 0, 1)


def _flat(w: np.ndarray) -> np.ndarray:
    return w.reshape(-1)


def _conv(conv: nnx.Conv, key: str) -> Iterator[Entry]:
    yield f"{key}.weight", conv.kernel, _conv_kernel
    if conv.bias is not None:
        yield f"{key}.bias", conv.bias, _same


def _dense(layer: nnx.Linear, key: str) -> Iterator[Entry]:
    yield f"{key}.weight", layer.kernel, _dense_kernel
    if layer.bias is not None:
        yield f"{key}.bias", layer.bias, _same


def _bn(bn: BatchNorm, key: str) -> Iterator[Entry]:
    yield f"{key}.weight", bn.scale, _same
    yield f"{key}.bias", bn.bias, _same
    yield f"{key}.running_mean", bn.mean, _same
    yield f"{key}.running_var", bn.var, _same


def _conv_bn(m: ConvBN, key: str, conv_idx: int = 0) -> Iterator[Entry]:
    """A torch Sequential (conv, bn[, act]) whose conv is at ``conv_idx`` and BN right after."""
    yield from _conv(m.conv, f"{key}.{conv_idx}")
    yield from _bn(m.bn, f"{key}.{conv_idx + 1}")


def _block(m: FusedMBConv | MBConv, key: str) -> Iterator[Entry]:
    if isinstance(m, FusedMBConv):
        yield from _conv_bn(m.fused, f"{key}.fused")
        if m.fused_point_wise is not None:
            yield from _conv_bn(m.fused_point_wise, f"{key}.fused_point_wise")
        return
    yield from _conv_bn(m.linear_bottleneck, f"{key}.linear_bottleneck")
    dw: DepthwiseConvBN = m.depth_wise
    yield f"{key}.depth_wise.0.weight", dw.kernel, _depthwise_kernel
    yield from _bn(dw.bn, f"{key}.depth_wise.1")
    if m.se is not None:
        yield from _dense(m.se.fc1, f"{key}.se.fc1")
        yield from _dense(m.se.fc2, f"{key}.se.fc2")
    yield from _conv_bn(m.point_wise, f"{key}.point_wise")


def _fpas(m: FPAS, key: str) -> Iterator[Entry]:
    for name in ("up1", "up2", "up3", "down0", "down1", "down2", "down3"):
        first, second = getattr(m, name)
        yield from _conv_bn(first, f"{key}.{name}", 0)
        yield from _conv_bn(second, f"{key}.{name}", 3)
    for name in ("upsample2", "upsample3"):
        up: ConvTranspose2x2BN = getattr(m, name)
        yield f"{key}.{name}.0.weight", up.kernel, _transposed_kernel
        yield f"{key}.{name}.0.bias", up.bias, _same
        yield from _bn(up.bn, f"{key}.{name}.1")


def _aspp(m: ASPPHead, key: str) -> Iterator[Entry]:
    inner: ASPP = m.aspp
    for i, branch in enumerate(inner.convs):
        bkey = f"{key}.0.convs.{i}"
        if isinstance(branch, AtrousAttentionBranch):
            yield from _conv_bn(branch.artous_convolution, f"{bkey}.artous_convolution")
            yield from _dense(branch.attention.adjust_module, f"{bkey}.adjust_module")
            yield f"{bkey}.bypass_module.weight", branch.attention.bypass_module, _flat
        elif isinstance(branch, PoolingBranch):
            yield from _conv_bn(branch.conv, bkey, 1)
        else:
            yield from _conv_bn(branch, bkey)
    yield from _conv_bn(inner.project, f"{key}.0.project")
    yield from _conv(m.conv, f"{key}.1")
    yield from _bn(m.bn, f"{key}.2")


def torch_entries(model: HPENet) -> list[Entry]:
    """Every (torch state_dict key, NNX variable, layout transform) of ``model``, in torch order."""
    entries = list(_conv_bn(model.backbone.stem, "stem"))
    for i, block in enumerate(model.backbone.blocks):
        entries += _block(block, f"blocks.{i}.block")
    entries += _fpas(model.side, "side")
    entries += _aspp(model.aspp, "aspp")
    for name in HEAD_NAMES:
        entries += _dense(getattr(model, name), name)
    return entries


def _expected_keys(variant: str) -> set[str]:
    abstract = nnx.eval_shape(lambda: HPENet(get_config(variant), rngs=nnx.Rngs(0)))
    return {key for key, _, _ in torch_entries(abstract)}


def _guess_variant(keys: set[str]) -> str | None:
    for variant in ("s", "m", "l"):
        if _expected_keys(variant) == keys:
            return variant
    return None


def load_torch_state_dict(model: HPENet, state_dict: Mapping[str, Any]) -> None:
    """Copies a torch state_dict (tensors or numpy arrays) into ``model`` in place.

    Raises a UserError (a ValueError) naming every key whose value holds NaN or Inf; else one
    listing every missing, unexpected and mis-shaped (or non-numeric) key, and naming the
    variant the checkpoint belongs to when it is another one. Nothing is copied then.
    """
    arrays = {k: _to_numpy(v) for k, v in state_dict.items() if not k.endswith(UNUSED_SUFFIX)}
    entries = torch_entries(model)
    expected = {key for key, _, _ in entries}
    missing = sorted(expected - arrays.keys())
    unexpected = sorted(arrays.keys() - expected)
    converted, mis_shaped, non_finite = [], [], []
    for key, variable, transform in entries:
        if key not in arrays:
            continue
        raw = arrays[key]
        if not np.issubdtype(raw.dtype, np.number):
            mis_shaped.append(f"{key}: checkpoint holds {raw.dtype}, not a numeric tensor")
            continue
        try:
            value = transform(raw)
        except ValueError:  # too few axes for the layout change
            mis_shaped.append(f"{key}: checkpoint {raw.shape}, network expects {variable.shape}")
            continue
        if not np.all(np.isfinite(value)):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            non_finite.append(f"{key}: {bad} of {value.size} values are NaN or Inf")
        elif value.shape != variable.shape:
            mis_shaped.append(
                f"{key}: checkpoint {arrays[key].shape} -> {value.shape}, "
                f"network expects {variable.shape}"
            )
        else:
            converted.append((variable, value))
    if non_finite:
        raise UserError("the checkpoint holds non-finite weights:\n  " + "\n  ".join(non_finite))
    if missing or unexpected or mis_shaped:
        lines = [f"the checkpoint does not match variant {model.variant!r}:"]
        if missing or unexpected:
            guess = _guess_variant(set(arrays))
            if guess is not None and guess != model.variant:
                lines.append(f"it is a checkpoint of variant {guess!r}: pass --variant {guess}")
        lines += [f"missing key: {k}" for k in missing]
        lines += [f"unexpected key: {k}" for k in unexpected]
        lines += [f"wrong shape: {m}" for m in mis_shaped]
        raise UserError("\n  ".join(lines))
    for variable, value in converted:
        variable[...] = value.astype(np.float32)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def read_torch_checkpoint(path: str | Path) -> dict[str, Any]:
    """The state_dict inside a checkpoint of the original (``{'model': sd, ...}`` or ``sd``).

    Uses ``torch.load(weights_only=True)``: no arbitrary objects are unpickled. An empty,
    truncated or damaged file is a UserError naming it.
    """
    import torch  # the optional 'torch' extra

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as err:  # torch raises EOFError, UnpicklingError, RuntimeError, KeyError
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {message}); "
            "expected a file saved by torch.save"
        ) from err
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        return dict(obj["model"])
    if isinstance(obj, Mapping) and all(isinstance(k, str) for k in obj):
        return dict(obj)
    raise UserError(
        f"{path}: expected a state_dict or a dict with a 'model' state_dict, "
        f"got {type(obj).__name__}"
    )


def convert_checkpoint(path: str | Path, variant: str = "s") -> HPENet:
    """The network holding the weights of the original checkpoint at ``path`` (eval mode).
    Raises a UserError naming ``path`` when it is unreadable, holds non-finite weights (named by
    key) or does not match ``variant``."""
    state_dict = read_torch_checkpoint(path)
    model = HPENet(get_config(variant), rngs=nnx.Rngs(0))
    try:
        load_torch_state_dict(model, state_dict)
    except UserError as err:
        raise UserError(f"{path}: {err}") from err
    model.eval()
    return model


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint file of the original")
    parser.add_argument("--variant", default="s", choices=("s", "m", "l"))
    parser.add_argument("--output", required=True, help="orbax checkpoint directory to write")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a checkpoint already at --output"
    )
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    return run_cli(lambda: _convert(args), verbose=args.verbose, folder=args.output)


def _convert(args: argparse.Namespace) -> None:
    """Converts ``args.checkpoint`` into the orbax checkpoint ``args.output``."""
    output = Path(args.output).absolute()
    check_checkpoint_output(output, args.overwrite)
    model = convert_checkpoint(args.checkpoint, args.variant)
    out = save_model(
        output,
        model,
        get_config(args.variant),
        extra_meta={"source": str(Path(args.checkpoint).absolute())},
    )
    print(f"wrote {out} (variant {args.variant})")


if __name__ == "__main__":
    sys.exit(main())
