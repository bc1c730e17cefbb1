"""The shipped result JSON Schema matches Result.to_payload() exactly."""

from __future__ import annotations

import copy

import jsonschema
import pytest

from edgecam.publish.policy import apply_min_score
from tests.support.mqtt import make_result


def _shape(schema: dict, payload: dict, where: str = "") -> None:
    """Every object level: properties == required == the payload's keys, no extras allowed."""
    assert schema["additionalProperties"] is False, where
    assert set(schema["properties"]) == set(schema["required"]) == set(payload), where
    for key, sub in schema["properties"].items():
        value = payload[key]
        if sub.get("type") == "object":
            _shape(sub, value, f"{where}.{key}")
        elif sub.get("type") == "array":
            _shape(sub["items"], value[0], f"{where}.{key}[]")


def test_schema_keys_match_the_payload(result_validator):
    payload = make_result(7).to_payload()
    _shape(result_validator.schema, payload)
    result_validator.validate(payload)
    result_validator.validate(apply_min_score(make_result(8, score=0.1), 0.5).to_payload())  # index -1


@pytest.mark.parametrize("mutate", [
    lambda p: p.update(extra=1),
    lambda p: p.pop("seq"),
    lambda p: p.update(seq="7"),
    lambda p: p.update(captured_at="2026-01-01 10:00:00"),
    lambda p: p["top"][0].update(score=1.5),
    lambda p: p["top"][0].update(rank=1),
    lambda p: p.update(top=[]),
    lambda p: p["latency_ms"].pop("total"),
    lambda p: p["frame"].update(width=0),
    lambda p: p["model"].update(input_size="160"),
])
def test_schema_rejects_payloads_that_drift(result_validator, mutate):
    payload = copy.deepcopy(make_result(7).to_payload())
    mutate(payload)
    with pytest.raises(jsonschema.ValidationError):
        result_validator.validate(payload)
