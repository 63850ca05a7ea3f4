"""TransferParams validation and JSON round trips."""

from __future__ import annotations

import json

import pytest

from nstbot.params import STRENGTH_STYLE_WEIGHTS, ParamsError, TransferParams, check_blend


def test_defaults_are_valid_and_round_trip_through_json() -> None:
    params = TransferParams(
        style_blend=(1.0, 3.0), seed=5, style_layer_weights=(1, 1, 1, 1, 2), average=0.5
    )
    again = TransferParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert again == params
    assert again.normalized_blend(2) == [0.25, 0.75]
    assert sum(again.normalized_layer_weights()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"size": 8}, "size"),
        ({"steps": 0}, "steps"),
        ({"scales": 9}, "scales"),
        ({"steps": 2, "scales": 3}, "at least the number of scales"),
        ({"strength": "extreme"}, "strength"),
        ({"content_weight": -1.0}, "content_weight"),
        ({"tv_weight": float("inf")}, "tv_weight"),
        ({"style_weight": float("nan")}, "style_weight"),
        ({"style_scale": 10.0}, "style_scale"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"init": "zeros"}, "init"),
        ({"average": 1.0}, "average"),
        ({"average": -0.1}, "average"),
        ({"average": float("nan")}, "average"),
        ({"seed": -1}, "seed"),
        ({"content_layers": ()}, "content_layers"),
        ({"style_layers": ("relu1_1", "relu9_1")}, "relu9_1"),
        ({"style_layer_weights": (1.0,)}, "one weight per style layer"),
        ({"style_blend": (0.0, 0.0)}, "all be zero"),
        ({"style_blend": (True, 1.0)}, "non-negative"),
    ],
)
def test_bad_values_name_the_parameter(changes: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        TransferParams(**changes)


def test_from_dict_rejects_unknown_and_mistyped_keys() -> None:
    with pytest.raises(ParamsError, match="unknown parameter"):
        TransferParams.from_dict({"sise": 5})
    with pytest.raises(ParamsError):
        TransferParams.from_dict({"size": "large"})


def test_strength_presets_are_ordered_and_overridable() -> None:
    weights = [TransferParams(strength=s).effective_style_weight for s in ("low", "medium", "high")]
    assert weights == sorted(weights) and len(set(weights)) == 3
    assert set(STRENGTH_STYLE_WEIGHTS) == {"low", "medium", "high"}
    assert TransferParams(strength="low", style_weight=123.0).effective_style_weight == 123.0


def test_blend_count_must_match_styles() -> None:
    with pytest.raises(ParamsError, match="3 weights for 2"):
        TransferParams(style_blend=(1.0, 1.0, 1.0)).normalized_blend(2)
    with pytest.raises(ParamsError, match="empty"):
        check_blend([])


def test_timelapse_every_gives_two_to_four_seconds_of_frames() -> None:
    from nstbot.params import TIMELAPSE_FPS, TIMELAPSE_SECONDS, timelapse_every

    assert (TIMELAPSE_FPS, TIMELAPSE_SECONDS) == (12, 3.0)
    # The start, then every k-th step ending at the result: 1 + ceil(total / k) frames.
    for total in range(23, 20_000, 7):
        k = timelapse_every(total)
        seconds = (1 + -(-total // k)) / TIMELAPSE_FPS
        assert 2.0 <= seconds <= 4.0, (total, k)
    assert timelapse_every(1) == timelapse_every(10) == 1
    assert timelapse_every(300) == 9 and timelapse_every(100_000) == 2858
