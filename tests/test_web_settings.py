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


def test_defaults_keep_the_demo_private_and_bounded():
    config = ServeConfig()
    assert (config.host, config.port) == ("127.0.0.1", 8000)
    assert config.max_upload_bytes == 40 * 2**20 and config.max_pixels == 16_000_000
    assert config.max_concurrent == 1 and config.max_queue == 32
    assert 2 * config.tile_overlap <= config.tile_size and config.tile_size % 32 == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"job_timeout_s": 0}, "job_timeout_s must be positive, got 0"),
        ({"max_upload_bytes": -1}, "max_upload_bytes must be positive"),
        ({"request_timeout_s": 0.0}, "request_timeout_s must be positive"),
        ({"max_queue": -1}, "max_queue must be >= 0, got -1"),
        ({"tile_size": 32}, "at least 64, got 32"),
        ({"tile_overlap": -1}, "tile_overlap must be between 0 and half the tile size"),
        ({"port": 70000}, r"port must be in \[0, 65535\], got 70000"),
    ],
)
def test_each_limit_is_checked(options, message):
    from clipdenoise.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        ServeConfig(**options)


def test_edge_values_are_accepted():
    config = ServeConfig(max_queue=0, tile_size=64, tile_overlap=32, port=0)
    assert (config.max_queue, config.tile_overlap, config.port) == (0, 32, 0)
