"""The modulation matrix as data: encoding, dense view, and writing/reading through the real synth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitalmatch.synth import modulation as mod
from vitalmatch.synth.modulation import Connection


def _conns():
    return [
        Connection("lfo_1", "filter_1_cutoff", 0.5, True),
        Connection("env_2", "osc_1_level", -0.25, False, 2.5),
        Connection("note", "reverb_dry_wet", 0.125, False, 0.0, True),
    ]


def test_names_come_from_vita():
    assert len(mod.sources()) == 32 and len(mod.destinations()) == 428
    sampled = mod.sampled_destinations()
    assert "filter_1_cutoff" in sampled and "beats_per_minute" not in sampled
    assert not any(mod.is_meta_destination(d) for d in sampled)
    assert len(sampled) + len(mod.not_sampled()) == 428


def test_encode_decode_round_trip():
    rows = mod.encode(_conns())
    assert rows.shape == (3, mod.ENCODED_WIDTH) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[:, 0], [0, 1, 2])
    assert rows[0, 1] == mod.sources().index("lfo_1") and rows[0, 2] == mod.destinations().index(
        "filter_1_cutoff"
    )
    assert mod.decode(rows) == _conns()  # these amounts and powers are exact in float32
    assert mod.encode([]).shape == (0, 7) and mod.decode(np.zeros((0, 7), np.float32)) == []
    # rows come back in slot order whatever their order in the array
    assert mod.decode(rows[::-1]) == _conns()
    bad = rows.copy()
    bad[1, 1] = 99
    with pytest.raises(ValueError, match="slot 1"):
        mod.decode(bad)


def test_dense_view():
    rows = mod.encode(_conns())
    d = mod.dense(rows)
    assert d.shape == (4, 32, 428) and d.dtype == np.float32
    s, t = mod.sources().index("env_2"), mod.destinations().index("osc_1_level")
    np.testing.assert_array_equal(d[:, s, t], [-0.25, 0.0, 2.5, 0.0])
    s, t = mod.sources().index("note"), mod.destinations().index("reverb_dry_wet")
    np.testing.assert_array_equal(d[:, s, t], [0.125, 0.0, 0.0, 1.0])
    assert np.count_nonzero(d[0]) == 3  # nothing else is connected
    batch = mod.dense_batch([rows, np.zeros((0, 7), np.float32)])
    assert batch.shape == (2, 4, 32, 428) and not batch[1].any()
    np.testing.assert_array_equal(batch[0], d)
    assert mod.dense_batch([]).shape == (0, 4, 32, 428)


@pytest.mark.parametrize(
    "connection, message",
    [
        (Connection("lfo_9", "filter_1_cutoff", 0.5), "source"),
        (Connection("lfo_1", "filter_1_model", 0.5), "destination"),  # a control, not a destination
        (Connection("lfo_1", "filter_1_cutoff", 1.5), "amount"),
        (Connection("lfo_1", "filter_1_cutoff", float("nan")), "amount"),
        (Connection("lfo_1", "filter_1_cutoff", 0.5, power=11.0), "power"),
    ],
)
def test_invalid_connections_are_refused_before_the_synth(connection, message):
    """vita segfaults at render on an invalid name (vita-facts §2.3): refused in Python first."""
    preset = {"settings": {}}
    with pytest.raises(ValueError, match=message):
        mod.write_modulations(preset, [connection])
    assert preset == {"settings": {}}  # nothing was written
    with pytest.raises(ValueError, match=message):
        mod.encode([connection])


def test_duplicates_and_too_many_are_refused():
    c = Connection("lfo_1", "filter_1_cutoff", 0.5)
    with pytest.raises(ValueError, match="twice"):
        mod.check_connections([c, Connection("lfo_1", "filter_1_cutoff", -0.5)])
    many = [Connection("lfo_1", d, 0.1) for d in mod.sampled_destinations()[:65]]
    with pytest.raises(ValueError, match="at most 64"):
        mod.check_connections(many)
    mod.check_connections(many[:64])


def test_write_and_read_through_a_real_synth():
    import vita

    synth = vita.Synth()
    preset = json.loads(synth.to_json())
    mod.write_modulations(preset, _conns())
    mod.write_lfos(preset, [None, mod.LFO_SHAPES[4]])
    assert synth.load_json(json.dumps(preset))
    back = json.loads(synth.to_json())["settings"]
    got, skipped = mod.read_modulations(back)
    assert skipped == []
    assert [(c.source, c.destination, c.bipolar, c.stereo) for c in got] == [
        (c.source, c.destination, c.bipolar, c.stereo) for c in _conns()
    ]
    np.testing.assert_allclose([c.amount for c in got], [c.amount for c in _conns()], atol=1e-6)
    np.testing.assert_allclose([c.power for c in got], [c.power for c in _conns()], atol=1e-6)
    assert back["lfos"][1]["points"] == pytest.approx(mod.LFO_SHAPES[4]["points"])
    assert back["lfos"][0]["points"] == pytest.approx(mod.LFO_SHAPES[0]["points"])
    audio = synth.render(60, 0.7, 0.2, 0.3)
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() > 1e-3


def test_read_skips_bypassed_invalid_and_duplicate_slots():
    preset = {"settings": {}}
    mod.write_modulations(preset, _conns())
    s = preset["settings"]
    s["modulation_2_bypass"] = 1.0
    s["modulations"][3] = {"source": "lfo_1", "destination": "filter_1_model"}
    s["modulations"][4] = {"source": "lfo_1", "destination": "filter_1_cutoff"}
    s["modulation_1_amount"] = 3.0  # clamped to 1
    got, skipped = mod.read_modulations(s)
    assert [(c.source, c.destination) for c in got] == [
        ("lfo_1", "filter_1_cutoff"),
        ("note", "reverb_dry_wet"),
    ]
    assert got[0].amount == 1.0
    assert len(skipped) == 3 and "bypassed" in skipped[0] and "filter_1_model" in skipped[1]
    assert "twice" in skipped[2]


def test_lfo_shapes():
    assert mod.LFO_SHAPES[0]["name"] == "Triangle" and len(mod.LFO_SHAPES) == 7
    assert all(mod.lfo_shape_problem(s) is None for s in mod.LFO_SHAPES)
    assert mod.lfo_shape_problem({"num_points": 2, "points": [0, 1], "powers": [0, 0]})
    preset = {"settings": {"lfos": []}}
    with pytest.raises(ValueError, match="lfo_2"):
        mod.write_lfos(preset, [None, {"points": []}])
    with pytest.raises(ValueError, match="at most 8"):
        mod.write_lfos(preset, [None] * 9)
