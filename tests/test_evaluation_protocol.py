"""The evaluation protocol: presets, serialisation, fingerprints, validation."""

from __future__ import annotations

import json

import pytest

from clipdenoise.errors import ConfigError
from clipdenoise.evaluation import EvalProtocol


def test_protocol_round_trip_and_validation():
    protocol = EvalProtocol.real_srgb(channel="y", crop_border=4)
    assert EvalProtocol.from_dict(json.loads(json.dumps(protocol.to_dict()))) == protocol
    assert protocol.fingerprint() != EvalProtocol.real_srgb().fingerprint()
    assert EvalProtocol.ldct().clamp_output is False
    with pytest.raises(ConfigError, match="valid fields"):
        EvalProtocol.from_dict({"sed": 1})
    with pytest.raises(ConfigError, match="channel"):
        EvalProtocol(channel="lab")
