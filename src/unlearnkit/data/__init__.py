"""Data with identities: datasets, sources by name (incl. derived sources with a bias attribute and multi-task
sources), forget-set selection."""

# imported for their registrations: colored-digits, colored-fashion-mnist and biased-tabular (biased), and
# multi-fashion-mnist, multi-digits and fashion-mnist-tasks (multitask) join SOURCES
from unlearnkit.data import biased, multitask  # noqa: F401
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
