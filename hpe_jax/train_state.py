"""The training state, the optimiser of the original, and the pure jitted train / eval steps."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from hpe_jax.compiler_options import compiler_options
from hpe_jax.errors import UserError
from hpe_jax.models import HEAD_NAMES, HPENet
from hpe_jax.pose import decode_angles, pose_loss


@flax.struct.dataclass
class TrainState:
    """Everything a train step reads and writes.

    ``rng`` is raw uint32 key data (the dropout / stochastic-depth key of step ``s`` is
    ``fold_in(rng, s)``, so a resumed run draws the same masks). ``nonfinite_step`` is -1 while
    every loss so far was finite, else the first step whose loss was NaN/Inf (that step's update,
    and every later one, is not applied).
    """

    step: jax.Array
    params: nnx.State
    batch_stats: nnx.State
    opt_state: optax.OptState
    rng: jax.Array
    nonfinite_step: jax.Array


def _param_group(path: tuple[Any, ...], _: Any) -> str:
    top = path[0]
    name = getattr(top, "key", getattr(top, "name", top))
    return "heads" if name in HEAD_NAMES else "base"


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """The base learning rate per step: ``config.lr_schedule`` 'constant' (the original's) or
    'cosine' (linear warm-up over ``config.warmup_steps``, cosine decay to 0 at ``total_steps``)."""
    if config.lr_schedule == "constant":
        return optax.constant_schedule(config.learning_rate)
    if config.lr_schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0,
            config.learning_rate,
            config.warmup_steps,
            max(total_steps, config.warmup_steps + 1),
        )
    raise UserError(f"lr_schedule must be 'constant' or 'cosine', got {config.lr_schedule!r}")


def make_optimizer(
    config: ml_collections.ConfigDict, total_steps: int
) -> optax.GradientTransformation:
    """AdamW of the original: the base schedule (``learning_rate_schedule``) for
    stem/blocks/side/aspp and ``config.head_lr_multiplier`` times it for the six heads; betas
    (0.9, 0.999), eps 1e-8, decoupled weight decay ``config.weight_decay`` on every parameter
    (PyTorch's AdamW)."""
    base = learning_rate_schedule(config, total_steps)

    def adamw(scale: float) -> optax.GradientTransformation:
        return optax.adamw(
            lambda step: scale * base(step),
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=config.weight_decay,
        )

    return optax.multi_transform(
        {"base": adamw(1.0), "heads": adamw(config.head_lr_multiplier)},
        lambda params: jax.tree_util.tree_map_with_path(_param_group, params),
    )


def split_model(model: HPENet) -> tuple[nnx.GraphDef, nnx.GraphDef, nnx.State, nnx.State, Any]:
    """(train graphdef, eval graphdef, params, batch_stats, rest): ``rest`` is the model's rng
    state, reseeded in every train step."""
    model.train()
    train_def, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    model.eval()
    eval_def = nnx.graphdef(model)
    model.train()
    return train_def, eval_def, params, batch_stats, rest


def create_train_state(model: HPENet, tx: optax.GradientTransformation, seed: int) -> TrainState:
    """A fresh training state for ``model`` (step 0, new optimiser state)."""
    _, _, params, batch_stats, _ = split_model(model)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        rng=jax.random.key_data(jax.random.key(seed)),
        nonfinite_step=jnp.full((), -1, jnp.int32),
    )


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    rest: Any,
    *,
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    loss_alpha: float,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimisation step on a (global) batch: image (B, S, S, 3) NHWC normalised, coarse and
    shift (B, 3) int labels, angles (B, 3) degrees (yaw, pitch, roll).

    ``rest`` is the model's rng state from ``split_model`` (reseeded here from ``state.rng`` and
    the step). Pure: jit it with the batch sharded over the mesh's data axis and the state
    replicated; BN statistics are then those of the global batch. Returns the new state and
    scalar metrics (total loss, per-angle losses).
    """
    model = nnx.merge(graphdef, state.params, state.batch_stats, rest)
    nnx.reseed(model, dropout=jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step))

    def loss_fn(model: HPENet) -> tuple[jax.Array, dict[str, jax.Array]]:
        outputs = model(batch["image"])
        return pose_loss(
            outputs, batch["coarse"], batch["shift"], batch["angles"], alpha=loss_alpha
        )

    (loss, per_angle), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    batch_stats = nnx.state(model, nnx.BatchStat)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ok = jnp.isfinite(loss) & (state.nonfinite_step < 0)

    def keep_if_ok(new: Any, old: Any) -> Any:
        return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)

    new_state = state.replace(
        step=state.step + 1,
        params=keep_if_ok(params, state.params),
        batch_stats=keep_if_ok(batch_stats, state.batch_stats),
        opt_state=keep_if_ok(opt_state, state.opt_state),
        nonfinite_step=jnp.where(
            (state.nonfinite_step < 0) & ~jnp.isfinite(loss), state.step, state.nonfinite_step
        ),
    )
    metrics = {"loss": loss, **{f"loss_{name}": value for name, value in per_angle.items()}}
    return new_state, metrics


def predict_angles(
    params: nnx.State,
    batch_stats: nnx.State,
    rest: Any,
    images: jax.Array,
    *,
    graphdef: nnx.GraphDef,
) -> jax.Array:
    """Inference: (N, S, S, 3) normalised images -> (N, 3) degrees (yaw, pitch, roll).
    ``graphdef`` must be the eval-mode graphdef of ``split_model``."""
    model = nnx.merge(graphdef, params, batch_stats, rest)
    return decode_angles(model(images))


@dataclasses.dataclass(frozen=True)
class TrainProgram:
    """The jitted train step of one run and its arguments' shapes and shardings.

    ``step(state, batch, rest) -> (state, metrics)`` (``train_step`` with the run's graphdef,
    optimiser and loss weight; the state donated). ``state``, ``batch`` and ``rest`` are trees of
    ``jax.ShapeDtypeStruct`` with shardings: lower and compile with
    ``step.lower(program.state, program.batch, program.rest).compile()`` without any data, or
    call ``step`` on real arrays of those shapes. ``tx`` is the optimiser (``create_train_state``
    of a real model takes it), ``eval_graphdef`` the inference-mode graphdef for
    ``predict_angles``, ``platform`` the mesh's platform the kernels were chosen for.
    """

    step: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    tx: optax.GradientTransformation
    state: TrainState
    batch: dict[str, jax.ShapeDtypeStruct]
    rest: Any
    eval_graphdef: nnx.GraphDef
    platform: str


def build_model(config: ml_collections.ConfigDict, platform: str) -> HPENet:
    """The network of ``config.model`` with its kernels chosen for ``platform`` ('cpu', 'gpu',
    'tpu', ...), parameters initialised from ``config.seed``, in training mode."""
    rngs = nnx.Rngs(params=config.seed, dropout=config.seed)
    return HPENet(config.model, rngs=rngs, platform=platform)


def batch_spec(
    global_batch: int, image_size: int, sharding: NamedSharding
) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of one global training batch (the training loader's keys), sharded."""
    rows = (global_batch,)
    return {
        "image": jax.ShapeDtypeStruct(
            (*rows, image_size, image_size, 3), jnp.float32, sharding=sharding
        ),
        "coarse": jax.ShapeDtypeStruct((*rows, 3), jnp.int32, sharding=sharding),
        "shift": jax.ShapeDtypeStruct((*rows, 3), jnp.int32, sharding=sharding),
        "angles": jax.ShapeDtypeStruct((*rows, 3), jnp.float32, sharding=sharding),
    }


def make_train_step(
    config: ml_collections.ConfigDict, mesh: Mesh, total_steps: int
) -> TrainProgram:
    """The train step of ``config`` for ``mesh`` (batch split over its ``data`` axis, state
    replicated), with kernels and compiler options chosen from the platform of the mesh's devices
    (a topology's devices compile ahead of time on a CPU host). Builds no arrays: the network is
    traced abstractly, so neither data, checkpoints nor the target devices are needed.
    ``total_steps`` sets the optimiser's schedule."""
    platform = mesh.devices.flat[0].platform
    replicated = NamedSharding(mesh, P())
    model = nnx.eval_shape(lambda: build_model(config, platform))
    tx = make_optimizer(config, total_steps)
    train_def, eval_def, params, batch_stats, rest = split_model(model)
    state = jax.eval_shape(
        lambda p, b, r: create_train_state(nnx.merge(train_def, p, b, r), tx, config.seed),
        params,
        batch_stats,
        rest,
    )

    def place(tree: Any) -> Any:
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), tree
        )

    step = jax.jit(
        functools.partial(train_step, graphdef=train_def, tx=tx, loss_alpha=config.loss_alpha),
        in_shardings=(replicated, NamedSharding(mesh, P("data")), replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
        compiler_options=compiler_options(platform),
    )
    return TrainProgram(
        step=step,
        tx=tx,
        state=place(state),
        batch=batch_spec(config.batch_size, config.data.image_size, NamedSharding(mesh, P("data"))),
        rest=place(rest),
        eval_graphdef=eval_def,
        platform=platform,
    )
