"""Exact parity of the NNX network with an independent PyTorch definition of the original, for
both kernel sets ('xla': the GPU/TPU program; 'cpu').

The torch reference (hpe_jax.testing.torch_reference) is written from MODEL.md; its state_dict
matches the reference .tsv. Its random weights go through the real converter CLI and ``load_model``.
"""

from __future__ import annotations

import ast
import functools

import jax
import numpy as np
import pytest
import torch
from conftest import SHARED_DIR
from flax import nnx

import hpe_jax
from hpe_jax.checkpoint import MODEL_VARIABLES
from hpe_jax.compiler_options import compiler_options
from hpe_jax.convert_torch import load_torch_state_dict, main, torch_entries
from hpe_jax.models import HPENet, get_config
from hpe_jax.models.kernels import grouped_convolutions
from hpe_jax.models.layers import DepthwiseConvBN
from hpe_jax.pose import encode_bins, pose_loss
from hpe_jax.testing.torch_reference import (
    build_reference_model,
    original_init_,
    randomize_bn_stats_,
)
from hpe_jax.testing.torch_reference import pose_loss as reference_pose_loss

ATOL_LOGITS = 1e-4
ATOL_DEGREES = 1e-3
KERNEL_SETS = ("xla", "cpu")


def _random_reference(variant: str, seed: int, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_reference_model(variant, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    original_init_(model, gen)
    randomize_bn_stats_(model, gen)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def _images(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, size, size, 3)).astype(np.float32)


def _torch_forward(model: torch.nn.Module, images: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    return [t.numpy() for t in out]


def _jax_forward(model: HPENet, images: np.ndarray) -> tuple[list[np.ndarray], str]:
    """The network's logits, jitted as the library jits it (``compiler_options``), and the text
    of the lowered (StableHLO) program."""
    graphdef, state = nnx.split(model)

    @functools.partial(jax.jit, compiler_options=compiler_options())
    def forward(state: nnx.State, images: jax.Array) -> list[jax.Array]:
        return nnx.merge(graphdef, state)(images)

    lowered = forward.lower(state, images)
    return [np.asarray(o) for o in lowered.compile()(state, images)], lowered.as_text()


def _depthwise_widths(model: HPENet) -> list[int]:
    """The channel count of each depthwise layer of ``model``, in network order."""
    layers = [m for _, m in nnx.iter_graph(model) if isinstance(m, DepthwiseConvBN)]
    return [layer.kernel.shape[-1] for layer in layers]


@pytest.fixture(scope="module")
def converted_s(tmp_path_factory):
    """The reference `s` network with random weights, saved as the original saves checkpoints and
    converted with the CLI."""
    reference = _random_reference("s", seed=0).eval()
    tmp = tmp_path_factory.mktemp("ckpt")
    torch.save({"epoch": 3, "model": reference.state_dict()}, tmp / "3.pkl")
    main(["--checkpoint", str(tmp / "3.pkl"), "--variant", "s", "--output", str(tmp / "orbax")])
    return reference, tmp


@pytest.mark.parametrize("kernels", KERNEL_SETS)
def test_eval_parity_through_cli_and_load_model(converted_s, kernels):
    """``load_model(path, kernels=...)`` of a converted original checkpoint reproduces its logits;
    with 'xla' the program's depthwise convs are grouped convolutions, with 'cpu' none is."""
    reference, tmp = converted_s
    images = _images(2, 224, seed=1)
    expected = _torch_forward(reference, images)
    model = hpe_jax.load_model(tmp / "orbax", kernels=kernels)
    assert model.kernels == kernels
    got, program = _jax_forward(model, images)
    widths = _depthwise_widths(model)
    assert len(widths) == 15
    assert grouped_convolutions(program) == (widths if kernels == "xla" else [])
    assert [g.shape for g in got] == [(2, 10), (2, 20)] * 3
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=0, atol=ATOL_LOGITS)
    angles = np.asarray(hpe_jax.decode_angles(got))
    ref_angles = np.asarray(hpe_jax.decode_angles(expected))
    np.testing.assert_allclose(angles, ref_angles, rtol=0, atol=ATOL_DEGREES)


def test_load_model_reads_variant_and_rejects_another(converted_s):
    _, tmp = converted_s
    assert hpe_jax.load_model(tmp / "orbax", variant="s").variant == "s"
    with pytest.raises(ValueError, match="holds variant 's'"):
        hpe_jax.load_model(tmp / "orbax", variant="m")


def _tsv_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    path = SHARED_DIR / "reference" / f"reference_state_dict_efficientnet_v2_{variant}.tsv"
    if not path.exists():
        pytest.skip(f"{path} is not available")
    shapes = {}
    for line in path.read_text().splitlines():
        key, shape, _ = line.split("\t")
        shapes[key] = tuple(ast.literal_eval(shape))
    return shapes


@pytest.mark.parametrize("variant", ["s", "m", "l"])
def test_converter_maps_exactly_the_reference_keys_and_shapes(variant):
    tsv = _tsv_shapes(variant)
    model = nnx.eval_shape(lambda: HPENet(get_config(variant), rngs=nnx.Rngs(0)))
    entries = torch_entries(model)
    mapped = {key for key, _, _ in entries}
    assert mapped == {k for k in tsv if not k.endswith("num_batches_tracked")}
    for key, variable, transform in entries:
        converted = transform(np.zeros(tsv[key], np.float32))
        assert converted.shape == variable.shape, key


def test_converter_names_the_variant_of_a_foreign_checkpoint(tmp_path, capsys):
    state = build_reference_model("m").state_dict()
    torch.save({"epoch": 1, "model": state}, tmp_path / "m.pkl")
    args = ["--checkpoint", str(tmp_path / "m.pkl"), "--variant", "s"]
    assert main([*args, "--output", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"error: {tmp_path / 'm.pkl'}: the checkpoint does not match variant 's': it is a "
        "checkpoint of variant 'm': pass --variant m; missing key: "
    )
    assert line.endswith(" more)")


def test_converter_lists_every_bad_key():
    state = dict(build_reference_model("s").state_dict())
    del state["stem.0.weight"]
    state["fc_yaw_coarse.weight"] = torch.zeros(11, 256)
    state["extra.weight"] = torch.zeros(1)
    model = HPENet(get_config("s"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError) as err:
        load_torch_state_dict(model, state)
    message = str(err.value)
    assert "missing key: stem.0.weight" in message
    assert "unexpected key: extra.weight" in message
    assert "wrong shape: fc_yaw_coarse.weight" in message


@pytest.mark.parametrize("kernels", KERNEL_SETS)
def test_bfloat16_compute_stays_close_to_float32(converted_s, kernels):
    _, tmp = converted_s
    f32 = hpe_jax.load_model(tmp / "orbax", kernels=kernels)
    config = get_config("s")
    config.dtype = "bfloat16"
    config.kernels = kernels
    bf16 = HPENet(config, rngs=nnx.Rngs(0))
    nnx.update(bf16, nnx.state(f32, MODEL_VARIABLES))
    bf16.eval()
    images = _images(4, 224, seed=6)
    a32 = np.asarray(hpe_jax.decode_angles(_jax_forward(f32, images)[0]))
    a16 = np.asarray(hpe_jax.decode_angles(_jax_forward(bf16, images)[0]))
    assert np.abs(a16 - a32).max() < 1.5  # degrees; bf16 has an 8-bit mantissa


@pytest.mark.parametrize("kernels", KERNEL_SETS)
def test_train_mode_outputs_bn_statistics_and_gradients_match(kernels):
    """One training-mode pass (batch statistics), no dropout or stochastic depth: the logits, the
    loss, the updated running statistics of all 86 BatchNorms and the gradient of the original's
    loss w.r.t. every parameter, compiled as the training step is (``compiler_options``). With
    'xla' the gradients come from autodiff of grouped depthwise convs, XLA's convs and BatchNorm;
    with 'cpu' through the hand-written backward passes (shifted-sum depthwise convs, BatchNorm)
    and 1x1 convs as matmuls.

    Each gradient must match to 5e-4 of its largest entry (measured: 1.3e-4 at most, either
    kernel set), plus 1e-7 of the largest gradient of the network: the biases of convs followed by
    BatchNorm have a true gradient of 0, and both frameworks return float32 rounding noise there
    (about 1e-5 against weight gradients of 1e3). Keep 96x96, batch 4: at 64x64, batch 2 (32
    values per channel in the deepest BatchNorms) the two stems' gradients differed by 5.6e3,
    ill-conditioned."""
    reference = _random_reference("s", seed=4, drop_connect_rate=0.0, dropout=0.0)
    config = get_config("s")
    config.drop_connect_rate = 0.0
    config.dropout = 0.0
    config.kernels = kernels
    model = HPENet(config, rngs=nnx.Rngs(0))
    load_torch_state_dict(model, reference.state_dict())
    images = _images(4, 96, seed=5)
    angles = np.random.default_rng(6).uniform(-99, 99, (4, 3)).astype(np.float32)
    coarse, shift = (np.asarray(a) for a in encode_bins(angles))

    reference.train()
    torch_outputs = reference(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    torch_loss = reference_pose_loss(
        torch_outputs,
        torch.from_numpy(coarse).long(),
        torch.from_numpy(shift).long(),
        torch.from_numpy(angles),
    )
    torch_loss.backward()
    torch_state = reference.state_dict()
    torch_grads = {k: p.grad.numpy() for k, p in reference.named_parameters()}
    largest = max(float(np.max(np.abs(g))) for g in torch_grads.values())

    model.train()

    def loss_fn(m: HPENet) -> tuple[jax.Array, list[jax.Array]]:
        outputs = m(images)
        return pose_loss(outputs, coarse, shift, angles)[0], outputs

    graphdef, state = nnx.split(model)

    @functools.partial(jax.jit, compiler_options=compiler_options())
    def loss_and_grads(state: nnx.State):
        m = nnx.merge(graphdef, state)
        (loss, outputs), grads = nnx.value_and_grad(loss_fn, has_aux=True)(m)
        return loss, outputs, grads, nnx.state(m)

    jax_loss, jax_outputs, grads, trained_state = loss_and_grads(state)
    nnx.update(model, trained_state)  # the running statistics of the pass
    for want, got in zip(torch_outputs, jax_outputs, strict=True):
        np.testing.assert_allclose(np.asarray(got), want.detach().numpy(), rtol=0, atol=ATOL_LOGITS)
    np.testing.assert_allclose(float(jax_loss), torch_loss.item(), rtol=1e-4)
    statistics = 0
    for key, variable, transform in torch_entries(model):
        if key.endswith(("running_mean", "running_var")):
            want = transform(torch_state[key].numpy())
            np.testing.assert_allclose(
                np.asarray(variable[...]), want, rtol=1e-4, atol=1e-5, err_msg=key
            )
            statistics += 1
    assert statistics == 2 * 86  # every BatchNorm of the `s` network

    nnx.update(model, grads)  # the model's parameters now hold their gradients
    checked = 0
    for key, variable, transform in torch_entries(model):
        if key in torch_grads:
            want = transform(torch_grads[key])
            atol = 5e-4 * float(np.max(np.abs(want))) + 1e-7 * largest
            np.testing.assert_allclose(
                np.asarray(variable[...]), want, rtol=0, atol=atol, err_msg=key
            )
            checked += 1
    assert checked == len(torch_grads)
