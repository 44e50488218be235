"""Notebook 10: the gap to Bprop against the training budget (``dni_utils.experiments.nb10_ff_budget``)."""

import math
from pathlib import Path

import pytest

from dni_utils.experiments import nb10_ff_budget as budget
from dni_utils.trainers.feedforward import FFConfig, FFRun

NB10 = Path(__file__).resolve().parents[1] / "notebooks" / "10_ff_budget.ipynb"


def test_the_trend_is_the_least_squares_slope_per_doubling_with_its_error_and_where_it_reaches_zero():
    exact = budget.fit_trend([250, 500, 1000, 2000], [4.0, 3.0, 2.0, 1.0])
    assert exact["slope"] == pytest.approx(-1.0) and exact["slope_se"] == pytest.approx(0.0, abs=1e-12)
    assert exact["closes_at"] == pytest.approx(4000.0)  # one more doubling
    noisy = budget.fit_trend([1, 1, 2, 2, 4, 4], [3.1, 2.9, 2.1, 1.9, 1.1, 0.9])
    assert noisy["slope"] == pytest.approx(-1.0) and 0 < noisy["slope_se"] < 0.2
    flat = budget.fit_trend([1, 2, 4, 8], [2.0, 2.5, 2.0, 2.5])
    assert flat["slope"] > 0 and flat["closes_at"] is None
    assert budget.fit_trend([1, 2], [1.0, 0.5])["slope_se"] is None  # two points: no residual to judge by
    with pytest.raises(ValueError, match="two or more budgets"):
        budget.fit_trend([8, 8, 8], [1.0, 2.0, 3.0])


def _runs(settings, error):
    """Runs whose final test error is ``error(case, budget, method, seed)`` (a fraction)."""
    return {key: FFRun(config=cfg, test_error=error(*key)) for key, cfg in budget.configs(settings).items()}


def _settings(budgets=(500, 1000, 2000, 4000), seeds=(0, 1)):
    settings = budget.select_budget_profile("cpu", cases=["mnist-fcn-3", "cifar10-cnn-3"], seeds=list(seeds))
    for case in settings["cases"]:
        case["budgets"] = list(budgets)
    return settings


def test_a_gap_that_shrinks_beyond_its_error_holds_and_one_that_does_not_is_reported_as_not_holding():
    settings = _settings()

    def error(case, b, method, seed):
        bprop = 0.10 - 0.01 * math.log2(b / 500) + 0.001 * seed  # Bprop improves with budget
        gap = {"bprop": 0.0, "nobprop": 0.2, "cdni": 0.01 + 0.002 * seed}[method] if method != "dni" else (
            (0.04 - 0.01 * math.log2(b / 500)) if case == "mnist-fcn-3" else 0.03 + 0.002 * (seed + math.log2(b) % 2))
        return bprop + gap

    checks = budget.claims(_runs(settings, error), settings)
    assert checks["mnist-fcn-3 dni_gap_shrinks"] is True
    assert checks["cifar10-cnn-3 dni_gap_shrinks"] is False  # flat, up and down by the seeds
    assert checks["mnist-fcn-3 cdni_gap_shrinks"] is False  # constant
    assert checks["mnist-fcn-3 bprop_improves_with_budget"] and checks["cifar10-cnn-3 bprop_improves_with_budget"]
    assert checks["cifar10-cnn-3 dni_beats_nobprop_at_largest_budget"] is True
    assert "mnist-fcn-3 dni_beats_nobprop_at_largest_budget" not in checks  # No Bprop did not run there
    trend = budget.trends(budget.errors_frame(_runs(settings, error), settings))
    fcn = trend[(trend["name"] == "mnist-fcn-3") & (trend["method"] == "DNI")].iloc[0]
    assert fcn["per doubling"] == pytest.approx(-1.0) and fcn["gap at smallest"] == pytest.approx(4.0)
    assert fcn["closes at (steps)"] == pytest.approx(8000.0)
    assert budget.failed_asserted_claims(checks, settings) == []  # the cpu profile asserts the control only


def test_the_gap_is_taken_at_the_same_seed():
    settings = _settings(seeds=(0, 1))
    # the seeds differ by 5 points for every method: the gap does not see it
    checks_frame = budget.errors_frame(_runs(settings, lambda c, b, m, s: 0.1 + 0.05 * s + (0.02 if m == "dni" else 0)),
                                       settings)
    dni = checks_frame[checks_frame["method"] == "DNI"]["gap to Bprop (points)"]
    assert dni.tolist() == pytest.approx([2.0] * len(dni))


def test_every_run_has_its_budget_as_its_steps_longest_first_and_logs_once():
    settings = _settings(budgets=(250, 4000))
    cfgs = budget.configs(settings)
    assert [k[1] for k in cfgs] == sorted((k[1] for k in cfgs), reverse=True)
    assert all(cfg.steps == key[1] == cfg.log_every and cfg.seed == key[3] for key, cfg in cfgs.items())
    assert {k[0] for k in budget.configs(settings, "cifar10")} == {"cifar10-cnn-3"}
    fcn = next(cfg for key, cfg in cfgs.items() if key[0] == "mnist-fcn-3" and key[2] == "dni")
    assert (fcn.synth_hidden_layers, fcn.synth_hidden) == (2, 1024)  # the paper's synthesizer
    assert isinstance(fcn, FFConfig)


@pytest.mark.parametrize("kwargs, message", [
    (dict(profile="huge"), "profile='huge' is unknown"),
    (dict(profile="cpu", cases=["mnist-fcn-9"]), "cases=['mnist-fcn-9'] is invalid"),
    (dict(profile="cpu", seeds=[-1]), "seeds=[-1] is invalid"),
])
def test_bad_settings_are_refused_with_a_message_that_names_them(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        budget.select_budget_profile(**kwargs)


@pytest.mark.parametrize("change, message", [
    (dict(budgets=[1000, 500]), "budgets=[1000, 500] is invalid"),
    (dict(budgets=[500]), "budgets=[500] is invalid"),
    (dict(methods=["dni", "cdni"]), "methods=['dni', 'cdni'] is invalid"),
    (dict(data="svhn"), "data='svhn' is unknown"),
])
def test_a_bad_case_is_refused_with_a_message_that_names_it(change, message):
    case = {**budget.BUDGET_PROFILES["cpu"]["cases"][0], **change}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        budget.check_case(case)


def test_every_check_the_notebook_can_write_has_words(tmp_path):
    settings = _settings()
    checks = budget.claims(_runs(settings, lambda c, b, m, s: 0.1 + (0.01 if m != "bprop" else 0) - 0.001 * math.log2(b)),
                           settings)
    from dni_utils.experiments import verdicts
    assert all(verdicts.match(name, budget.CHECKS) for name in checks)


def test_a_bad_parameter_fails_clearly_and_leaves_nothing_behind(fails_cleanly, tmp_path):
    fails_cleanly(NB10, tmp_path, "cases=['mnist-fcn-9'] is invalid", cases=["mnist-fcn-9"])
