"""The CPU-sized main job: synthetic 300W-LP-format heads for training, AFLW2000-format heads
for validation, small images, and a learning rate for training from scratch in minutes."""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.data.synthetic = ml_collections.ConfigDict(
        {"num_train": 3000, "num_test": 300, "image_size": 128, "seed": 0}
    )
    config.data.image_size = 64
    config.data.worker_count = 0
    config.eval_batch_size = 100
    config.num_epochs = 8
    config.learning_rate = 1e-3
    config.lr_schedule = "cosine"
    config.warmup_steps = 100
    config.log_every_steps = 20
    config.keep_checkpoints = 2
    return config
