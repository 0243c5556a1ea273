"""The 300W-LP recipe (configs/w300lp_scratch.py) on GPU nodes: 32 images per GPU, bfloat16
compute, the learning-rate rule of configs/w300lp_tpu_slice.py (sqrt scaling, warm-up, cosine).

One node, one process driving its GPUS GPUs (default 8):

    python train_main.py --config=configs/w300lp_gpu_node.py:8 --workdir=workdirs/w300lp_gpu \\
        --config.data.train_dir=SHARDS_300W_LP --config.data.val_dir=SHARDS_AFLW2000

Several nodes under SLURM (one process per node; JAX reads the SLURM variables): see README.md,
with ``--config=configs/w300lp_gpu_node.py:GPUS_IN_ALL_NODES`` and
``--config.distributed.enabled=true``.
"""

import ml_collections

from configs import w300lp_tpu_slice


def get_config(gpus: str = "8") -> ml_collections.ConfigDict:
    config = w300lp_tpu_slice.get_config(gpus)
    config.distributed.enabled = False  # one process per node; multi-node runs enable it
    config.data.worker_count = 8
    return config
