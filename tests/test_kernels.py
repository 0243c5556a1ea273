"""Kernel sets (hpe_jax/models/kernels): how a setting and a platform pick one, what each puts in
the lowered training step, and stored configs that name the replaced ``depthwise_impl``."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import hpe_jax
from configs.default import get_config as get_train_config
from hpe_jax.checkpoint import MODEL_VARIABLES, save_model
from hpe_jax.models import HPENet, get_config
from hpe_jax.models.config import upgrade_model_config
from hpe_jax.models.kernels import KERNEL_CHOICES, grouped_convolutions, resolve_kernels
from hpe_jax.models.layers import DepthwiseConvBN
from hpe_jax.train_state import create_train_state, make_optimizer, split_model, train_step

# A forward-pass 1x1 convolution in StableHLO: its kernel operand is tensor<1x1xINxOUTx...>.
_POINTWISE_CONV = re.compile(r"stablehlo\.convolution.*: \(tensor<[^>]+>, tensor<1x1x\d+x\d+x")


@pytest.mark.parametrize(
    ("kernels", "platform", "expected"),
    [
        ("auto", "cpu", "cpu"),
        ("auto", "gpu", "xla"),
        ("auto", "cuda", "xla"),
        ("auto", "rocm", "xla"),
        ("auto", "tpu", "xla"),
        ("xla", "cpu", "xla"),
        ("cpu", "tpu", "cpu"),
    ],
)
def test_resolve_kernels(kernels, platform, expected):
    assert resolve_kernels(kernels, platform) == expected


def test_resolve_kernels_defaults_to_the_default_backend(monkeypatch):
    assert resolve_kernels("auto") == resolve_kernels("auto", jax.default_backend())
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert resolve_kernels("auto") == "xla"
    assert resolve_kernels("auto", None) == "xla"
    assert resolve_kernels("cpu") == "cpu"


def test_unknown_kernels_name_the_choices():
    assert KERNEL_CHOICES == ("auto", "xla", "cpu")
    with pytest.raises(ValueError, match="auto, xla, cpu; got 'grouped'"):
        resolve_kernels("grouped", "cpu")


def test_grouped_convolutions_reads_stablehlo_and_hlo_text():
    stablehlo = (
        "%0 = stablehlo.convolution(%a, %b) {batch_group_count = 1 : i64, "
        "feature_group_count = 96 : i64}\n"
        "%1 = stablehlo.convolution(%c, %d) {batch_group_count = 1 : i64, "
        "feature_group_count = 1 : i64}\n"
    )
    hlo = "%c = f32[2,8,8,96]{3,2,1,0} convolution(%x, %k), feature_group_count=96, dim_labels=b01f"
    assert grouped_convolutions(stablehlo) == [96]
    assert grouped_convolutions(hlo) == [96]
    assert grouped_convolutions(stablehlo.replace("= 96", "= 1")) == []


def _lowered_train_step(kernels: str, platform: str | None = None) -> tuple[str, HPENet]:
    """The StableHLO text of the library's training step (batch 2, 64x64, float32), lowered with
    abstract arguments, and the abstract model it runs."""
    config = get_train_config()
    config.model.kernels = kernels
    tx = make_optimizer(config, 10)
    model = nnx.eval_shape(lambda: HPENet(config.model, rngs=nnx.Rngs(0), platform=platform))
    train_def, _, params, batch_stats, rest = split_model(model)
    state = jax.eval_shape(
        lambda p, b, r: create_train_state(nnx.merge(train_def, p, b, r), tx, 0),
        params,
        batch_stats,
        rest,
    )
    batch = {
        "image": jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32),
        "coarse": jax.ShapeDtypeStruct((2, 3), jnp.int32),
        "shift": jax.ShapeDtypeStruct((2, 3), jnp.int32),
        "angles": jax.ShapeDtypeStruct((2, 3), jnp.float32),
    }
    step = jax.jit(functools.partial(train_step, graphdef=train_def, tx=tx, loss_alpha=1.0))
    return step.lower(state, batch, rest).as_text(), model


def test_xla_training_step_holds_grouped_convolutions_and_cpu_none():
    """'auto' for a TPU builds the 'xla' program: every depthwise conv and its input gradient is
    a grouped convolution and the 1x1 convs are convolutions. 'cpu' has no grouped convolution
    and runs every 1x1 conv as a matmul."""
    xla_text, model = _lowered_train_step("auto", platform="tpu")
    assert model.kernels == "xla"
    widths = [
        m.kernel.shape[-1] for _, m in nnx.iter_graph(model) if isinstance(m, DepthwiseConvBN)
    ]
    assert len(widths) == 15
    assert sorted(grouped_convolutions(xla_text)) == sorted(widths * 2)
    assert _POINTWISE_CONV.search(xla_text)

    cpu_text, model = _lowered_train_step("cpu")
    assert model.kernels == "cpu"
    assert grouped_convolutions(cpu_text) == []
    assert " stablehlo.convolution" in cpu_text
    assert not _POINTWISE_CONV.search(cpu_text)


@pytest.mark.parametrize(
    ("stored", "expected"), [("shifted_sum", "cpu"), ("grouped", "xla"), ("auto", "auto")]
)
def test_upgrade_model_config_translates_depthwise_impl(stored, expected):
    old = {"variant": "s", "dtype": "float32", "depthwise_impl": stored}
    assert upgrade_model_config(old) == {"variant": "s", "dtype": "float32", "kernels": expected}
    assert "depthwise_impl" in old  # the argument is not modified
    assert upgrade_model_config({"kernels": "xla"}) == {"kernels": "xla"}
    with pytest.raises(ValueError, match="depthwise_impl must be one of"):
        upgrade_model_config({"depthwise_impl": "fast"})


def test_a_checkpoint_whose_config_names_depthwise_impl_loads(tmp_path):
    """A stored config with ``depthwise_impl`` loads; ``load_model``'s ``kernels`` picks the set."""
    model = nnx.eval_shape(lambda: HPENet(get_config("s"), rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    values = jax.tree.map(
        lambda v: rng.standard_normal(v.shape).astype(v.dtype), nnx.state(model, MODEL_VARIABLES)
    )
    nnx.update(model, values)
    old_config = get_config("s")
    del old_config.kernels
    old_config.depthwise_impl = "grouped"
    path = save_model(tmp_path / "1", model, old_config)
    loaded = hpe_jax.load_model(path, kernels="cpu")
    assert loaded.kernels == "cpu"
    np.testing.assert_array_equal(
        np.asarray(loaded.fc_roll_shift.kernel[...]), np.asarray(model.fc_roll_shift.kernel[...])
    )
