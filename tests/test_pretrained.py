"""Import of the official EfficientNetV2 TF weights (.npy dict) into the backbone.

A synthetic file in the TF naming of the FULL ``s`` classification network (40 blocks, the
ImageNet head) with random values of the TF shapes is loaded; the expected NNX values are derived
here independently: TF name -> PyTorch name of the original (its naming rules and layout permutes,
restated below) -> the already tested PyTorch converter's layout.
"""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx
from flax.traverse_util import flatten_dict

import hpe_jax
from hpe_jax.checkpoint import MODEL_VARIABLES, load_model, model_state
from hpe_jax.convert_torch import torch_entries
from hpe_jax.models import HPENet, get_config
from hpe_jax.pretrained import (
    EMA_SUFFIX,
    format_report,
    load_tf_backbone_npy,
    main,
    tf_entries,
)

# Full efficientnet_v2_s: (expand, kernel, stride, in, out, repeats, se, fused), stage 6 included.
FULL_S = (
    (1, 3, 1, 24, 24, 2, False, True),
    (4, 3, 2, 24, 48, 4, False, True),
    (4, 3, 2, 48, 64, 4, False, True),
    (4, 3, 2, 64, 128, 6, True, False),
    (6, 3, 1, 128, 160, 9, True, False),
    (6, 3, 2, 160, 256, 15, True, False),
)
KEPT_S = 25
BN_FIELDS = ("gamma", "beta", "moving_mean", "moving_variance")


def _bn_shapes(scope: str, width: int) -> dict[str, tuple[int, ...]]:
    return {f"{scope}/{f}": (width,) for f in BN_FIELDS}


def _block_shapes(scope: str, e: int, k: int, cin: int, cout: int, fused: bool) -> dict:
    mid = cin * e
    if fused and e == 1:
        return {f"{scope}/conv2d/kernel": (k, k, cin, cout)} | _bn_shapes(
            f"{scope}/tpu_batch_normalization", cout
        )
    if fused:
        return (
            {
                f"{scope}/conv2d/kernel": (k, k, cin, mid),
                f"{scope}/conv2d_1/kernel": (1, 1, mid, cout),
            }
            | _bn_shapes(f"{scope}/tpu_batch_normalization", mid)
            | _bn_shapes(f"{scope}/tpu_batch_normalization_1", cout)
        )
    sq = cin // 4
    return (
        {
            f"{scope}/conv2d/kernel": (1, 1, cin, mid),
            f"{scope}/depthwise_conv2d/depthwise_kernel": (k, k, mid, 1),
            f"{scope}/se/conv2d/kernel": (1, 1, mid, sq),
            f"{scope}/se/conv2d/bias": (sq,),
            f"{scope}/se/conv2d_1/kernel": (1, 1, sq, mid),
            f"{scope}/se/conv2d_1/bias": (mid,),
            f"{scope}/conv2d_1/kernel": (1, 1, mid, cout),
        }
        | _bn_shapes(f"{scope}/tpu_batch_normalization", mid)
        | _bn_shapes(f"{scope}/tpu_batch_normalization_1", mid)
        | _bn_shapes(f"{scope}/tpu_batch_normalization_2", cout)
    )


def _full_s_shapes() -> dict[str, tuple[int, ...]]:
    """TF variable names (no EMA suffix) and shapes of the full efficientnetv2-s classifier."""
    shapes = {"stem/conv2d/kernel": (3, 3, 3, 24)} | _bn_shapes("stem/tpu_batch_normalization", 24)
    i = 0
    for e, k, _, cin, cout, n, _, fused in FULL_S:
        for r in range(n):
            shapes |= _block_shapes(f"blocks_{i}", e, k, cin if r == 0 else cout, cout, fused)
            i += 1
    assert i == 40
    shapes |= {"head/conv2d/kernel": (1, 1, 256, 1280)}
    shapes |= _bn_shapes("head/tpu_batch_normalization", 1280)
    shapes |= {"head/dense/kernel": (1280, 1000), "head/dense/bias": (1000,)}
    return shapes


def _random_tf_weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in _full_s_shapes().items():
        value = rng.standard_normal(shape, dtype=np.float32)
        weights[name + EMA_SUFFIX] = np.abs(value) if name.endswith("variance") else value
    weights["global_step"] = np.array(1000, np.int64)
    return weights


# The original's naming rules (PyTorch module -> TF scope), restated for an independent check.
TORCH_TO_TF_MODULE = {
    "fused": ("conv2d", "tpu_batch_normalization"),
    "fused_point_wise": ("conv2d_1", "tpu_batch_normalization_1"),
    "linear_bottleneck": ("conv2d", "tpu_batch_normalization"),
    "depth_wise": ("depthwise_conv2d", "tpu_batch_normalization_1"),
    "point_wise": ("conv2d_1", "tpu_batch_normalization_2"),
}
TORCH_TO_TF_BN = dict(
    zip(("weight", "bias", "running_mean", "running_var"), BN_FIELDS, strict=True)
)


def _tf_name_of_torch_key(key: str) -> str:
    """'blocks.12.block.se.fc2.bias' -> 'blocks_12/se/conv2d_1/bias/ExponentialMovingAverage'."""
    parts = key.split(".")
    if parts[0] == "stem":
        scope, (conv, bn), (index, leaf) = "stem", TORCH_TO_TF_MODULE["fused"], parts[1:]
    elif parts[3] == "se":
        layer = {"fc1": "conv2d", "fc2": "conv2d_1"}[parts[4]]
        leaf = "kernel" if parts[5] == "weight" else "bias"
        return f"blocks_{parts[1]}/se/{layer}/{leaf}{EMA_SUFFIX}"
    else:
        scope, (conv, bn), (index, leaf) = (
            f"blocks_{parts[1]}",
            TORCH_TO_TF_MODULE[parts[3]],
            parts[4:],
        )
    if index == "0":
        kernel = "depthwise_kernel" if conv == "depthwise_conv2d" else "kernel"
        return f"{scope}/{conv}/{kernel}{EMA_SUFFIX}"
    return f"{scope}/{bn}/{TORCH_TO_TF_BN[leaf]}{EMA_SUFFIX}"


def _tf_to_torch_layout(name: str, w: np.ndarray) -> np.ndarray:
    """HWIO -> OIHW; depthwise (H, W, C, 1) -> (C, 1, H, W); vectors unchanged."""
    if w.ndim != 4:
        return w
    return w.transpose(2, 3, 0, 1) if "depthwise_kernel" in name else w.transpose(3, 2, 0, 1)


@pytest.fixture(scope="module")
def tf_weights() -> dict[str, np.ndarray]:
    return _random_tf_weights(seed=1)


@pytest.fixture(scope="module")
def npy_path(tmp_path_factory, tf_weights):
    path = tmp_path_factory.mktemp("npy") / "efficientnetv2-s-21k.npy"
    np.save(path, tf_weights, allow_pickle=True)
    return path


@pytest.fixture(scope="module")
def fresh() -> HPENet:
    """A freshly initialised network (seed 0); never modified by the tests."""
    return hpe_jax.init_model("s", seed=0)


@pytest.fixture(scope="module")
def loaded(fresh, npy_path):
    model = nnx.clone(fresh)
    report = load_tf_backbone_npy(model, npy_path)
    return model, report


def _value(variable: nnx.Variable) -> np.ndarray:
    return np.asarray(variable[...])


def test_entries_cover_every_backbone_variable_once(fresh):
    entries = tf_entries(fresh)
    covered = [id(variable) for _, variable, _ in entries]
    backbone = {
        id(node) for _, node in nnx.iter_graph(fresh.backbone) if isinstance(node, MODEL_VARIABLES)
    }
    assert len(covered) == len(set(covered)) == len(backbone) == 380
    assert set(covered) == backbone
    assert len({name for name, _, _ in entries}) == len(entries)


def test_every_backbone_variable_matches_the_original_mapping(loaded, tf_weights):
    model, report = loaded
    expected_names = set()
    for key, variable, torch_to_nnx in torch_entries(model):
        if not key.startswith(("stem.", "blocks.")):
            continue
        tf_name = _tf_name_of_torch_key(key)
        expected_names.add(tf_name)
        expected = torch_to_nnx(_tf_to_torch_layout(tf_name, tf_weights[tf_name]))
        np.testing.assert_array_equal(_value(variable), expected, err_msg=f"{key} <- {tf_name}")
    assert set(report["used"]) == expected_names
    assert len(report["used"]) == 380
    assert report["missing"] == []


def test_explicit_examples(loaded, tf_weights):
    model, _ = loaded
    bb = model.backbone

    def tf(name: str) -> np.ndarray:
        return tf_weights[name + EMA_SUFFIX]

    # stem kernel: HWIO on both sides.
    np.testing.assert_array_equal(_value(bb.stem.conv.kernel), tf("stem/conv2d/kernel"))
    # BN: gamma -> scale, beta -> bias, moving_mean -> mean, moving_variance -> var.
    stem_bn = "stem/tpu_batch_normalization"
    np.testing.assert_array_equal(_value(bb.stem.bn.scale), tf(f"{stem_bn}/gamma"))
    np.testing.assert_array_equal(_value(bb.stem.bn.bias), tf(f"{stem_bn}/beta"))
    np.testing.assert_array_equal(_value(bb.stem.bn.mean), tf(f"{stem_bn}/moving_mean"))
    np.testing.assert_array_equal(_value(bb.stem.bn.var), tf(f"{stem_bn}/moving_variance"))
    # stage 1, expand 1: the single fused conv.
    assert bb.blocks[1].fused_point_wise is None
    np.testing.assert_array_equal(
        _value(bb.blocks[1].fused.conv.kernel), tf("blocks_1/conv2d/kernel")
    )
    # blocks_2: first block of stage 2, fused with expand:
    # conv2d (3x3 24->96), conv2d_1 (1x1 96->48).
    b2 = bb.blocks[2]
    assert b2.fused.conv.kernel.shape == (3, 3, 24, 96)
    np.testing.assert_array_equal(_value(b2.fused.conv.kernel), tf("blocks_2/conv2d/kernel"))
    np.testing.assert_array_equal(
        _value(b2.fused.bn.var), tf("blocks_2/tpu_batch_normalization/moving_variance")
    )
    np.testing.assert_array_equal(
        _value(b2.fused_point_wise.conv.kernel), tf("blocks_2/conv2d_1/kernel")
    )
    np.testing.assert_array_equal(
        _value(b2.fused_point_wise.bn.var), tf("blocks_2/tpu_batch_normalization_1/moving_variance")
    )
    # blocks_10: first MBConv (stage 4, 64 -> 256 -> 128, SE to 16).
    b10 = bb.blocks[10]
    dw = tf("blocks_10/depthwise_conv2d/depthwise_kernel")
    assert dw.shape == (3, 3, 256, 1) and b10.depth_wise.kernel.shape == (3, 3, 256)
    np.testing.assert_array_equal(_value(b10.depth_wise.kernel), dw[:, :, :, 0])
    np.testing.assert_array_equal(
        _value(b10.depth_wise.bn.var), tf("blocks_10/tpu_batch_normalization_1/moving_variance")
    )
    np.testing.assert_array_equal(_value(b10.se.fc1.bias), tf("blocks_10/se/conv2d/bias"))
    np.testing.assert_array_equal(_value(b10.se.fc2.bias), tf("blocks_10/se/conv2d_1/bias"))
    assert b10.se.fc1.bias.shape == (16,)
    np.testing.assert_array_equal(_value(b10.se.fc1.kernel), tf("blocks_10/se/conv2d/kernel")[0, 0])
    np.testing.assert_array_equal(
        _value(b10.point_wise.conv.kernel), tf("blocks_10/conv2d_1/kernel")
    )
    np.testing.assert_array_equal(
        _value(b10.point_wise.bn.var), tf("blocks_10/tpu_batch_normalization_2/moving_variance")
    )
    # last kept block.
    np.testing.assert_array_equal(
        _value(bb.blocks[24].linear_bottleneck.bn.scale),
        tf("blocks_24/tpu_batch_normalization/gamma"),
    )


def test_ignored_are_stage_6_head_and_step(loaded, tf_weights):
    _, report = loaded
    stage6 = {f"blocks_{i}" for i in range(KEPT_S, 40)}
    assert len(report["ignored"]) == 15 * 19 + 7 + 1
    for name in report["ignored"]:
        assert name == "global_step" or name.split("/")[0] in stage6 | {"head"}, name
    assert set(report["ignored"]) | set(report["used"]) == set(tf_weights)


def test_only_the_backbone_changes(loaded, fresh):
    model, _ = loaded
    for name in ("side", "aspp", "fc_yaw_coarse", "fc_roll_shift"):
        before = model_state(getattr(fresh, name))
        after = model_state(getattr(model, name))
        for a, b in zip(flatten_dict(before).values(), flatten_dict(after).values(), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(
        _value(model.backbone.stem.conv.kernel), _value(fresh.backbone.stem.conv.kernel)
    )


def test_ema_preferred_over_raw(fresh, tf_weights):
    both = dict(tf_weights)
    for name, value in tf_weights.items():
        if name.endswith(EMA_SUFFIX):
            both[name.removesuffix(EMA_SUFFIX)] = value + 1
    model = nnx.clone(fresh)
    report = load_tf_backbone_npy(model, both)
    assert all(name.endswith(EMA_SUFFIX) for name in report["used"])
    assert "stem/conv2d/kernel" in report["ignored"]
    np.testing.assert_array_equal(
        _value(model.backbone.stem.conv.kernel), tf_weights["stem/conv2d/kernel" + EMA_SUFFIX]
    )


def test_raw_weights_used_when_no_ema(fresh, tf_weights):
    raw = {name.removesuffix(EMA_SUFFIX): value for name, value in tf_weights.items()}
    model = nnx.clone(fresh)
    report = load_tf_backbone_npy(model, raw)
    assert len(report["used"]) == 380
    assert not any(name.endswith(EMA_SUFFIX) for name in report["used"])
    np.testing.assert_array_equal(
        _value(model.backbone.blocks[10].se.fc2.bias), raw["blocks_10/se/conv2d_1/bias"]
    )
    assert format_report(report).splitlines()[0] == "used 380 TF variables (0 EMA, 380 raw)"


def test_missing_variable_raises_and_copies_nothing(fresh, tf_weights):
    name = "blocks_7/tpu_batch_normalization_1/moving_variance" + EMA_SUFFIX
    partial = {k: v for k, v in tf_weights.items() if k != name}
    model = nnx.clone(fresh)
    with pytest.raises(ValueError, match="missing") as err:
        load_tf_backbone_npy(model, partial)
    assert name in str(err.value)
    assert "backbone/blocks/7/fused_point_wise/bn/var" in str(err.value)
    np.testing.assert_array_equal(
        _value(model.backbone.stem.conv.kernel), _value(fresh.backbone.stem.conv.kernel)
    )


def test_missing_variable_lenient(fresh, tf_weights):
    name = "blocks_7/tpu_batch_normalization_1/moving_variance" + EMA_SUFFIX
    partial = {k: v for k, v in tf_weights.items() if k != name}
    model = nnx.clone(fresh)
    report = load_tf_backbone_npy(model, partial, strict=False)
    assert report["missing"] == [name]
    assert len(report["used"]) == 379
    np.testing.assert_array_equal(_value(model.backbone.blocks[7].fused_point_wise.bn.var), 1.0)
    np.testing.assert_array_equal(
        _value(model.backbone.blocks[7].fused_point_wise.bn.mean),
        tf_weights["blocks_7/tpu_batch_normalization_1/moving_mean" + EMA_SUFFIX],
    )


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("blocks_12/se/conv2d_1/bias", (10,)),
        ("blocks_12/depthwise_conv2d/depthwise_kernel", (3, 3, 256, 2)),
        ("blocks_3/conv2d/kernel", (3, 3, 96, 48)),
    ],
)
def test_wrong_shape_raises_with_name(fresh, tf_weights, name, shape):
    bad = dict(tf_weights)
    bad[name + EMA_SUFFIX] = np.zeros(shape, np.float32)
    model = nnx.clone(fresh)
    with pytest.raises(ValueError, match="wrong shape") as err:
        load_tf_backbone_npy(model, bad, strict=False)
    assert name + EMA_SUFFIX in str(err.value)
    assert str(shape) in str(err.value)


def test_other_variant_is_named(tf_weights):
    abstract_m = nnx.eval_shape(lambda: HPENet(get_config("m"), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="as variant 's': pass --variant s"):
        load_tf_backbone_npy(abstract_m, tf_weights)


def test_not_a_dict_file(tmp_path, fresh):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match=r"array\.npy: expected a pickled dict"):
        load_tf_backbone_npy(nnx.clone(fresh), path)


def test_cli_writes_checkpoint(tmp_path, npy_path, loaded, fresh, capsys):
    model, _ = loaded
    main(["--npy", str(npy_path), "--variant", "s", "--output", str(tmp_path / "ckpt")])
    out = capsys.readouterr().out
    assert "used 380 TF variables (380 EMA, 0 raw)" in out
    assert "ignored 293 TF variables:" in out
    assert "  blocks_25: 19\n" in out and "  blocks_39: 19\n" in out
    assert "  head: 7\n" in out and "  global_step: 1\n" in out
    restored = load_model(tmp_path / "ckpt")
    expected = flatten_dict(model_state(model))
    got = flatten_dict(model_state(restored))
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(value), err_msg=str(key))
    np.testing.assert_array_equal(
        _value(restored.fc_yaw_coarse.kernel), _value(fresh.fc_yaw_coarse.kernel)
    )
