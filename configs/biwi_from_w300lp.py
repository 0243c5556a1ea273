"""The original's recommended BIWI recipe: the BIWI 70/30 recipe (configs/biwi_70_30.py)
starting from a 300W-LP-trained network (weights only, a new optimiser, epoch 0).

Original (README): "transfer the pretrained model from 300W_LP which is fine-tune for BIWI",
with ``--transfer 1 --snapshot <pretrained 300W_LP path>``. The command printed there repeats the
300W-LP training line (``--dataset 300W_LP ... --flip 0 --val_dataset AFLW2000``), evidently a
copy slip; this recipe trains on BIWI as the sentence says, with the BIWI recipe's settings:
100 epochs (the printed command's count), flips ON (not from the original: the printed command
says 0, for 300W-LP; the BIWI recipe uses 1), validation on the 30 % split resized to 224.

``init_from`` defaults to the best checkpoint of a configs/w300lp_from_dad.py run in
``workdirs/w300lp_from_dad``; any 300W-LP checkpoint (or the original's .pkl) works:

    python train_main.py --config=configs/biwi_from_w300lp.py \\
        --workdir=workdirs/biwi_from_w300lp \\
        --config.data.train_dir=DATA/biwi --config.data.val_dir=DATA/biwi \\
        [--config.init_from=W300LP_CHECKPOINT]
"""

import ml_collections

from configs import biwi_70_30


def get_config() -> ml_collections.ConfigDict:
    config = biwi_70_30.get_config()
    config.init_from = "workdirs/w300lp_from_dad/best"
    return config
