"""Degradation (MATLAB bicubic `imresize`), colour, image IO, datasets and dataset preparation.

`imresize` and colour conversion are imported eagerly (numpy/torch only); the rest loads on
first attribute access so `import gansr_ext.data` stays light.
"""

from __future__ import annotations

import importlib

from .color import rgb2ycbcr, rgb_to_y, ycbcr2rgb
from .imresize import imresize, make_lr, modcrop

# public name -> submodule that defines it (loaded lazily)
_LAZY = {
    "read_image": "io", "read_image_with_alpha": "io", "write_image": "io", "list_images": "io",
    "ImageReadError": "io", "IMAGE_EXTENSIONS": "io",
    "PairedImageDataset": "datasets", "HROnlyDataset": "datasets", "random_crop_pair": "datasets",
    "augment_pair": "datasets", "item_generator": "datasets", "UnreadableImageWarning": "datasets",
    "EpochSeededDataset": "datasets", "EpochTaggedSampler": "datasets", "DataError": "datasets", "check_data": "datasets",
    "sample_images": "samples", "write_sample_folders": "samples",
    "extract_subimages": "prepare", "prepare_dataset": "prepare", "DATASETS": "prepare",
    "DatasetInfo": "prepare", "find_dataset_dirs": "prepare",
    "download": "downloader", "DOWNLOADS": "downloader", "DownloadError": "downloader",
}

__all__ = ["imresize", "modcrop", "make_lr", "rgb2ycbcr", "ycbcr2rgb", "rgb_to_y", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
