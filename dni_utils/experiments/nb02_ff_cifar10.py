"""Notebook 02 (``notebooks/02_ff_cifar10.ipynb``): the same table on CIFAR-10 (paper table 1).
Its profile table; the grid, tables and claims are ``dni_utils.experiments.ffgrid``'s."""

from __future__ import annotations

from dni_utils.experiments import ffgrid, verdicts
from dni_utils.trainers.feedforward import METHODS


#: Settings per profile for the CIFAR-10 feed-forward table (notebook 02); keys as in
#: ``FF_MNIST_PROFILES``. ``smoke`` runs on the generated stand-in ``cifar10-standin`` (offline);
#: ``cpu`` and ``paper`` need the real CIFAR-10. At ``cpu`` both architectures are far smaller and
#: shorter than the paper's (about 15 minutes on 2 cores): the ordering is what it can show.
FF_CIFAR10_PROFILES: dict[str, dict] = {
    "smoke": dict(
        dataset="cifar10-standin", archs=["fcn", "cnn"], depths=[3], methods=list(METHODS), steps=40,
        batch_size=64, width=32, lr=1e-3, synth_lr=0.0, synth_hidden_layers=1, synth_hidden=64, log_every=20,
        near_points=5.0, nobprop_margin=5.0, cdni_slack=1.0, assert_claims=False, seeds=[0], workers=1,
        cnn=dict(width=8, lr=1e-3, synth_lr=0.0, conv_synth_hidden_layers=1, conv_synth_channels=8, conv_top_synth="mlp",
                 dni_margin=3.0, assert_claims=False),
    ),
    "cpu": dict(
        # FCN and CNN: the layers at Adam 1e-4 and the synthesizers at 1e-3, as in notebook 01
        # (notebook 09: synthesizers must learn about 10x faster than the layers they serve); linear
        # conv synthesizers below the CNN's MLP one. Pilots on the JPEG copy (2,000 steps, seeds
        # 0-2, 3 / 5 conv blocks of 16): DNI 54.3 / 60.8 % against No Bprop's 59.6 / 64.6 % at
        # these rates, a lead of 5.4 / 3.9 points, hence the CNN's dni_margin of 3 points at every
        # depth, named before this grid ran. At 1e-3 for both (the earlier setting) DNI was better
        # (50.4 %) but No Bprop's output layer nearly caught up (52.1 %); twice the filters made
        # No Bprop the better. Three seeds: 30 minutes on 2 cores (72 runs). DNI without label
        # context stays far from Bprop at this budget (notebook 09), so the claims that compare
        # it with Bprop are reported, not asserted.
        dataset="cifar10", archs=["fcn", "cnn"], depths=[3, 4, 5, 6], methods=list(METHODS), steps=2000,
        batch_size=128, width=256, lr=1e-4, synth_lr=1e-3, synth_hidden_layers=1, synth_hidden=1024,
        log_every=500, near_points=5.0, nobprop_margin=5.0, cdni_slack=1.0, seeds=[0, 1, 2], workers=0,
        assert_claims=["cdni_at_least_dni", "nobprop_far_worse"],
        cnn=dict(
            depths=[3, 5], width=16, steps=2000, batch_size=64, lr=1e-4, synth_lr=1e-3, log_every=500,
            conv_synth_hidden_layers=0, conv_synth_channels=16, conv_top_synth="mlp", dni_margin=3.0,
            assert_claims=["cdni_at_least_dni", "nobprop_far_worse", "dni_beats_nobprop"],
        ),
    ),
    "paper": dict(
        dataset="cifar10", archs=["fcn", "cnn"], depths=[3, 4, 5, 6], methods=list(METHODS), steps=500_000,
        batch_size=256, width=256, lr=3e-5, synth_lr=0.0, synth_hidden_layers=2, synth_hidden=1024, log_every=5000,
        near_points=3.0, nobprop_margin=5.0, cdni_slack=1.0, assert_claims=True, seeds=[0, 1, 2], workers=0,
        cnn=dict(
            width=128, lr=3e-5, synth_lr=0.0, conv_synth_hidden_layers=2, conv_synth_channels=128, conv_top_synth="conv",
            # DNI within near_points (3) of Bprop and No Bprop at least nobprop_margin (5) above it
            # leave DNI at least 2 points below No Bprop.
            dni_margin=2.0, assert_claims=True,
        ),
    ),
}

#: The checks in words (``dni_utils.experiments.verdicts``): ``ffgrid.claims``, per architecture.
#: The paper's CIFAR-10 cells were not available to us: only that DNI and cDNI come close to Bprop.
CHECKS = ffgrid.ff_checks({"fcn": "DNI, cDNI ≈ Bprop", "cnn": "DNI, cDNI ≈ Bprop"})

#: The README's line for notebook 02.
SUMMARY = verdicts.Summary(
    claim="The same on CIFAR-10: DNI and cDNI about as good as Bprop in an FCN and a CNN; No Bprop far worse.",
    main=ffgrid.FF_MAIN,
    key=(verdicts.KeyRow("Bprop", r"^CNN, 3 layers$", "Bprop"), verdicts.KeyRow("DNI", r"^CNN, 3 layers$", "DNI"),
         verdicts.KeyRow("cDNI", r"^CNN, 3 layers$", "cDNI")),
    where="CNN, 3 layers, test error (%)",
    paper="DNI, cDNI ≈ Bprop (the cells were not available to us)",
    asserted=ffgrid.ff_asserted,
    # The cpu list leaves out what the first grid showed DNI without context misses; the CNN's
    # dni_beats_nobprop was named later, from pilots, before the grid that asserts it.
    named_after_grid={"cpu": (r"fcn .*", r"cnn (cdni_at_least_dni|nobprop_far_worse)")},
)
