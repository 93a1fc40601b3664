"""Limits and options of the demo server (ServeConfig) and their validation."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from clipdenoise.web import InferenceSettings, ServeConfig, build_catalogue, create_app  # noqa: E402


def test_serve_config_validation():
    from clipdenoise.errors import ConfigError

    with pytest.raises(ConfigError, match="max_pixels"):
        ServeConfig(max_pixels=0)
    with pytest.raises(ConfigError, match="tile_overlap"):
        ServeConfig(tile_size=64, tile_overlap=40)
    with pytest.raises(ConfigError, match="multiple of 32"):
        ServeConfig(tile_size=100)
    assert InferenceSettings().device == "auto"
    with pytest.raises(ConfigError, match="device"):
        create_app(
            build_catalogue(include_imported=False), settings=InferenceSettings(device="tpu")
        )
    assert ServeConfig().host == "127.0.0.1"
