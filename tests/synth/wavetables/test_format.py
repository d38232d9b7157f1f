"""Vital's wavetable format (vitalmatch.synth.wavetables.format): wave codec, building and
reading tables, content hashing."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from vitalmatch.synth.wavetables import (
    decode_wave,
    encode_wave,
    make_wavetable,
    vital_init_table,
    wavetable_frames,
    wavetable_hash,
)


def test_encode_decode_round_trip():
    wave = np.random.default_rng(0).standard_normal(2048).astype(np.float32)
    text = encode_wave(wave)
    assert len(text) == 10924  # as in every Vital keyframe
    back = decode_wave(text)
    assert back.dtype == np.float32 and back.shape == (2048,)
    assert back.tobytes() == wave.tobytes()
    assert encode_wave(wave.astype(np.float64)) == text  # float64 input is cast to the same float32


def test_init_keyframe_round_trips_exactly():
    text = vital_init_table()["groups"][0]["components"][0]["keyframes"][0]["wave_data"]
    assert encode_wave(decode_wave(text)) == text


def test_codec_rejects_bad_input():
    with pytest.raises(ValueError):
        decode_wave(encode_wave(np.zeros(2048))[:-8])
    with pytest.raises(ValueError):
        encode_wave(np.zeros(1024))
    with pytest.raises(ValueError):
        encode_wave(np.full(2048, np.nan))


# ---------------------------------------------------------------------------------------- data model


def test_make_wavetable_matches_init_layout():
    init = vital_init_table()
    waves = [np.linspace(-1, 1, 2048), np.sin(np.linspace(0, 2 * np.pi, 2048, endpoint=False))]
    table = make_wavetable("Two", [(0, waves[0]), (256, waves[1])], author="me")
    assert list(table) == list(init)
    assert table["name"] == "Two" and table["author"] == "me"
    assert {k: v for k, v in table.items() if k not in ("name", "author", "groups")} == {
        k: v for k, v in init.items() if k not in ("name", "author", "groups")
    }
    comp, init_comp = table["groups"][0]["components"][0], init["groups"][0]["components"][0]
    assert len(table["groups"]) == 1 and len(table["groups"][0]["components"]) == 1
    assert {k: v for k, v in comp.items() if k != "keyframes"} == {
        k: v for k, v in init_comp.items() if k != "keyframes"
    }
    assert [kf["position"] for kf in comp["keyframes"]] == [0, 256]
    frames = wavetable_frames(table)
    assert frames.shape == (2, 2048)
    np.testing.assert_array_equal(frames, np.stack(waves).astype(np.float32))


@pytest.mark.parametrize(
    "keyframes",
    [[], [(0, np.zeros(2048)), (0, np.zeros(2048))], [(257, np.zeros(2048))], [(1.5, np.zeros(2048))],
     [(0, np.zeros(100))]],
)  # fmt: skip
def test_make_wavetable_validates(keyframes):
    with pytest.raises(ValueError):
        make_wavetable("bad", keyframes)


def test_frames_none_for_other_component_types():
    init = vital_init_table()
    line = copy.deepcopy(init)
    line["groups"][0]["components"][0]["type"] = "Line Source"
    assert wavetable_frames(line) is None
    two = copy.deepcopy(init)
    two["groups"].append(copy.deepcopy(two["groups"][0]))
    assert wavetable_frames(two) is None
    assert wavetable_frames(init).shape == (1, 2048)


def test_hash_ignores_name_author_version_but_not_sound():
    init = vital_init_table()
    renamed = copy.deepcopy(init)
    renamed.update(name="Other", author="someone", version="1.0.7")
    assert wavetable_hash(renamed) == wavetable_hash(init)
    as_float = copy.deepcopy(init)
    as_float["groups"][0]["components"][0]["keyframes"][0]["position"] = 0.0
    assert wavetable_hash(as_float) == wavetable_hash(init)  # 0 and 0.0 are the same number
    louder = copy.deepcopy(init)
    kf = louder["groups"][0]["components"][0]["keyframes"][0]
    kf["wave_data"] = encode_wave(0.5 * decode_wave(kf["wave_data"]))
    assert wavetable_hash(louder) != wavetable_hash(init)
    flag = copy.deepcopy(init)
    flag["full_normalize"] = not init["full_normalize"]
    assert wavetable_hash(flag) != wavetable_hash(init)
    assert len(wavetable_hash(init)) == 64
