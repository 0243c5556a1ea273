"""The original's BIWI 70/30 recipe: train on the 70 % split of the prepared BIWI
(``biwi_train_list.txt``, 9,888 images), validate after every epoch on the 30 % split
(``biwi_test_list.txt``, 3,331 images) resized to 224 (no crop).

Original (README): ``train.py --dataset BIWI --filename_list biwi_train_list.txt --num_epoch 100
--batch_size 32 --lr 0.00001 --augment 0.5 --flip 1 --val_dataset BIWI --val_filename_list
biwi_test_list.txt``: 100 epochs, batch 32, AdamW at a constant 1e-5 (heads 5e-5),
augmentation probability 0.5 WITH horizontal flips, image 224; its test for BIWI-trained models
is ``--input_size 224 --crop 0`` (configs/eval_biwi.py with ``--config.data.val_input_size=224``).

Initialisation: the EfficientNetV2-S ImageNet-21k backbone, as configs/w300lp_scratch.py says.

Data (``python -m data_prep --dataset biwi``): ``--filename_list biwi_train_list.txt --split
train`` and ``--filename_list biwi_test_list.txt --split test``, both into the same dataset:

    python train_main.py --config=configs/biwi_70_30.py --workdir=workdirs/biwi_70_30 \\
        --config.data.train_dir=DATA/biwi --config.data.val_dir=DATA/biwi
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    # From default: batch 32, constant 1e-5 (heads x5), augment 0.5 with flips, image 224,
    # validation resized to 224 (val_input_size). data.train_dir / data.val_dir: command line.
    config = default.get_config()
    config.data.val_mode = "biwi"
    config.num_epochs = 100
    config.init_from = default.PRETRAINED_BACKBONE
    config.val_metric = "wrapped"  # the best epoch by the original's validation error
    return config
