"""Evaluation on AFLW2000-3D, the original's protocol for 300W-LP-trained models (``test.py
--dataset AFLW2000 --input_size 224 --crop 0``): loose crop of the face box with k = 0.2, resize
to 224, the 1,969 images with every |angle| <= 99 degrees.

    python -m data_prep --dataset aflw2000 --data_dir AFLW2000 --output_dir DATA --split test
    python eval_main.py --config=configs/eval_aflw2000.py --config.data.val_dir=DATA/aflw2000 \\
        --checkpoint=WORKDIR_OR_CHECKPOINT

Set ``--config.model.variant`` (s, m, l) for a checkpoint of another backbone.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    # Everything comes from default (split 'test', mode 'aflw2000', image 224, eval batch 64 as the
    # original test.py); data.val_dir: on the command line.
    return default.get_config()
