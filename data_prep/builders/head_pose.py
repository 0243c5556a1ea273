"""The head-pose datasets as TFDS builders: 300W-LP, AFLW2000-3D, BIWI, DAD-3DHeads and the
synthetic heads of ``data_prep.synthetic`` (one builder config per source format).

What each reads, and how, is in its reader module (``data_prep.w300lp``, ``aflw2000``,
``biwi``, ``dad``); the features are ``data_prep.builders.base``'s.
"""

from __future__ import annotations

from typing import ClassVar

import tensorflow_datasets as tfds

from data_prep.builders.base import FORMATS, HeadPoseBuilder, SourceFormat

_3DDFA_HOMEPAGE = "http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm"
_3DDFA_CITATION = """@inproceedings{zhu2016face,
  title     = {Face Alignment Across Large Poses: A 3D Solution},
  author    = {Zhu, Xiangyu and Lei, Zhen and Liu, Xiaoming and Shi, Hailin and Li, Stan Z.},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2016}
}"""


class W300lp(HeadPoseBuilder):
    """300W-LP: eight folders (``_Flip`` twins included) of JPEG + ``.mat`` files."""

    name = "w300lp"
    FORMAT = FORMATS["300w_lp"]
    DESCRIPTION = (
        "300W-LP: 300W faces profiled to large poses by 3DDFA's face profiling, with their "
        "horizontally flipped twins (AFW, HELEN, IBUG, LFPW and *_Flip). Pose from Pose_Para "
        "(radians pitch, yaw, roll) in degrees; box and landmarks from the 68 pt2d points."
    )
    HOMEPAGE = _3DDFA_HOMEPAGE
    CITATION = _3DDFA_CITATION


class Aflw2000(HeadPoseBuilder):
    """AFLW2000-3D: ``imageNNNNN.jpg`` + ``.mat``; by default only |angles| <= 99 degrees."""

    name = "aflw2000"
    FORMAT = FORMATS["aflw2000"]
    DESCRIPTION = (
        "AFLW2000-3D: the first 2,000 AFLW images with 3DDFA's 3D fits. Pose from Pose_Para "
        "in degrees; box and landmarks from pt3d_68 (x, y, z). The standard protocol keeps "
        "samples whose |yaw|, |pitch| and |roll| are all <= 99 degrees (metadata.json lists "
        "the others)."
    )
    HOMEPAGE = _3DDFA_HOMEPAGE
    CITATION = _3DDFA_CITATION


class Biwi(HeadPoseBuilder):
    """BIWI prepared as face crops: per-image npz, or FSA-Net's per-split npz."""

    name = "biwi"
    FORMAT = FORMATS["biwi"]
    DESCRIPTION = (
        "BIWI Kinect Head Pose, prepared as face crops (per-image npz or FSA-Net's per-split "
        "npz): BGR arrays stored as lossless RGB PNG, pose (yaw, pitch, roll) in degrees. No "
        "face box: the images are the crops."
    )
    HOMEPAGE = "https://data.vision.ee.ethz.ch/cvl/gfanelli/head_pose/head_forest.html"
    CITATION = """@article{fanelli2013random,
  title   = {Random Forests for Real Time 3D Face Analysis},
  author  = {Fanelli, Gabriele and Dantone, Matthias and Gall, Juergen and Fossati, Andrea
             and Van Gool, Luc},
  journal = {International Journal of Computer Vision},
  volume  = {101},
  number  = {3},
  pages   = {437--458},
  year    = {2013}
}"""


class Dad3dheads(HeadPoseBuilder):
    """DAD-3DHeads: the official release json, or the original HPE code's preprocessed json."""

    name = "dad3dheads"
    FORMAT = FORMATS["dad"]
    DESCRIPTION = (
        "DAD-3DHeads, from the official release (model_view_matrix) or the preprocessed json "
        "(R) of the original head-pose code. Angles by the original's formula; by default "
        "only |angles| <= 99 degrees. Box: the annotated bbox."
    )
    HOMEPAGE = "https://www.pinatafarm.com/research/dad-3dheads"
    CITATION = """@inproceedings{martyniuk2022dad,
  title     = {DAD-3DHeads: A Large-scale Dense, Accurate and Diverse Dataset for 3D Head
               Alignment from a Single Image},
  author    = {Martyniuk, Tetiana and Kupyn, Orest and Kurlyak, Yana and Krashenyi, Igor and
               Matas, Jiri and Sharmanska, Viktoriia},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}"""


class SyntheticHeads(HeadPoseBuilder):
    """Heads rendered by ``data_prep.synthetic`` in one of the four formats (the config name)."""

    name = "synthetic_heads"
    DESCRIPTION = (
        "Synthetic heads rendered at known poses by hpe-jax's data_prep.synthetic and written "
        "in a real dataset's file format (the config name), then read as that dataset is."
    )
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        tfds.core.BuilderConfig(name=fmt, description=f"written in the {fmt} format")
        for fmt in FORMATS
    ]

    def source_format(self) -> SourceFormat:
        return FORMATS[self.builder_config.name]


BUILDERS: dict[str, type[HeadPoseBuilder]] = {
    "300w_lp": W300lp,
    "aflw2000": Aflw2000,
    "biwi": Biwi,
    "dad": Dad3dheads,
}
