"""Character-level text corpora for the language model (notebook 06), held as id tensors.

``ptb``: the character-level Penn Treebank as distributed in Mikolov's ``simple-examples``
archive: ``ptb.char.{train,valid,test}.txt`` under ``<data dir>/ptb/``. The files list one
character per token, separated by spaces, ``_`` between words, one sentence per line. A missing
copy is downloaded and extracted there with torchvision's helpers, unless ``DNI_OFFLINE=1``.

``ptb-mini``: the same file names under ``<data dir>/ptb-mini/``, a reduced offline copy whose
training text is NOT PTB's training text (see ``notes`` when it is loaded): everything measured
on it is labelled reduced.

``markov``: a generated text (a random first-order Markov chain over a small alphabet, from a
fixed seed), offline and instant, for tests and the smoke profile. Its entropy rate is known.

Tokens: the space-separated symbols of each line, then ``"\\n"`` for the end of the line. The
vocabulary is built from the training text alone, sorted; a symbol of the validation or test text
that the training text lacks is an error that names it (no silent mapping).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dni_utils.data.images import DataUnavailableError, data_dir, offline

TEXTS = ("ptb", "ptb-mini", "markov")
PTB_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
PTB_FILES = {split: f"ptb.char.{split}.txt" for split in ("train", "valid", "test")}
EOL = "\n"  # the end-of-line token


@dataclass
class TextCorpus:
    """Train, validation and test texts as token ids (int64, shape (N,)) over one vocabulary."""

    name: str
    vocab: list[str]
    train: torch.Tensor  # (N,)
    valid: torch.Tensor  # (M,)
    test: torch.Tensor  # (K,)
    source: str
    label: str = ""
    reduced: bool = False
    synthetic: bool = False
    notes: list[str] = field(default_factory=list)
    entropy_rate: float | None = None  # bits per character of the generating process, when known

    @property
    def n_vocab(self) -> int:
        return len(self.vocab)

    def describe(self) -> dict:
        """JSON-ready summary for result files (no paths)."""
        return {
            "dataset": self.name,
            "label": self.label or self.name,
            "source": self.source,
            "n_train": int(self.train.numel()),
            "n_valid": int(self.valid.numel()),
            "n_test": int(self.test.numel()),
            "n_vocab": self.n_vocab,
            "reduced": self.reduced,
            "synthetic": self.synthetic,
            "notes": list(self.notes),
        }


def tokens(text: str) -> list[str]:
    """The symbols of a character-level PTB text: each line's space-separated symbols, then EOL."""
    out: list[str] = []
    for line in text.splitlines():
        out.extend(line.split())
        out.append(EOL)
    return out


def encode(symbols: list[str], vocab: list[str], split: str) -> torch.Tensor:
    """Token ids of ``symbols``; a symbol outside ``vocab`` is an error that names it."""
    index = {s: i for i, s in enumerate(vocab)}
    unknown = sorted(set(symbols) - set(index))
    if unknown:
        raise ValueError(
            f"the {split} text has symbols that the training text lacks: {unknown[:10]!r}; the vocabulary is "
            f"built from the training text only"
        )
    return torch.tensor([index[s] for s in symbols], dtype=torch.long)


def from_texts(name: str, train: str, valid: str, test: str, **info) -> TextCorpus:
    """A corpus from three texts in the character-level PTB format; vocabulary from ``train``."""
    symbols = {split: tokens(text) for split, text in (("train", train), ("valid", valid), ("test", test))}
    vocab = sorted(set(symbols["train"]))
    if len(vocab) < 2:
        raise ValueError(f"dataset={name!r}: the training text has {len(vocab)} distinct symbols, expected at least 2")
    ids = {split: encode(s, vocab, split) for split, s in symbols.items()}
    return TextCorpus(name, vocab, ids["train"], ids["valid"], ids["test"], **info)


def _read(folder: Path, name: str, how_to: str) -> dict[str, str]:
    missing = [f for f in PTB_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise DataUnavailableError(f"dataset={name!r}: {', '.join(missing)} not found under {folder}. {how_to}")
    return {split: (folder / f).read_text(encoding="utf-8") for split, f in PTB_FILES.items()}


def _download_ptb(folder: Path) -> None:
    """Fetch simple-examples.tgz with torchvision's helpers and keep the three char files."""
    from torchvision.datasets.utils import download_and_extract_archive

    with tempfile.TemporaryDirectory() as tmp:
        download_and_extract_archive(PTB_URL, download_root=tmp, extract_root=tmp)
        found = {f: next(Path(tmp).rglob(f), None) for f in PTB_FILES.values()}
        if any(p is None for p in found.values()):
            raise DataUnavailableError(f"dataset='ptb': {PTB_URL} did not contain {sorted(PTB_FILES.values())}")
        folder.mkdir(parents=True, exist_ok=True)
        for f, p in found.items():
            shutil.copyfile(p, folder / f)


def _ptb(root: Path) -> TextCorpus:
    folder = root / "ptb"
    how_to = (
        f"Put {', '.join(PTB_FILES.values())} (from {PTB_URL}, folder data/) in {folder}, point DNI_DATA_DIR at a "
        f"folder whose ptb/ has them, or use dataset='ptb-mini' (a reduced offline copy) or 'markov' (generated)."
    )
    if not all((folder / f).is_file() for f in PTB_FILES.values()):
        if offline():
            raise DataUnavailableError(f"dataset='ptb': not found under {folder} and DNI_OFFLINE is set. {how_to}")
        try:
            _download_ptb(folder)
        except DataUnavailableError:
            raise
        except Exception as failed:  # network errors come as URLError, OSError, RuntimeError...
            raise DataUnavailableError(f"dataset='ptb': not found under {folder} and the download failed ({failed}). "
                                       f"{how_to}") from failed
    texts = _read(folder, "ptb", how_to)
    return from_texts("ptb", **texts, source="character-level Penn Treebank (simple-examples)", label="PTB (char)")


def _ptb_mini(root: Path) -> TextCorpus:
    folder = root / "ptb-mini"
    how_to = (
        f"Point DNI_DATA_DIR at a folder whose ptb-mini/ has the three files, or use dataset='markov' (generated)."
    )
    texts = _read(folder, "ptb-mini", how_to)
    corpus = from_texts(
        "ptb-mini", **texts, source="reduced offline copy of the character-level PTB files",
        label="PTB char (reduced copy)", reduced=True,
    )
    corpus.notes.append(
        "reduced data: the training text is PTB's character-level validation text and the validation and test texts "
        "are the two halves of PTB's test text; BPC on it is not comparable with published PTB numbers"
    )
    return corpus


def markov_text(n_symbols: int = 8, n_train: int = 20_000, n_eval: int = 4_000, seed: int = 0) -> TextCorpus:
    """A generated text: a first-order Markov chain over ``n_symbols`` letters whose rows are drawn
    from a Dirichlet(0.3); its entropy rate (bits per symbol, at the chain's stationary
    distribution) is known, so it is the floor under any model's BPC."""
    gen = torch.Generator().manual_seed(seed)
    gamma = torch._standard_gamma(torch.full((n_symbols, n_symbols), 0.3, dtype=torch.float64), generator=gen)
    P = gamma / gamma.sum(1, keepdim=True)  # (V, V), rows: next-symbol distributions
    evals, evecs = torch.linalg.eig(P.T)
    pi = evecs[:, torch.argmin((evals - 1).abs())].real
    pi = pi / pi.sum()  # stationary distribution
    entropy = float(-(pi[:, None] * P * torch.log2(P.clamp_min(1e-300))).sum())

    cdf = P.cumsum(1)  # (V, V): each row's cumulative distribution

    def walk(n: int) -> str:
        state = int(torch.multinomial(pi.float(), 1, generator=gen))
        out = []
        u = torch.rand(n, generator=gen, dtype=torch.float64)
        for i in range(n):
            state = min(int(torch.searchsorted(cdf[state], u[i])), n_symbols - 1)
            out.append(chr(ord("a") + state))
        return " ".join(out)

    return from_texts(
        "markov", walk(n_train), walk(n_eval), walk(n_eval), source=f"generated first-order Markov text "
        f"({n_symbols} symbols, seed {seed})", label="generated Markov text", synthetic=True,
        notes=[f"generated text; its entropy rate is {entropy:.3f} bits per symbol"], entropy_rate=entropy,
    )


def load_text(name: str, root: str | Path | None = None) -> TextCorpus:
    """Load ``name`` (one of ``TEXTS``)."""
    if name not in TEXTS:
        raise ValueError(f"dataset={name!r} is unknown: expected one of {TEXTS}")
    root = Path(root) if root is not None else data_dir()
    if name == "ptb":
        return _ptb(root)
    if name == "ptb-mini":
        return _ptb_mini(root)
    return markov_text()


def bits_per_character(total_nats: float, count: int) -> float:
    """Mean negative log-likelihood, converted from nats to bits per character (Graves 2013)."""
    return total_nats / count / math.log(2)
