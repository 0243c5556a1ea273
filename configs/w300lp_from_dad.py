"""The original's recommended 300W-LP recipe: the 300W-LP recipe (configs/w300lp_scratch.py:
100 epochs, no flips, validation on AFLW2000) starting from the DAD-3DHeads-pretrained network.

Original (README): the 300W-LP command plus ``--transfer 1 --snapshot <pretrained DAD-3DHeads
path>``: weights only, a new optimiser, epoch 0. Its published AFLW2000 result (MAE 3.42
degrees) comes from this chain: DAD-3DHeads (configs/dad_pretrain.py), then this.

``init_from`` defaults to the best checkpoint of a configs/dad_pretrain.py run in
``workdirs/dad_pretrain``; the original's released DAD checkpoint (.pkl) works as well:

    python train_main.py --config=configs/w300lp_from_dad.py --workdir=workdirs/w300lp_from_dad \\
        --config.data.train_dir=DATA/w300lp --config.data.val_dir=DATA/aflw2000 \\
        [--config.init_from=DAD_CHECKPOINT]
"""

import ml_collections

from configs import w300lp_scratch


def get_config() -> ml_collections.ConfigDict:
    config = w300lp_scratch.get_config()
    config.init_from = "workdirs/dad_pretrain/best"
    return config
