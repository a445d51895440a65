"""Data: batching (DataLoader, TensorDataset) and the offline datasets the recipes train on."""
from scratchzoo.data.datasets import (DatasetUnavailable, Split, cached_file, data_dir, digits,  # noqa: F401
                                      mnist1d, quadratic, text_corpus)
from scratchzoo.data.loader import DataLoader, TensorDataset  # noqa: F401
