"""Configuration from the environment, secrets kept out of reprs and logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from services import jsonlog
from services.adapter import config as adapter_config
from services.aeroalpes import config
from services.secret import ConfigError, Secret

PASSWORD = "s3cr3t-Pa55word-xyz"


def test_aeroalpes_settings_from_env(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    settings = config.from_env(
        {
            "REDIS_NODES": "10.0.0.1:7000, redis-2:7003,[::1]:7001",
            "REDIS_PASSWORD_FILE": str(password_file),
            "PORT": "8080",
            "AEROALPES_WORKERS": "3",
            "AEROALPES_MAX_CONNECTIONS": "100",
            "AEROALPES_HEADER_TIMEOUT": "2.5",
            "AEROALPES_BODY_TIMEOUT": "4",
            "AEROALPES_KEEPALIVE_TIMEOUT": "30",
            "AEROALPES_REQUEST_BUDGET": "20",
            "AEROALPES_GRACE": "25",
            "REDIS_MAX_CONNECTIONS": "16",
        }
    )
    assert settings.redis.nodes == (("10.0.0.1", 7000), ("redis-2", 7003), ("::1", 7001))
    assert settings.redis.password == Secret(PASSWORD)
    assert (settings.port, settings.workers, settings.grace, settings.redis.max_connections) == (
        8080,
        3,
        25,
        16,
    )
    limits = settings.limits
    assert (limits.max_connections, limits.header_timeout, limits.body_timeout) == (100, 2.5, 4.0)
    assert (limits.keepalive_timeout, limits.request_budget) == (30.0, 20.0)
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.redis.password)


def test_aeroalpes_defaults() -> None:
    settings = config.from_env({"REDIS_NODES": "r:7000"})
    assert (settings.port, settings.host, settings.redis.password) == (5000, "0.0.0.0", None)
    assert (settings.workers, settings.limits.request_budget, settings.limits.max_body_bytes) == (
        1,
        15.0,
        1 << 20,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "REDIS_NODES is required"),
        ({"REDIS_NODES": "host-without-port"}, "is not host:port"),
        ({"REDIS_NODES": "r:99999"}, "is not host:port"),
        ({"REDIS_NODES": "r:1", "PORT": "http"}, "PORT must be an integer"),
        ({"REDIS_NODES": "r:1", "REDIS_PASSWORD": "a", "REDIS_PASSWORD_FILE": "/x"}, "only one of"),
        ({"REDIS_NODES": "r:1", "REDIS_PASSWORD_FILE": "/nonexistent/pw"}, "cannot read"),
        ({"REDIS_NODES": "r:1", "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"REDIS_NODES": "r:1", "AEROALPES_MAX_CONNECTIONS": "1"}, "AEROALPES_MAX_CONNECTIONS"),
        ({"REDIS_NODES": "r:1", "AEROALPES_BODY_TIMEOUT": "0"}, "AEROALPES_BODY_TIMEOUT"),
    ],
)
def test_aeroalpes_bad_env(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.from_env(env)


def test_adapter_settings() -> None:
    default = adapter_config.from_env({})
    assert (default.aeroalpes_url, default.port, default.bind) == (
        "http://aeroalpes:5000",
        50051,
        "0.0.0.0:50051",
    )
    custom = adapter_config.from_env({"AEROALPES_URL": "http://10.1.2.3:5000/", "PORT": "6000", "HOST": "::"})
    assert (custom.aeroalpes_url, custom.bind) == ("http://10.1.2.3:5000", "[::]:6000")
    with pytest.raises(ConfigError, match="AEROALPES_URL"):
        adapter_config.from_env({"AEROALPES_URL": "aeroalpes:5000"})


def test_json_log_lines_redact_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    jsonlog.configure("INFO", secrets=[PASSWORD])
    log = logging.getLogger("test.redaction")
    try:
        try:
            raise RuntimeError(f"auth failed with {PASSWORD}")
        except RuntimeError:
            log.exception("connecting with %s", PASSWORD, extra={"detail": f"pw={PASSWORD}"})
    finally:
        root.handlers[:], root.level = saved
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert PASSWORD not in lines[0]
    assert entry["msg"] == "connecting with ***"
    assert entry["detail"] == "pw=***"
    assert entry["level"] == "error" and entry["logger"] == "test.redaction"
    assert "RuntimeError: auth failed with ***" in entry["exc"]
