"""Long-tailed datasets, profiles, samplers and transforms."""

from ltzoo.data.datasets import LTDataset, TensorImageDataset, TransformedDataset
from ltzoo.data.longtail import ShotSplit, exponential_profile, shot_split
from ltzoo.data.registry import DATASETS, build_dataset
from ltzoo.data.samplers import LongTailSampler, build_sampler
from ltzoo.data.spec import DATASET_SPECS, DataInfo, dataset_spec
from ltzoo.data.transforms import MultiView, eval_transform, train_transform

__all__ = [
    "DATASETS",
    "DATASET_SPECS",
    "DataInfo",
    "LTDataset",
    "LongTailSampler",
    "MultiView",
    "ShotSplit",
    "TensorImageDataset",
    "TransformedDataset",
    "build_dataset",
    "build_sampler",
    "dataset_spec",
    "eval_transform",
    "exponential_profile",
    "shot_split",
    "train_transform",
]
