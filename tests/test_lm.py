"""The character-level language model (notebook 06): the same boundary mechanics as Copy on a
stream whose state is carried across segments, bits per character, and the text loaders."""

import math

import pytest
import torch
from torch import nn

from dni_utils import BackwardInterface
from dni_utils.data.images import DataUnavailableError
from dni_utils.data.text import EOL, PTB_FILES, from_texts, load_text, markov_text, tokens
from dni_utils.trainers.language_model import LMConfig, batchify, char_episode, char_loss, evaluate_bpc, train_lm
from dni_utils.trainers.recurrent import LSTMCore, StateSynthesizer, run_episode
from synth_stubs import Constant, Lookup

V = 5  # vocabulary of the hand-made streams


def _stream(length=9, streams=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (length, streams), generator=gen)  # (L, B) token ids


def _core(seed=0):
    torch.manual_seed(seed)
    return LSTMCore(V, 4, V)


def _grads(core):
    return [p.grad.detach().clone() for p in core.parameters()]


def _segments(core, data, segment, truncation, iface, optimizer=None):
    """Train on ``data`` one segment at a time, the state carried over, every end but the last open."""
    state, steps = None, data.shape[0] - 1
    for start in range(0, steps, segment):
        n = min(segment, steps - start)
        stats = run_episode(core, char_episode(data, start, n, V), truncation, iface, optimizer,
                            step_each_chunk=optimizer is not None, loss_fn=char_loss, state=state,
                            open_end=start + n < steps)
        state = stats.state
    return state


def test_the_state_is_carried_across_segments():
    # Plain BPTT with T = steps: segments of 4 with the state carried give the outputs of one pass.
    data = _stream(13)
    core = _core()
    whole = run_episode(core, char_episode(data, 0, 12, V), 4, BackwardInterface(Constant(0.0), mode="off"), None,
                        step_each_chunk=False, loss_fn=char_loss)
    state, outs = None, []
    for start in (0, 4, 8):
        stats = run_episode(core, char_episode(data, start, 4, V), 4, BackwardInterface(Constant(0.0), mode="off"), None,
                            step_each_chunk=False, loss_fn=char_loss, state=state, open_end=True)
        state = stats.state
        outs.append(stats.logits)
    torch.testing.assert_close(torch.cat(outs), whole.logits)
    torch.testing.assert_close(state, whole.state)


def test_an_exact_synthesizer_across_segments_equals_bptt_over_the_stream():
    # 8 steps, T = 2, segments of 4: the boundaries inside a segment and between two segments must
    # both receive the true future gradient when the synthesizer knows it.
    data = _stream(9)
    core = _core()
    s, states, outs = core.initial_state(2), [], []
    for t in range(8):
        out, s = core(nn.functional.one_hot(data[t], V).float(), s)
        s.retain_grad()
        states.append(s)
        outs.append(out)
    char_loss(torch.stack(outs), char_episode(data, 0, 8, V), 0).backward()
    true = [(states[t].detach(), states[t].grad.clone()) for t in (1, 3, 5)]
    expected = _grads(core)

    core = _core()
    iface = BackwardInterface(Lookup(true), scale=1.0)
    _segments(core, data, 4, 2, iface)
    for got, want in zip(_grads(core), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert iface.pending == 0 and iface.n_updates == 3 and iface.last_loss == pytest.approx(0.0, abs=1e-9)


def test_a_zero_synthesizer_on_the_stream_equals_plain_truncated_bptt():
    data = _stream(25, seed=1)
    params = []
    for mode in ("off", "dni"):
        core = _core()
        opt = torch.optim.Adam(core.parameters(), lr=1e-2)
        _segments(core, data, 6, 3, BackwardInterface(Constant(0.0), mode=mode), opt)
        params.append([p.detach().clone() for p in core.parameters()])
    for a, b in zip(*params):
        assert torch.equal(a, b)


class Oracle(nn.Module):
    """Next-character log-probabilities from a table indexed by the current character (no state)."""

    def __init__(self, log_probs):
        super().__init__()
        self.log_probs = log_probs  # (V, V)

    def initial_state(self, batch_size):
        return torch.zeros(batch_size, 1)

    def forward(self, x, s):
        return x @ self.log_probs, s


def test_bpc_by_hand():
    ids = torch.tensor([0, 1] * 50)  # a b a b ...: the next character is certain
    uniform = Oracle(torch.zeros(3, 3))
    assert evaluate_bpc(uniform, ids, 3, streams=2, chunk=7) == pytest.approx(math.log2(3))
    # The right next character with probability 3/4, the other two 1/8 each: BPC = −log2(3/4).
    table = torch.tensor([[1 / 8, 3 / 4, 1 / 8], [3 / 4, 1 / 8, 1 / 8], [1 / 3, 1 / 3, 1 / 3]])
    assert evaluate_bpc(Oracle(table.log()), ids, 3, streams=4, chunk=5) == pytest.approx(-math.log2(3 / 4))


def test_bpc_of_the_generating_chain_is_its_entropy_rate():
    corpus = markov_text(n_symbols=4, n_train=30_000, n_eval=30_000, seed=3)
    # The transition probabilities counted on the training text (its last token, the end of line,
    # left out), scored on the test text.
    ids, v = corpus.train[:-1], corpus.n_vocab
    counts = torch.full((v, v), 1e-6)
    counts.index_put_((ids[:-1], ids[1:]), torch.ones(ids.numel() - 1), accumulate=True)
    table = counts / counts.sum(1, keepdim=True)
    bpc = evaluate_bpc(Oracle(table.log()), corpus.test[:-1], v)
    assert bpc == pytest.approx(corpus.entropy_rate, abs=0.03)


def test_batchify_reads_contiguous_streams_side_by_side():
    data = batchify(torch.arange(11), 3)
    assert data.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    ep = char_episode(data, 1, 2, 9)
    assert ep.x.argmax(-1).tolist() == [[1, 4, 7], [2, 5, 8]] and ep.y.tolist() == [[2, 5, 8]]
    with pytest.raises(ValueError, match="streams=0 is invalid"):
        batchify(torch.arange(11), 0)


def test_tokens_vocabulary_and_unknown_symbols():
    assert tokens("a b _ c\nd\n") == ["a", "b", "_", "c", EOL, "d", EOL]
    corpus = from_texts("t", "b a _ a\n", "a b\n", "_\n", source="hand-made")
    assert corpus.vocab == [EOL, "_", "a", "b"]  # from the training text, sorted
    assert corpus.valid.tolist() == [2, 3, 0]
    with pytest.raises(ValueError, match=r"the test text has symbols that the training text lacks: \['z'\]"):
        from_texts("t", "a b\n", "a\n", "a z\n", source="hand-made")


def _write_ptb(folder, train="a b _ c\n", valid="a b\n", test="c _ a\n"):
    folder.mkdir(parents=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / PTB_FILES[split]).write_text(text)


def test_ptb_mini_is_read_from_its_folder_and_labelled_reduced(tmp_path):
    _write_ptb(tmp_path / "ptb-mini")
    corpus = load_text("ptb-mini", tmp_path)
    d = corpus.describe()
    assert d["reduced"] and "reduced" in d["label"] and "validation text" in d["notes"][0]
    assert d["n_train"] == 5 and d["n_vocab"] == 5


def test_ptb_offline_and_missing_says_how_to_supply_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DNI_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match="dataset='ptb': not found .* DNI_OFFLINE is set. Put ptb.char.train.txt"):
        load_text("ptb", tmp_path)
    with pytest.raises(DataUnavailableError, match="dataset='ptb-mini': ptb.char.train.txt, .* not found"):
        load_text("ptb-mini", tmp_path)
    _write_ptb(tmp_path / "ptb")
    assert load_text("ptb", tmp_path).describe()["reduced"] is False
    with pytest.raises(ValueError, match="dataset='wiki' is unknown"):
        load_text("wiki", tmp_path)


def test_a_tiny_language_model_run_is_deterministic_and_learns():
    corpus = markov_text(n_symbols=4, n_train=4_000, n_eval=1_000, seed=1)
    cfg = LMConfig(method="dni_aux", truncation=3, hidden=16, batch_size=4, train_chars=6_000, eval_every=2_000,
                   eval_streams=2, segment=20, lr=1e-2, synth_hidden=8, grad_scale=0.03)
    a, b = train_lm(cfg, corpus, progress=False), train_lm(cfg, corpus, progress=False)
    assert a.to_dict() == b.to_dict()
    assert a.best_valid_bpc < math.log2(corpus.n_vocab) - 0.2  # better than guessing
    # a validation point after the segment (21 steps of 4 streams) that crosses each 2,000 characters
    assert [h["chars"] // 2_000 for h in a.history] == [1, 2, 3]
    assert all(h["chars"] % 2_000 < 84 for h in a.history)
    with pytest.raises(ValueError, match="truncation=0 is invalid"):
        train_lm(LMConfig(truncation=0), corpus, progress=False)
