"""Evaluation on AFLW2000-3D, the original's protocol for 300W-LP-trained models (``test.py
--dataset AFLW2000 --input_size 224 --crop 0``): loose crop of the face box with k = 0.2, resize
to 224, the 1,969 images with every |angle| <= 99 degrees.

    python -m data_prep --dataset aflw2000 --data_dir AFLW2000 --output_dir SHARDS --split test
    python eval_main.py --config=configs/eval_aflw2000.py --config.data.val_dir=SHARDS \\
        --checkpoint=WORKDIR_OR_CHECKPOINT

Set ``--config.model.variant`` (s, m, l) for a checkpoint of another backbone.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.data.val_dir = ""  # required: the converted AFLW2000 shards
    config.data.val_split = "test"
    config.data.val_mode = "aflw2000"
    config.data.image_size = 224
    config.eval_batch_size = 64  # the original test.py's
    return config
