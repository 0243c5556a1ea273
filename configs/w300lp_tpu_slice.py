"""The 300W-LP recipe (configs/w300lp_scratch.py) scaled to a TPU slice: 32 images per chip,
bfloat16 compute, square-root learning-rate scaling with a warm-up.

    python train_main.py --config=configs/w300lp_tpu_slice.py:CHIPS --workdir=gs://BUCKET/w300lp \\
        --config.data.train_dir=gs://BUCKET/data/w300lp --config.data.val_dir=gs://BUCKET/data/aflw2000

CHIPS (default 8: a v5e-8 or v6e-8) sets the global batch, 32 x CHIPS: the original's 32 per
step on each chip, which ``python -m hpe_jax.aot --topology v5e-8 --per-device-batch 32`` shows
fits in 1.3 GiB per chip in bfloat16 (``BENCHMARKS.md``). Every host of a multi-host slice runs
the same command (``config.distributed.enabled``: JAX finds the slice's hosts itself).

Learning rate: the original's 1e-5 at batch 32, times sqrt(global batch / 32) (2.8e-5 at 256).
Adam-type optimisers keep their update size under batch growth when the rate grows with the
square root of the batch (Malladi et al., "On the SDEs and Scaling Rules for Adaptive Gradient
Algorithms", NeurIPS 2022); linear scaling overshoots with Adam at 8x and more. The same number
of epochs (100) is kept, so the step count falls by the batch factor; a linear warm-up over the
first two epochs (at most 1000 steps) avoids the early large updates that a larger rate on a
freshly initialised head gives, then the rate decays by a cosine to 0 (the original's constant
rate has no schedule to keep at 1/8 of the steps).
"""

import math

import ml_collections

from configs import w300lp_scratch

PER_CHIP_BATCH = 32
ORIGINAL_BATCH, ORIGINAL_LR = 32, 1e-5
NUM_300W_LP = 122_415


def get_config(chips: str = "8") -> ml_collections.ConfigDict:
    config = w300lp_scratch.get_config()
    num_chips = int(chips)
    config.batch_size = PER_CHIP_BATCH * num_chips
    config.eval_batch_size = 64 * num_chips
    config.learning_rate = ORIGINAL_LR * math.sqrt(config.batch_size / ORIGINAL_BATCH)
    config.lr_schedule = "cosine"
    config.warmup_steps = min(1000, 2 * NUM_300W_LP // config.batch_size)
    config.model.dtype = "bfloat16"
    config.data.worker_count = 16
    config.data.num_threads = 8
    config.log_every_steps = 50
    config.checkpoint_every_steps = 1000
    config.distributed.enabled = True
    return config
