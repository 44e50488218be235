import pytest

from dni_utils.tools.display import settings_table


def test_settings_show_as_a_short_table_with_long_values_wrapped_on_rows_of_their_own():
    settings = {"dataset": "mnist", "lr": 1e-4, "ticks": 12_000, "seeds": [0, 1, 2], "progress": False,
                "assert_claims": [f"claim_number_{i}" for i in range(6)], "cnn": {"depths": 3, "lr": 1e-3}}
    table = settings_table(settings, columns=2, width=36)
    assert list(table.columns) == ["setting", "value", "setting", "value"]
    assert table.iloc[0].tolist() == ["dataset", "mnist", "lr", "0.0001"]
    assert table.iloc[1].tolist() == ["ticks", "12,000", "seeds", "0, 1, 2"]
    assert table.iloc[2].tolist() == ["progress", "no", "cnn", "depths=3; lr=0.001"]
    wrapped = table.iloc[3:]
    assert wrapped.iloc[0, 0] == "assert_claims" and set(wrapped.iloc[1:, 0]) == {""}
    assert ", ".join(wrapped.iloc[:, 1]).replace(",, ", ", ") == ", ".join(settings["assert_claims"])
    assert all(len(v) <= 36 for v in wrapped.iloc[:, 1]) and set(wrapped.iloc[:, 2:].stack()) == {""}
    assert len(table) == 3 + len(wrapped) < len(settings) + len(settings["assert_claims"])
    assert set(table.index) == {""}


@pytest.mark.parametrize("kw, message", [(dict(columns=0), "columns=0 is invalid"), (dict(width=-1), "width=-1 is invalid")])
def test_bad_sizes_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        settings_table({"a": 1}, **kw)


def test_rounded_shows_numpy_floats_as_short_plain_floats_and_keeps_the_rest():
    import numpy as np

    from dni_utils.tools.display import rounded

    value = {"gap": {3: np.float64(0.2450000000000001), 6: np.float64(-0.16999999999999993)},
             "cos": [0.3881012052297592, np.float32(0.25)], "held": True, "n": np.int64(3), "name": "grad",
             "pair": (1.23456, 2)}
    out = rounded(value)
    assert out == {"gap": {3: 0.245, 6: -0.17}, "cos": [0.388, 0.25], "held": True, "n": 3, "name": "grad",
                   "pair": (1.235, 2)}
    assert "np." not in repr(out) and type(out["gap"][3]) is float and out["held"] is True
    with pytest.raises(ValueError, match="digits"):
        rounded(1.0, digits=-1)
