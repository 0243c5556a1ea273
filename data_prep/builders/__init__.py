"""TFDS builders of the head-pose datasets (``head_pose``) and their shared features
(``base``). ``python -m data_prep`` (``data_prep.convert``) runs them."""
