"""The original's DAD-3DHeads pretraining: train on DAD-3DHeads (its preprocessed ``train.json``,
samples with any |angle| > 99 degrees dropped), validate on AFLW2000 after every epoch.

Original (README): ``train.py --dataset DAD --filename_list datasets/DAD/train.json
--num_epoch 50 --batch_size 32 --lr 0.00001 --augment 0.5 --flip 1 --val_dataset AFLW2000``:
50 epochs, batch 32, AdamW at a constant 1e-5 (heads 5e-5), augmentation probability 0.5 WITH
horizontal flips, image 224. The result initialises configs/w300lp_from_dad.py.

Initialisation: the EfficientNetV2-S ImageNet-21k backbone, as configs/w300lp_scratch.py says
(``python -m hpe_jax.pretrained --npy efficientnetv2-s-21k.npy --variant s --output
pretrained/efficientnetv2_s_21k``).

Data (``python -m data_prep``): DAD-3DHeads as split ``train`` (``--dataset dad
--filename_list DAD/train.json``), AFLW2000 as split ``test``:

    python train_main.py --config=configs/dad_pretrain.py --workdir=workdirs/dad_pretrain \\
        --config.data.train_dir=DATA/dad3dheads --config.data.val_dir=DATA/aflw2000
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    # From default: batch 32, constant 1e-5 (heads x5), augment 0.5 with flips, image 224,
    # AFLW2000 validation. data.train_dir / data.val_dir: on the command line.
    config = default.get_config()
    config.num_epochs = 50
    config.init_from = default.PRETRAINED_BACKBONE
    config.val_metric = "wrapped"  # the best epoch by the original's validation error
    return config
