"""Data with identities: datasets, sources by name, forget-set selection."""

from unlearnkit.data.dataset import DatasetBundle, DataSpec, IndexedDataset
from unlearnkit.data.select import ForgetSplit, select
from unlearnkit.data.sources import (
    SOURCES,
    DataOption,
    DataSource,
    check_data_options,
    get_source,
    load_dataset,
    read_idx,
    shrink_train,
)

__all__ = [
    "SOURCES", "DataOption", "DataSource", "DataSpec", "DatasetBundle", "ForgetSplit", "IndexedDataset",
    "check_data_options", "get_source", "load_dataset", "read_idx", "select", "shrink_train",
]
