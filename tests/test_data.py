"""Data sources: the offline subset, the data folder, and clear errors when data are missing."""

import pytest
import torch

from dni_utils import data as data_mod
from dni_utils.data import BatchSampler, DataUnavailableError, load_dataset


def test_mnist_5k_is_offline_and_labelled_reduced():
    ds = load_dataset("mnist-5k")
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert set(ds.y_train.unique().tolist()) == set(range(10))
    d = ds.describe()
    assert d["reduced"] is True and d["n_train"] == 4000 and d["n_test"] == 1000
    assert torch.equal(load_dataset("mnist-5k").y_test, ds.y_test)  # a fixed split


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match=r"dataset='imagenet' is unknown: expected one of \('mnist', "):
        load_dataset("imagenet")


def test_missing_mnist_offline_says_how_to_supply_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DNI_OFFLINE", "1")
    monkeypatch.setenv("DNI_DATA_DIR", str(tmp_path))
    with pytest.raises(DataUnavailableError, match="DNI_OFFLINE is set.*DNI_DATA_DIR.*mnist-5k") as info:
        load_dataset("mnist")
    assert str(tmp_path) in str(info.value)


def test_failed_download_says_how_to_supply_it(tmp_path, monkeypatch):
    class NoNetwork:
        def __init__(self, root, train, download):
            if download:
                raise RuntimeError("Error downloading: Name or service not known")
            raise RuntimeError("Dataset not found")

    monkeypatch.delenv("DNI_OFFLINE", raising=False)
    monkeypatch.setattr("torchvision.datasets.MNIST", NoNetwork)
    with pytest.raises(DataUnavailableError, match="the download failed .*Name or service not known.*mnist-5k"):
        load_dataset("mnist", tmp_path)


def test_data_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DNI_DATA_DIR", str(tmp_path))
    assert data_mod.data_dir() == tmp_path
    monkeypatch.delenv("DNI_DATA_DIR")
    assert data_mod.data_dir().name == "data"


def test_batch_sampler_covers_an_epoch_and_repeats_with_the_seed():
    x, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    a = BatchSampler(x, y, 5, seed=3)
    first = torch.cat([a.next()[1], a.next()[1]])
    assert sorted(first.tolist()) == list(range(10))
    b = BatchSampler(x, y, 5, seed=3)
    assert torch.equal(torch.cat([b.next()[1], b.next()[1]]), first)
    with pytest.raises(ValueError, match="batch_size=0 is invalid"):
        BatchSampler(x, y, 0, seed=0)
