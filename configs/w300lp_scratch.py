"""The original's 300W-LP recipe: train on 300W-LP (122,415 images, ``300wlp_list.txt``),
validate on AFLW2000 after every epoch.

Original (README): ``train.py --dataset 300W_LP --filename_list 300wlp_list.txt --num_epoch 100
--batch_size 32 --lr 0.00001 --augment 0.5 --flip 0 --val_dataset AFLW2000``: 100 epochs, batch
32, AdamW at a constant 1e-5 (the six heads 5e-5, no schedule), augmentation probability 0.5,
NO horizontal flips, image 224.

Initialisation: built without ``--snapshot``, the original network gets the EfficientNetV2-S
ImageNet-21k backbone (``efficientnetv2-s-21k.npy``). (Its train.py defaults ``--snapshot`` to
``pretrained/pretrained_s.pkl``, a file not in its repository, loaded whole when present.) Here:

    python -m hpe_jax.pretrained --npy efficientnetv2-s-21k.npy --variant s \\
        --output pretrained/efficientnetv2_s_21k

Data (``python -m data_prep``): 300W-LP as split ``train``, AFLW2000 as split ``test``:

    python train_main.py --config=configs/w300lp_scratch.py --workdir=workdirs/w300lp_scratch \\
        --config.data.train_dir=DATA/w300lp --config.data.val_dir=DATA/aflw2000

``--config.init_from=''`` trains from a random initialisation.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    # From default: batch 32, constant 1e-5 (heads x5), augment 0.5, image 224, AFLW2000
    # validation. data.train_dir / data.val_dir: on the command line.
    config = default.get_config()
    config.data.flip = False
    config.num_epochs = 100
    config.init_from = default.PRETRAINED_BACKBONE
    config.val_metric = "wrapped"  # the best epoch by the original's validation error
    return config
