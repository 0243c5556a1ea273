"""Tests of the PyTorch parity reference (hpe_jax.testing.torch_reference) vs the original
checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from hpe_jax.testing.torch_reference import (  # noqa: E402
    VARIANTS,
    build_reference_model,
    decode_angles,
    make_torch_optimizer,
    original_init_,
    pose_loss,
    randomize_bn_stats_,
    torch_train_step,
)

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"
PARAM_COUNTS = {"s": 8_004_648, "m": 13_088_880, "l": 25_754_984}


def _reference_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    path = REFERENCE_DIR / f"reference_state_dict_efficientnet_v2_{variant}.tsv"
    if not path.is_file():
        pytest.skip(f"reference key list {path} not present")
    shapes: dict[str, tuple[int, ...]] = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}:{line_no}: expected 'key<TAB>shape<TAB>dtype', got {line!r}")
        key, shape, _ = fields
        dims = shape.strip("()").replace(" ", "").split(",")
        shapes[key] = tuple(int(d) for d in dims if d)
    return shapes


@pytest.fixture(scope="module")
def model_s() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_reference_model("s")
    original_init_(model, torch.Generator().manual_seed(1))
    randomize_bn_stats_(model, torch.Generator().manual_seed(2))
    return model


@pytest.mark.parametrize("variant", ["s", "m", "l"])
def test_state_dict_matches_reference(variant: str) -> None:
    expected = _reference_shapes(variant)
    state = build_reference_model(variant).state_dict()
    assert set(state) == set(expected)
    assert list(state) == list(expected)
    for key, tensor in state.items():
        assert tuple(tensor.shape) == expected[key], key


@pytest.mark.parametrize("variant", ["s", "m", "l"])
def test_parameter_count(variant: str) -> None:
    model = build_reference_model(variant)
    assert sum(p.numel() for p in model.parameters()) == PARAM_COUNTS[variant]


def test_variant_tables() -> None:
    assert {v: spec.kept_blocks for v, spec in VARIANTS.items()} == {"s": 25, "m": 34, "l": 47}
    assert VARIANTS["s"].tap_indices == (5, 9, 15, 24)
    assert VARIANTS["m"].tap_indices == (7, 12, 19, 33)
    assert VARIANTS["l"].tap_indices == (10, 17, 27, 46)
    assert VARIANTS["m"].pyramid_channels == (48, 80, 160, 176)
    assert VARIANTS["l"].pyramid_channels == (64, 96, 192, 224)


def test_unknown_variant_rejected() -> None:
    with pytest.raises(ValueError, match="unknown variant 'xl'"):
        build_reference_model("xl")


def test_stochastic_depth_probabilities() -> None:
    model = build_reference_model("s")
    probs = [block.stochastic_path.prob for block in model.blocks]
    assert probs == pytest.approx([0.2 * i / 40 for i in range(25)])
    assert [block.use_residual for block in model.blocks].count(False) == 4


def test_original_init_statistics() -> None:
    model = original_init_(build_reference_model("s"), torch.Generator().manual_seed(0))
    weight = model.aspp[1].weight
    assert weight.std().item() == pytest.approx((2.0 / (9 * 256)) ** 0.5, rel=0.01)
    assert torch.count_nonzero(model.side.up1[0].bias) == 0
    assert torch.all(model.stem[1].weight == 1) and torch.all(model.stem[1].bias == 0)
    assert model.fc_yaw_coarse.weight.std().item() == pytest.approx(0.01, rel=0.1)


def test_forward_shapes_and_pyramid(model_s: torch.nn.Module) -> None:
    captured: dict[str, torch.Tensor] = {}
    handle = model_s.side.register_forward_hook(
        lambda _module, _inputs, output: captured.setdefault("side", output)
    )
    model_s.eval()
    with torch.no_grad():
        outputs = model_s(torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3)))
    handle.remove()
    assert [tuple(o.shape) for o in outputs] == [(2, 10), (2, 20)] * 3
    assert tuple(captured["side"].shape) == (2, 160, 4, 4)
    assert all(torch.isfinite(o).all() for o in outputs)


def test_eca_gate_follows_design() -> None:
    branch = build_reference_model("s").aspp[0].convs[1]
    branch.eval()
    x = torch.randn(2, 160, 5, 5, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = branch.artous_convolution(x)
        pooled = y.mean(dim=(2, 3))
        adjusted = pooled @ branch.adjust_module.weight[:, :, 0, 0].T
        taps = branch.bypass_module.weight[0, 0]
        padded = torch.nn.functional.pad(adjusted, (1, 1))
        mixed = taps[0] * padded[:, :-2] + taps[1] * padded[:, 1:-1] + taps[2] * padded[:, 2:]
        expected = y * torch.sigmoid(mixed)[:, :, None, None]
        torch.testing.assert_close(branch(x), expected)


def test_decode_angles_exact() -> None:
    big = 1e4
    coarse = torch.full((1, 10), -big)
    coarse[0, 3] = big
    shift = torch.full((1, 20), -big)
    shift[0, 7] = big
    assert decode_angles(coarse, shift).item() == pytest.approx(20 * 3 - 100 + 7)
    uniform = decode_angles(torch.zeros(1, 10), torch.zeros(1, 20)).item()
    assert uniform == pytest.approx(20 * 4.5 - 100 + 9.5, abs=1e-5)


def test_pose_loss_wraps_angles() -> None:
    zeros = (torch.zeros(1, 10), torch.zeros(1, 20)) * 3
    labels = torch.zeros(1, 3, dtype=torch.long)
    ce = torch.log(torch.tensor(10.0)) + torch.log(torch.tensor(20.0))
    # Uniform logits predict -0.5 degrees for every angle. The original term
    # min(d^2, (360 - d)^2), d = p - t, wraps only d near +360, not d near -360.
    angles = torch.tensor([[-0.5, -360.5, 359.5]])
    loss = pose_loss(zeros, labels, labels, angles)
    expected = 3 * ce + 0.0 + 0.0 + 360.0**2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_optimizer_groups() -> None:
    model = build_reference_model("s")
    optimizer = make_torch_optimizer(model, lr=2e-5)
    backbone, heads = optimizer.param_groups
    assert backbone["lr"] == 2e-5 and heads["lr"] == pytest.approx(1e-4)
    assert heads["weight_decay"] == 0.01 and heads["betas"] == (0.9, 0.999)
    assert len(heads["params"]) == 12
    grouped = backbone["params"] + heads["params"]
    assert len({id(p) for p in grouped}) == len(grouped) == len(list(model.parameters()))


def test_train_step_changes_parameters(model_s: torch.nn.Module) -> None:
    torch.manual_seed(5)
    model = build_reference_model("s", drop_connect_rate=0.0, dropout=0.0)
    model.load_state_dict(model_s.state_dict())
    optimizer = make_torch_optimizer(model)
    gen = torch.Generator().manual_seed(6)
    images = torch.randn(2, 3, 64, 64, generator=gen)
    coarse = torch.randint(0, 10, (2, 3), generator=gen)
    shift = torch.randint(0, 20, (2, 3), generator=gen)
    angles = coarse * 20.0 - 100.0 + shift
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = torch_train_step(model, optimizer, images, coarse, shift, angles)
    after = model.state_dict()
    assert loss > 0
    assert not torch.equal(before["fc_yaw_coarse.weight"], after["fc_yaw_coarse.weight"])
    assert not torch.equal(before["stem.0.weight"], after["stem.0.weight"])
    assert not torch.equal(before["stem.1.running_mean"], after["stem.1.running_mean"])
    assert after["stem.1.num_batches_tracked"].item() == before["stem.1.num_batches_tracked"] + 1
