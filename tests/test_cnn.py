"""The CNN of the feed-forward table: conv blocks, conv synthesizers (zero start, shapes, context),
the CNN trainer, per-architecture profile settings and claims, and the CIFAR-10 data sources."""

import pytest
import torch
from torch import nn

from dni_utils import ConvSynthesizer, MLPSynthesizer
from dni_utils.data.images import DataUnavailableError, cifar10_standin, load_dataset
from dni_utils.experiments.ffgrid import claims_by_arch, config_for, depths_for, failed_asserted_claims, run_grid, select_ff_profile
from dni_utils.experiments.nb01_ff_mnist import FF_MNIST_PROFILES
from dni_utils.experiments.nb02_ff_cifar10 import FF_CIFAR10_PROFILES
from dni_utils.experiments.profiles import PROFILES
from dni_utils.mechanism.models import make_cnn, make_net
from dni_utils.trainers.feedforward import METHODS, FFConfig, FFTrainer, train_ff


def _cnn_cfg(method="dni", **kw):
    return FFConfig(**{**dict(method=method, arch="cnn", depth=2, width=4, steps=6, batch_size=16, lr=1e-2,
                              conv_synth_hidden_layers=1, conv_synth_channels=4, log_every=3), **kw})


# ---- conv synthesizer ----------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", [0, 2])
@pytest.mark.parametrize("context", [0, 10])
def test_conv_synthesizer_starts_at_zero_with_the_trigger_shape(hidden, context):
    synth = ConvSynthesizer(6, hidden_layers=hidden, hidden_channels=5, context_features=context)
    ctx = torch.eye(10)[torch.arange(3)] if context else None
    pred = synth(torch.randn(3, 6, 7, 5), ctx)
    assert pred.shape == (3, 6, 7, 5)
    assert torch.equal(pred, torch.zeros_like(pred))
    assert torch.equal(synth.out.weight, torch.zeros_like(synth.out.weight))
    assert torch.equal(synth.out.bias, torch.zeros_like(synth.out.bias))


def test_conv_synthesizer_tiles_the_context_as_extra_channels():
    # A 1x1 linear conv synthesizer: output[c] = Σ_k W[c, k] · input[k] + b[c], where the input holds
    # the 2 trigger channels then the 3 context channels (the one-hot label, constant over the map).
    synth = ConvSynthesizer(2, hidden_layers=0, kernel_size=1, context_features=3)
    with torch.no_grad():
        synth.out.weight.copy_(torch.tensor([[1.0, 0.0, 10.0, 20.0, 30.0], [0.0, 0.0, -1.0, -2.0, -3.0]]).view(2, 5, 1, 1))
    trigger = torch.randn(2, 2, 3, 4)
    pred = synth(trigger, torch.eye(3)[[2, 0]])  # labels 2 and 0
    torch.testing.assert_close(pred[0, 0], trigger[0, 0] + 30.0)
    torch.testing.assert_close(pred[1, 0], trigger[1, 0] + 10.0)
    torch.testing.assert_close(pred[0, 1], torch.full((3, 4), -3.0))
    torch.testing.assert_close(pred[1, 1], torch.full((3, 4), -1.0))
    with pytest.raises(ValueError, match="context was given but this synthesizer has context_features=0"):
        ConvSynthesizer(2, hidden_layers=0)(trigger, torch.eye(3)[[2, 0]])


# ---- the CNN -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "in_shape, depth, shapes",
    [
        ((3, 32, 32), 3, [(8, 16, 16), (8, 8, 8), (8, 8, 8)]),
        ((1, 28, 28), 4, [(8, 14, 14), (8, 7, 7), (8, 7, 7), (8, 7, 7)]),
    ],
)
def test_cnn_blocks_pool_with_stride_2_twice_then_keep_the_size(in_shape, depth, shapes):
    net = make_cnn(in_shape, depth, 8, 10)
    assert net.shapes == shapes
    h = torch.rand(2, *in_shape)
    for block, shape in zip(net.blocks, shapes):
        h = block(h)
        assert tuple(h.shape[1:]) == shape
    assert net(torch.rand(2, *in_shape)).shape == (2, 10)
    assert isinstance(net.blocks[0][-1], nn.MaxPool2d)
    assert all(isinstance(b[-1], nn.AvgPool2d) for b in net.blocks[1:])
    assert [b[0].kernel_size for b in net.blocks] == [(5, 5)] * depth


def test_cnn_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match=r"in_shape=\(784,\) is invalid for arch='cnn': expected \(C, H, W\)"):
        make_net("cnn", (784,), 3, 8, 10)
    with pytest.raises(ValueError, match="strided_pools=-1 is invalid"):
        make_cnn((1, 8, 8), 2, 4, 10, strided_pools=-1)
    with pytest.raises(ValueError, match="conv_synth_channels=0 is invalid"):
        _cnn_cfg(conv_synth_channels=0).validate()
    with pytest.raises(ValueError, match="conv_synth_hidden_layers=-1 is invalid"):
        _cnn_cfg(conv_synth_hidden_layers=-1).validate()


@pytest.mark.parametrize("method", METHODS)
def test_cnn_trainer_steps_every_method(method, tiny_data):
    run = train_ff(_cnn_cfg(method), tiny_data, progress=False)
    assert [h["step"] for h in run.history] == [3, 6]
    assert run.updates == ([0, 0] if method == "nobprop" else [6, 6])
    if method in ("dni", "cdni"):
        assert len(run.history[-1]["grad_cosine"]) == 2


@pytest.mark.parametrize("method, context", [("dni", 0), ("cdni", 4)])
def test_cnn_interfaces_hold_conv_synthesizers(method, context, tiny_data):
    t = FFTrainer(_cnn_cfg(method), tiny_data.shape, tiny_data.n_classes)
    assert all(isinstance(i.synthesizer, ConvSynthesizer) for i in t.interfaces)
    assert [i.synthesizer.context_features for i in t.interfaces] == [context, context]
    # First conv of each synthesizer: the block's 4 channels (+ the label channels for cDNI).
    assert [i.synthesizer.hidden[0].in_channels for i in t.interfaces] == [4 + context] * 2
    t.train()
    before = [p.detach().clone() for p in t.net.blocks.parameters()]
    for k in range(3):  # zero start: the non-zero signal needs a step per interface to bootstrap down
        t.step(tiny_data.x_train[16 * k : 16 * (k + 1)], tiny_data.y_train[16 * k : 16 * (k + 1)])
    after = list(t.net.blocks.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after) if a.dim() == 4)  # every conv moved
    assert all(i.pending == 0 and i.n_updates == 3 for i in t.interfaces)


@pytest.mark.parametrize("method, context", [("dni", 0), ("cdni", 4)])
def test_cnn_top_synthesizer_can_be_an_mlp_over_the_whole_map(method, context, tiny_data):
    t = FFTrainer(_cnn_cfg(method, conv_top_synth="mlp"), tiny_data.shape, tiny_data.n_classes)
    low, top = t.interfaces
    assert isinstance(low.synthesizer, ConvSynthesizer) and isinstance(top.synthesizer, MLPSynthesizer)
    assert top.synthesizer.shape == t.net.shapes[-1] and top.synthesizer.context_features == context
    t.train()
    for k in range(2):
        t.step(tiny_data.x_train[16 * k : 16 * (k + 1)], tiny_data.y_train[16 * k : 16 * (k + 1)])
    assert [i.n_updates for i in t.interfaces] == [2, 2]
    with pytest.raises(ValueError, match="conv_top_synth='dense' is unknown: expected 'conv' or 'mlp'"):
        _cnn_cfg(method, conv_top_synth="dense").validate()


# ---- per-architecture settings and claims ------------------------------------------------------------


@pytest.mark.parametrize("table", [FF_MNIST_PROFILES, FF_CIFAR10_PROFILES])
def test_every_profile_has_the_same_settings_for_both_archs(table):
    assert set(table) == set(PROFILES)
    assert len({frozenset(v) for v in table.values()}) == 1
    assert all(v["archs"] == ["fcn", "cnn"] for v in table.values())
    assert len({frozenset(v["cnn"]) - {"depths", "steps", "batch_size", "log_every"} for v in table.values()}) == 1


def test_arch_settings_override_the_profile_and_parameters_override_both():
    s = select_ff_profile("cpu", FF_MNIST_PROFILES)
    assert depths_for(s, "fcn", s["depths"]) == [3, 4, 5, 6]
    assert depths_for(s, "cnn", s["depths"]) == FF_MNIST_PROFILES["cpu"]["cnn"]["depths"]
    assert config_for(s, "cnn", 3, "dni", 0).steps == FF_MNIST_PROFILES["cpu"]["cnn"]["steps"]
    assert config_for(s, "fcn", 3, "dni", 0).steps == FF_MNIST_PROFILES["cpu"]["steps"]
    s = select_ff_profile("cpu", FF_MNIST_PROFILES, depths=[4], steps=7, archs=[])
    assert depths_for(s, "cnn", s["depths"]) == [4] and config_for(s, "cnn", 4, "dni", 0).steps == 7
    assert s["archs"] == ["fcn", "cnn"]
    assert "depths" in FF_MNIST_PROFILES["cpu"]["cnn"]  # the table itself is left alone
    with pytest.raises(ValueError, match=r"archs=\['rnn'\] is invalid: expected a subset of \('fcn', 'cnn'\)"):
        select_ff_profile("smoke", FF_CIFAR10_PROFILES, archs=["rnn"])


def test_claims_are_judged_per_architecture_and_asserted_where_the_profile_says(tiny_data):
    settings = dict(FF_MNIST_PROFILES["smoke"], steps=1, log_every=1, width=4, synth_hidden=4, batch_size=16,
                    cnn=dict(width=2, conv_synth_channels=2, depths=[1]))
    runs = run_grid(settings, tiny_data, ["fcn", "cnn"], [1, 2], list(METHODS), seeds=[0], progress=False)
    assert sorted({(a, d) for a, d, _, _ in runs}) == [("cnn", 1), ("fcn", 1), ("fcn", 2)]
    errs = {"bprop": 0.05, "nobprop": 0.20, "dni": 0.07, "cdni": 0.06}
    for (arch, depth, method, _), run in runs.items():
        run.test_error = errs[method] + 0.01 * depth * (method == "nobprop") + 0.10 * ((arch, method) == ("cnn", "dni"))
    checks = claims_by_arch(runs, dict(settings, near_points=3.0, nobprop_margin=5.0, cdni_slack=0.5))
    assert checks == {
        "fcn dni_near_bprop": True, "fcn cdni_near_bprop": True, "fcn cdni_at_least_dni": True,
        "fcn nobprop_far_worse": True, "fcn nobprop_worse_with_depth": True,
        "cnn dni_near_bprop": False, "cnn cdni_near_bprop": True, "cnn cdni_at_least_dni": True,
        "cnn nobprop_far_worse": True,
    }
    assert failed_asserted_claims(checks, dict(settings, assert_claims=True)) == ["cnn dni_near_bprop"]
    # DNI beating No Bprop is judged only where a margin is set (here for the CNN alone): DNI 17%
    # against No Bprop's 21% there
    margin = claims_by_arch(runs, dict(settings, near_points=3.0, nobprop_margin=5.0, cdni_slack=0.5,
                                       cnn=dict(settings["cnn"], dni_margin=3.0)))
    assert margin == {**checks, "cnn dni_beats_nobprop": True}
    margin = claims_by_arch(runs, dict(settings, near_points=3.0, nobprop_margin=5.0, cdni_slack=0.5,
                                       cnn=dict(settings["cnn"], dni_margin=5.0)))
    assert margin["cnn dni_beats_nobprop"] is False
    assert failed_asserted_claims(checks, dict(settings, assert_claims=False)) == []
    off = dict(settings, assert_claims=True, cnn=dict(assert_claims=False))
    assert failed_asserted_claims(checks, off) == []
    # A list asserts only the claims it names (the others are still judged and reported).
    some = dict(settings, assert_claims=["cdni_near_bprop"], cnn=dict(assert_claims=["dni_near_bprop"]))
    assert failed_asserted_claims(checks, some) == ["cnn dni_near_bprop"]
    assert failed_asserted_claims(checks, dict(settings, assert_claims=["cdni_near_bprop"])) == []


# ---- CIFAR-10 data -----------------------------------------------------------------------------------


def test_cifar10_standin_is_offline_labelled_synthetic_and_fixed():
    ds = cifar10_standin(n_train=200, n_test=50)
    assert ds.x_train.shape == (200, 3, 32, 32) and ds.x_test.shape == (50, 3, 32, 32)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0 and ds.n_classes == 10
    d = ds.describe()
    assert d["synthetic"] is True and "not CIFAR-10" in d["source"] and "not CIFAR-10 results" in d["notes"][0]
    assert torch.equal(cifar10_standin(n_train=200, n_test=50).x_test, ds.x_test)
    assert load_dataset("cifar10-standin").describe()["shape"] == [3, 32, 32]


def test_missing_cifar10_offline_says_how_to_supply_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DNI_OFFLINE", "1")
    monkeypatch.setenv("DNI_DATA_DIR", str(tmp_path))
    with pytest.raises(DataUnavailableError, match="dataset='cifar10'.*DNI_OFFLINE is set.*cifar10-standin"):
        load_dataset("cifar10")


def test_cifar10_failed_download_says_how_to_supply_it(tmp_path, monkeypatch):
    class NoNetwork:
        def __init__(self, root, train, download):
            raise RuntimeError("Error downloading: Name or service not known" if download else "Dataset not found")

    monkeypatch.delenv("DNI_OFFLINE", raising=False)
    monkeypatch.setattr("torchvision.datasets.CIFAR10", NoNetwork)
    with pytest.raises(DataUnavailableError, match="download failed .*Name or service not known.*cifar10-standin"):
        load_dataset("cifar10", tmp_path)
