"""Evaluation on BIWI (prepared face crops; the original's ``test.py --dataset BIWI``).

Default: the transform for models trained on 300W-LP (``--input_size 240 --crop_size 224
--crop 1``): resize to 240, centre crop 224. The original evaluates those on the whole prepared
set (``biwi_list.txt``, 13,219 images): convert it as one split.

For models trained on BIWI (``--input_size 224 --crop 0``, the 30 % test split
``biwi_test_list.txt``, 3,331 images) resize to 224 only: add ``--config.data.val_input_size=224``
(configs/biwi_70_30.py validates that way).

    python -m data_prep --dataset biwi --data_dir BIWI --filename_list biwi_list.txt \\
        --output_dir DATA --split test
    python eval_main.py --config=configs/eval_biwi.py --config.data.val_dir=DATA/biwi \\
        --checkpoint=WORKDIR_OR_CHECKPOINT [--config.data.val_input_size=224]

As the original, the image is resized to a square (``Resize((240, 240))``) before the crop.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    # From default: split 'test', image 224, eval batch 64 (the original test.py's);
    # data.val_dir: on the command line.
    config = default.get_config()
    config.data.val_mode = "biwi"
    config.data.val_input_size = 240  # 224 for BIWI-trained models
    return config
