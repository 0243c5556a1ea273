"""Independent PyTorch definition of the original head-pose network (test/benchmark reference only).

Written from ``shared/design/MODEL.md``: EfficientNetV2 stem + stages 1-5, the FPAS pyramid
(``side``), the ASPP with ECA-like channel attention (``aspp``) and six multi-bin dense heads.
Module names reproduce the original checkpoint keys exactly, so a state dict saved by the
original code loads with ``load_state_dict(strict=True)``.

Layouts are PyTorch's: images NCHW, float32, normalised RGB. Angles are in degrees, label
order (yaw, pitch, roll).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NUM_COARSE_BINS = 10
NUM_SHIFT_BINS = 20
COARSE_BIN_DEGREES = 20.0
ANGLE_OFFSET_DEGREES = 100.0
HEAD_LR_MULTIPLIER = 5.0
ASPP_CHANNELS = 256
HEAD_NAMES = (
    "fc_yaw_coarse",
    "fc_yaw_shift",
    "fc_pitch_coarse",
    "fc_pitch_shift",
    "fc_roll_coarse",
    "fc_roll_shift",
)


@dataclass(frozen=True)
class StageSpec:
    """One EfficientNetV2 stage: expand ratio, kernel, stride, widths, repeats, SE, fused."""

    expand: int
    kernel: int
    stride: int
    in_ch: int
    out_ch: int
    repeats: int
    se: bool
    fused: bool


@dataclass(frozen=True)
class VariantSpec:
    """Kept stages (1-5) of a variant and the block count of the full network (all stages)."""

    stages: tuple[StageSpec, ...]
    total_blocks: int

    @property
    def kept_blocks(self) -> int:
        return sum(stage.repeats for stage in self.stages)

    @property
    def tap_indices(self) -> tuple[int, ...]:
        """Block indices (from 0) of the last block of stages 2, 3, 4 and 5."""
        ends: list[int] = []
        count = 0
        for stage in self.stages:
            count += stage.repeats
            ends.append(count - 1)
        return tuple(ends[1:])

    @property
    def pyramid_channels(self) -> tuple[int, ...]:
        """Widths (c1, c2, c3, c4) of the four taps."""
        return tuple(stage.out_ch for stage in self.stages[1:])


VARIANTS: dict[str, VariantSpec] = {
    "s": VariantSpec(
        stages=(
            StageSpec(1, 3, 1, 24, 24, 2, False, True),
            StageSpec(4, 3, 2, 24, 48, 4, False, True),
            StageSpec(4, 3, 2, 48, 64, 4, False, True),
            StageSpec(4, 3, 2, 64, 128, 6, True, False),
            StageSpec(6, 3, 1, 128, 160, 9, True, False),
        ),
        total_blocks=40,
    ),
    "m": VariantSpec(
        stages=(
            StageSpec(1, 3, 1, 24, 24, 3, False, True),
            StageSpec(4, 3, 2, 24, 48, 5, False, True),
            StageSpec(4, 3, 2, 48, 80, 5, False, True),
            StageSpec(4, 3, 2, 80, 160, 7, True, False),
            StageSpec(6, 3, 1, 160, 176, 14, True, False),
        ),
        total_blocks=57,
    ),
    "l": VariantSpec(
        stages=(
            StageSpec(1, 3, 1, 32, 32, 4, False, True),
            StageSpec(4, 3, 2, 32, 64, 7, False, True),
            StageSpec(4, 3, 2, 64, 96, 7, False, True),
            StageSpec(4, 3, 2, 96, 192, 10, True, False),
            StageSpec(6, 3, 1, 192, 224, 19, True, False),
        ),
        total_blocks=79,
    ),
}


def _round_to_multiple_of_8(value: float) -> int:
    """EfficientNet channel rounding: nearest multiple of 8, never below 8 nor 10% under."""
    rounded = max(8, int(value + 4) // 8 * 8)
    if rounded < 0.9 * value:
        rounded += 8
    return rounded


class ConvBNAct(nn.Sequential):
    """Conv (symmetric padding ``(k - 1) // 2``) -> BN -> SiLU (or identity); children 0, 1, 2."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
        act: bool = True,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_ch,
                out_ch,
                kernel,
                stride=stride,
                padding=(kernel - 1) // 2,
                groups=groups,
                bias=bias,
            ),
            nn.BatchNorm2d(out_ch, eps=1e-5, momentum=0.1),
            nn.SiLU() if act else nn.Identity(),
        )


class SqueezeExcite(nn.Module):
    """SE gate: pool -> 1x1 conv (bias) to ``hidden`` -> SiLU -> 1x1 conv (bias) -> sigmoid."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(pooled))))


class StochasticDepth(nn.Module):
    """Row-mode stochastic depth: in training, zero whole samples with probability ``prob``.

    Kept samples are scaled by ``1 / (1 - prob)``; the identity in eval mode or when ``prob == 0``.
    The mask is drawn from the global CPU generator, like the original.
    """

    def __init__(self, prob: float) -> None:
        super().__init__()
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.prob == 0.0:
            return x
        survival = 1.0 - self.prob
        mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(survival)
        return x * mask.div_(survival).to(x.device, x.dtype)


class EfficientNetV2Block(nn.Module):
    """Fused-MBConv or MBConv block; residual (+ stochastic depth) when stride 1 and in == out."""

    def __init__(
        self,
        expand: int,
        kernel: int,
        stride: int,
        in_ch: int,
        out_ch: int,
        se: bool,
        fused: bool,
        drop_prob: float,
    ) -> None:
        super().__init__()
        mid = _round_to_multiple_of_8(in_ch * expand)
        layers: list[tuple[str, nn.Module]]
        if expand == 1:
            if not fused or mid != out_ch:
                raise ValueError(
                    f"expand-1 block must be fused with in == out, got {in_ch}->{out_ch}"
                )
            layers = [("fused", ConvBNAct(in_ch, mid, kernel, stride))]
        elif fused:
            layers = [
                ("fused", ConvBNAct(in_ch, mid, kernel, stride)),
                ("fused_point_wise", ConvBNAct(mid, out_ch, 1, act=False)),
            ]
        else:
            layers = [
                ("linear_bottleneck", ConvBNAct(in_ch, mid, 1)),
                ("depth_wise", ConvBNAct(mid, mid, kernel, stride, groups=mid)),
            ]
            if se:
                layers.append(("se", SqueezeExcite(mid, in_ch // 4)))
            layers.append(("point_wise", ConvBNAct(mid, out_ch, 1, act=False)))
        self.block = nn.Sequential(OrderedDict(layers))
        self.use_residual = stride == 1 and in_ch == out_ch
        self.stochastic_path = StochasticDepth(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_residual:
            out = x + self.stochastic_path(out)
        return out


def _two_convs(
    in_ch: int, mid_ch: int, out_ch: int, k1: int, s1: int, k2: int, s2: int
) -> nn.Sequential:
    """Pyramid unit: conv(bias)-BN-SiLU, conv(bias)-BN-SiLU; children 0..5."""
    return nn.Sequential(
        *ConvBNAct(in_ch, mid_ch, k1, s1, bias=True), *ConvBNAct(mid_ch, out_ch, k2, s2, bias=True)
    )


def _upsample(channels: int) -> nn.Sequential:
    """ConvTranspose 2x2 stride 2 (bias) -> BN -> SiLU; children 0, 1, 2."""
    return nn.Sequential(
        nn.ConvTranspose2d(channels, channels, 2, stride=2, bias=True),
        nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1),
        nn.SiLU(),
    )


class Pyramid(nn.Module):
    """FPAS: fuses the four taps (strides 4, 8, 16, 16) into one map at stride 64 (4x4 at 224)."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.up1 = _two_convs(c4, c4, c3, 3, 1, 1, 1)
        self.up2 = _two_convs(c3, c3, c2, 3, 1, 1, 1)
        self.upsample2 = _upsample(c2)
        self.up3 = _two_convs(c2, c2, c1, 3, 1, 1, 1)
        self.upsample3 = _upsample(c1)
        self.down0 = _two_convs(c1, c1, c1, 3, 1, 3, 2)
        self.down1 = _two_convs(c1, c2, c2, 3, 1, 3, 2)
        self.down2 = _two_convs(c2, c3, c3, 3, 1, 3, 1)
        self.down3 = _two_convs(c3, c4, c4, 3, 2, 3, 2)

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        t1, t2, t3, t4 = taps
        o1 = self.up1(t4)
        o2 = self.up2(o1 + t3)
        o3 = self.up3(self.upsample2(o2) + t2)
        d = self.down0(self.upsample3(o3) + t1)
        d = self.down1(d + o3)
        d = self.down2(d + o2)
        return self.down3(d + o1)


class AtrousAttention(nn.Module):
    """ASPP atrous branch (1x1 conv for rate 1, 3x3 dilated otherwise) followed by ECA-like gating.

    Gate: global average pool (N, C) -> ``adjust_module`` (dense C->C, no bias) -> ``bypass_module``
    (Conv1d 1->1, kernel 3, pad 1, no bias, sliding over the channel axis) -> sigmoid -> multiply.
    """

    def __init__(self, in_ch: int, out_ch: int, rate: int) -> None:
        super().__init__()
        if rate > 1:
            conv = nn.Conv2d(in_ch, out_ch, 3, padding=rate, dilation=rate, bias=False)
        else:
            conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.artous_convolution = nn.Sequential(
            conv, nn.BatchNorm2d(out_ch, eps=1e-5, momentum=0.1), nn.SiLU()
        )
        self.adjust_module = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bypass_module = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.artous_convolution(x)
        n, c = y.shape[:2]
        pooled = y.mean(dim=(2, 3), keepdim=True)
        adjusted = self.adjust_module(pooled).view(n, 1, c)
        gate = torch.sigmoid(self.bypass_module(adjusted)).view(n, c, 1, 1)
        return y * gate


class AsppPooling(nn.Sequential):
    """Image-pooling branch: pool to 1x1, conv-BN-SiLU, bilinear resize back (a broadcast)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch, eps=1e-5, momentum=0.1),
            nn.SiLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class Aspp(nn.Module):
    """Four branches (1x1, atrous r1 + ECA, atrous r2 + ECA, pooling), concat, 1x1 project."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                ConvBNAct(in_ch, out_ch, 1),
                AtrousAttention(in_ch, out_ch, 1),
                AtrousAttention(in_ch, out_ch, 2),
                AsppPooling(in_ch, out_ch),
            ]
        )
        self.project = nn.Sequential(
            *ConvBNAct(4 * out_ch, out_ch, 1),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class ReferencePoseNet(nn.Module):
    """The original network; ``forward(x)`` with x (N, 3, H, W) returns six logit tensors.

    Output order: (yaw_coarse (N, 10), yaw_shift (N, 20), pitch_coarse, pitch_shift,
    roll_coarse, roll_shift).
    """

    def __init__(self, variant: str, drop_connect_rate: float = 0.2, dropout: float = 0.5) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
        spec = VARIANTS[variant]
        self.variant = variant
        self.tap_indices = spec.tap_indices
        stem_ch = spec.stages[0].in_ch
        self.stem = ConvBNAct(3, stem_ch, 3, 2)
        blocks: list[nn.Module] = []
        for stage in spec.stages:
            for repeat in range(stage.repeats):
                first = repeat == 0
                drop_prob = drop_connect_rate * len(blocks) / spec.total_blocks
                blocks.append(
                    EfficientNetV2Block(
                        stage.expand,
                        stage.kernel,
                        stage.stride if first else 1,
                        stage.in_ch if first else stage.out_ch,
                        stage.out_ch,
                        stage.se,
                        stage.fused,
                        drop_prob,
                    )
                )
        self.blocks = nn.Sequential(*blocks)
        c4 = spec.pyramid_channels[-1]
        self.side = Pyramid(spec.pyramid_channels)
        self.aspp = nn.Sequential(
            Aspp(c4, ASPP_CHANNELS, dropout),
            nn.Conv2d(ASPP_CHANNELS, ASPP_CHANNELS, 3, padding=1, bias=False),
            nn.BatchNorm2d(ASPP_CHANNELS, eps=1e-5, momentum=0.1),
            nn.SiLU(),
        )
        for name in HEAD_NAMES:
            bins = NUM_COARSE_BINS if name.endswith("coarse") else NUM_SHIFT_BINS
            self.add_module(name, nn.Linear(ASPP_CHANNELS, bins))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)
        taps: list[torch.Tensor] = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.tap_indices:
                taps.append(x)
        features = self.aspp(self.side(taps)).mean(dim=(2, 3))
        return tuple(getattr(self, name)(features) for name in HEAD_NAMES)


def build_reference_model(
    variant: str, drop_connect_rate: float = 0.2, dropout: float = 0.5
) -> ReferencePoseNet:
    """Build the original network for backbone ``variant`` in {'s', 'm', 'l'} (torch default init).

    ``drop_connect_rate``: stochastic-depth rate; block i (from 0) drops with probability
    ``drop_connect_rate * i / N_total`` (N_total = blocks of the full EfficientNetV2: 40/57/79).
    ``dropout``: dropout probability at the end of the ASPP projection.
    """
    return ReferencePoseNet(variant, drop_connect_rate=drop_connect_rate, dropout=dropout)


@torch.no_grad()
def original_init_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Apply the original init in place and return ``model``.

    nn.Conv2d: weight ~ N(0, sqrt(2 / (kh * kw * out_channels))), bias 0; nn.BatchNorm2d: weight 1,
    bias 0; nn.Linear: weight ~ N(0, 0.01), bias 0. Other modules (ConvTranspose2d, Conv1d) keep
    PyTorch's default init, as in the original.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            std = (2.0 / (kh * kw * module.out_channels)) ** 0.5
            module.weight.normal_(0.0, std, generator=generator)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, nn.Linear):
            module.weight.normal_(0.0, 0.01, generator=generator)
            module.bias.zero_()
    return model


@torch.no_grad()
def randomize_bn_stats_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Make every BatchNorm2d non-trivial in place and return ``model``.

    running_mean ~ N(0, 0.1^2), running_var ~ U(0.5, 1.5), weight ~ N(1, 0.1^2), bias ~ N(0, 0.1^2).
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
            module.weight.normal_(1.0, 0.1, generator=generator)
            module.bias.normal_(0.0, 0.1, generator=generator)
    return model


def _group_params(modules: list[nn.Module]) -> Iterator[nn.Parameter]:
    for module in modules:
        yield from module.parameters()


def make_torch_optimizer(model: ReferencePoseNet, lr: float = 1e-5) -> torch.optim.AdamW:
    """AdamW of the original: ``lr`` for stem/blocks/side/aspp, ``5 * lr`` for the six heads.

    PyTorch defaults otherwise (betas 0.9/0.999, eps 1e-8, weight_decay 0.01); each parameter
    appears exactly once.
    """
    backbone = [model.stem, model.blocks, model.side, model.aspp]
    heads = [getattr(model, name) for name in HEAD_NAMES]
    return torch.optim.AdamW(
        [
            {"params": list(_group_params(backbone)), "lr": lr},
            {"params": list(_group_params(heads)), "lr": lr * HEAD_LR_MULTIPLIER},
        ],
        lr=lr,
    )


def decode_angles(coarse_logits: torch.Tensor, shift_logits: torch.Tensor) -> torch.Tensor:
    """Expected angle in degrees, shape (N,), from coarse (N, 10) and shift (N, 20) logits.

    ``20 * sum(softmax(coarse) * [0..9]) - 100 + sum(softmax(shift) * [0..19])``.
    """
    coarse_idx = torch.arange(
        NUM_COARSE_BINS, dtype=coarse_logits.dtype, device=coarse_logits.device
    )
    shift_idx = torch.arange(NUM_SHIFT_BINS, dtype=shift_logits.dtype, device=shift_logits.device)
    coarse = (coarse_logits.softmax(dim=1) * coarse_idx).sum(dim=1)
    shift = (shift_logits.softmax(dim=1) * shift_idx).sum(dim=1)
    return coarse * COARSE_BIN_DEGREES - ANGLE_OFFSET_DEGREES + shift


def pose_loss(
    outputs: tuple[torch.Tensor, ...],
    coarse: torch.Tensor,
    shift: torch.Tensor,
    angles: torch.Tensor,
    alpha: float = 1.0,
) -> torch.Tensor:
    """Original training loss (scalar), summed over yaw, pitch, roll.

    ``outputs``: the model's six logits; ``coarse`` (N, 3) int64 bins in 0..9, ``shift`` (N, 3)
    int64 in 0..19, ``angles`` (N, 3) float degrees, columns (yaw, pitch, roll). Per angle:
    CE(coarse) + CE(shift) + alpha * mean(min((p - t)^2, (360 - (p - t))^2)).
    """
    total = outputs[0].new_zeros(())
    for axis in range(3):
        coarse_logits, shift_logits = outputs[2 * axis], outputs[2 * axis + 1]
        diff = decode_angles(coarse_logits, shift_logits) - angles[:, axis]
        wrapped = torch.minimum(diff.square(), (360.0 - diff).square()).mean()
        total = (
            total
            + F.cross_entropy(coarse_logits, coarse[:, axis])
            + F.cross_entropy(shift_logits, shift[:, axis])
            + alpha * wrapped
        )
    return total


def torch_train_step(
    model: ReferencePoseNet,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    coarse: torch.Tensor,
    shift: torch.Tensor,
    angles: torch.Tensor,
) -> float:
    """One original training step in train mode; returns the total loss before the update.

    ``images`` (N, 3, H, W) float32 normalised; ``coarse``/``shift`` (N, 3) int64; ``angles``
    (N, 3) float32 degrees, columns (yaw, pitch, roll).
    """
    model.train()
    loss = pose_loss(model(images), coarse, shift, angles)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())
