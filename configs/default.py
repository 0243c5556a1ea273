"""Defaults shared by every recipe: the original's optimiser, batch size, augmentation, loss and
input size, validation on AFLW2000. The recipes in this folder (one per training run of the
original) start from it and set their data, epochs, flip and starting weights."""

import ml_collections

from hpe_jax.models import get_config as get_model_config

# Written by `python -m hpe_jax.pretrained --npy efficientnetv2-s-21k.npy --variant s --output ...`:
# the ImageNet-21k backbone the original starts its recipes from.
PRETRAINED_BACKBONE = "pretrained/efficientnetv2_s_21k"


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = get_model_config("s")

    config.data = ml_collections.ConfigDict()
    # TFDS datasets from `python -m data_prep`: a version folder (DATA/w300lp/1.0.0), a dataset
    # folder (DATA/w300lp, newest version) or a data dir holding one dataset; local or gs://...
    config.data.train_dir = ""
    config.data.train_split = "train"
    config.data.val_dir = ""  # empty: no validation
    config.data.val_split = "test"
    config.data.val_mode = "aflw2000"  # 'aflw2000' (crop k=0.2, resize) or 'biwi'
    config.data.val_input_size = 224  # biwi mode: resize size before the centre crop
    config.data.image_size = 224
    config.data.augment = 0.5
    config.data.flip = True
    config.data.worker_count = 2
    config.data.num_threads = 2
    # When set (a ConfigDict with num_train, num_test, image_size, seed), synthetic heads are
    # generated and converted under <workdir>/data, and train_dir / val_dir point there.
    config.data.synthetic = ml_collections.config_dict.placeholder(ml_collections.ConfigDict)

    config.batch_size = 32  # global, over all devices and processes
    config.eval_batch_size = 64
    config.num_epochs = 80
    config.learning_rate = 1e-5  # base; the six heads get head_lr_multiplier times it
    config.lr_schedule = "constant"  # the original's; or "cosine" (warm-up, then decay to 0)
    config.warmup_steps = 0
    config.head_lr_multiplier = 5.0
    config.weight_decay = 0.01
    config.loss_alpha = 1.0
    # Angle error of the validation that picks the best checkpoint: 'plain' |pred - gt|, or
    # 'wrapped', the smallest of |d|, |d +/- 360|, |d +/- 180| (the original's training script;
    # the recipes that reproduce it set it). eval_main always reports 'plain'.
    config.val_metric = "plain"
    config.seed = 0

    config.log_every_steps = 100
    config.checkpoint_every_steps = 0  # 0: at the end of every epoch
    config.keep_checkpoints = 3
    config.max_steps = -1  # > 0: stop after this many steps (smoke tests)
    config.progress = True
    # Transfer: an orbax checkpoint (step dir or workdir/checkpoints) or an original PyTorch
    # checkpoint file (.pkl / .pth / .pt); weights only, new optimiser, epoch 0.
    config.init_from = ""

    config.distributed = ml_collections.ConfigDict()
    config.distributed.enabled = False  # call jax.distributed.initialize
    config.distributed.coordinator_address = ""  # empty: auto-detected on TPU / SLURM
    config.distributed.num_processes = -1
    config.distributed.process_id = -1
    return config
