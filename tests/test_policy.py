"""Publish policies with synthetic Results (no broker needed)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecam.config import PublishConfig
from edgecam.publish.policy import (
    UNKNOWN_INDEX,
    UNKNOWN_LABEL,
    EveryPolicy,
    IntervalPolicy,
    OnChangePolicy,
    apply_min_score,
    make_policy,
)
from tests.support.mqtt import make_result


def _run(policy, items):
    """items: (t, label, score) -> list of (t, label, score) that were admitted."""
    out = []
    for seq, (t, label, score) in enumerate(items):
        admitted = policy.admit(make_result(seq, label, score, mono=t), t)
        if admitted is not None:
            out.append((t, admitted.top[0].label, admitted.top[0].score))
    return out


@pytest.mark.parametrize("name, cls", [("every", EveryPolicy), ("on_change", OnChangePolicy),
                                       ("interval", IntervalPolicy)])
def test_make_policy_builds_the_named_policy(name, cls):
    assert type(make_policy(PublishConfig(policy=name))) is cls


def test_every_admits_everything_unchanged():
    policy = make_policy(PublishConfig(policy="every"))
    items = [(i * 0.01, "cat" if i % 2 else "dog", 0.9) for i in range(50)]
    assert _run(policy, items) == items


def test_min_score_relabels_top1_as_unknown_and_keeps_the_rest():
    result = make_result(1, "tabby", 0.25)
    low = apply_min_score(result, 0.3)
    assert low.top[0].label == UNKNOWN_LABEL and low.top[0].index == UNKNOWN_INDEX == -1
    assert low.top[0].score == pytest.approx(0.25)
    assert low.top[1:] == result.top[1:]
    assert low.seq == result.seq and low.to_payload()["top"][0] == {"label": "unknown", "index": -1, "score": 0.25}
    assert apply_min_score(result, 0.25) is result  # equal to the threshold: kept
    assert apply_min_score(result, 0.0) is result


def test_every_policy_applies_min_score():
    policy = make_policy(PublishConfig(policy="every", min_score=0.5))
    assert _run(policy, [(0.0, "cat", 0.4), (0.1, "cat", 0.6)]) == [(0.0, "unknown", 0.4), (0.1, "cat", 0.6)]


def test_on_change_publishes_first_then_only_label_changes():
    policy = make_policy(PublishConfig(policy="on_change", change_delta=0.2, heartbeat_s=1000))
    items = [(0.0, "cat", 0.8), (0.1, "cat", 0.81), (0.2, "cat", 0.79), (0.3, "dog", 0.7),
             (0.4, "dog", 0.72), (0.5, "cat", 0.8), (0.6, "cat", 0.8)]
    assert [t for t, *_ in _run(policy, items)] == [0.0, 0.3, 0.5]


def test_on_change_score_delta_is_measured_against_the_last_published():
    policy = make_policy(PublishConfig(policy="on_change", change_delta=0.2, heartbeat_s=1000))
    # A slow drift: each step is small, but the 5th is > 0.2 away from the published 0.50.
    items = [(i * 0.1, "cat", s) for i, s in enumerate([0.50, 0.55, 0.60, 0.65, 0.71, 0.75, 0.80, 0.92])]
    got = _run(policy, items)
    assert [round(s, 2) for _, _, s in got] == [0.50, 0.71, 0.92]
    # exactly change_delta is not "more than"
    policy = make_policy(PublishConfig(policy="on_change", change_delta=0.25, heartbeat_s=1000))
    assert len(_run(policy, [(0.0, "cat", 0.5), (0.1, "cat", 0.75)])) == 1


def test_on_change_heartbeat_without_change():
    policy = make_policy(PublishConfig(policy="on_change", heartbeat_s=2.0))
    items = [(i * 0.1, "cat", 0.8) for i in range(71)]  # 7 s of an unchanging scene at 10 Hz
    times = [t for t, *_ in _run(policy, items)]
    assert times == pytest.approx([0.0, 2.0, 4.0, 6.0])


def test_on_change_heartbeat_restarts_after_a_change():
    policy = make_policy(PublishConfig(policy="on_change", heartbeat_s=2.0))
    items = [(0.0, "cat", 0.8), (1.5, "dog", 0.8), (3.0, "dog", 0.8), (3.6, "dog", 0.8)]
    assert [t for t, *_ in _run(policy, items)] == [0.0, 1.5, 3.6]


def test_on_change_with_min_score_silences_low_confidence_flicker():
    policy = make_policy(PublishConfig(policy="on_change", min_score=0.5, change_delta=0.5, heartbeat_s=1000))
    rng = random.Random(7)
    items = [(i * 0.1, rng.choice(["cat", "dog", "fox", "owl"]), rng.uniform(0.05, 0.3)) for i in range(40)]
    got = _run(policy, items)
    assert [label for _, label, _ in got] == ["unknown"]


def test_interval_respects_its_rate():
    policy = make_policy(PublishConfig(policy="interval", interval_hz=2.0))
    items = [(i / 30.0, "cat", 0.9) for i in range(300)]  # 10 s at 30 fps
    times = [t for t, *_ in _run(policy, items)]
    assert 19 <= len(times) <= 20
    assert all(b - a >= 0.5 for a, b in zip(times, times[1:]))
    for start in times:  # any one-second window holds at most interval_hz messages
        assert sum(1 for t in times if start <= t < start + 1.0) <= 2


@settings(max_examples=100, deadline=None)
@given(hz=st.floats(0.5, 50), gaps=st.lists(st.floats(0.0005, 0.5), min_size=1, max_size=300))
def test_interval_never_exceeds_rate_and_never_starves(hz, gaps):
    policy = IntervalPolicy(PublishConfig(policy="interval", interval_hz=hz))
    t, times, admitted = 0.0, [], []
    for seq, gap in enumerate(gaps):
        t += gap
        times.append(t)
        if policy.admit(make_result(seq, mono=t), t) is not None:
            admitted.append(t)
    period = 1.0 / hz
    assert admitted and admitted[0] == times[0]
    assert all(b - a >= period for a, b in zip(admitted, admitted[1:]))
    # after a publish, the first result arriving once a period has elapsed is admitted
    for a, b in zip(admitted, admitted[1:] + [None]):
        later = [x for x in times if x > a and x - a >= period]
        if later:
            assert b == later[0]
