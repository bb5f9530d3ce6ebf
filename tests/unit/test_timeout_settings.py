"""Timeouts without a registry: the settings, their validation, proxies guarded, the retry budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocimodel.errors import NetworkError, UsageError
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.credentials import CredentialStore
from ocimodel.registry.retry import RetryableFailure, RetryPolicy
from ocimodel.registry.timeouts import PROGRESS_BYTES, Timeouts


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocimodel", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


@pytest.fixture
def cli_env(docker_config: Path) -> dict[str, str]:
    return {"OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config)}


def test_proxied_connections_are_guarded_too(monkeypatch, docker_config):
    """HTTP(S)_PROXY routes requests through other connection pools: they get the limits as well."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    with RegistryClient(credentials=CredentialStore()) as client:
        http = client.transport.http
        transports = [http._transport, *(t for t in http._mounts.values() if t is not None)]
        assert len(transports) >= 2
        assert all(type(t._pool._network_backend).__name__ == "_GuardedBackend" for t in transports)


def test_timeouts_from_one_number_and_the_environment():
    assert Timeouts.of(2) == Timeouts(connect=2, response=2, idle=2, progress_bytes=PROGRESS_BYTES, retry_budget=6)
    assert Timeouts.resolve(None, {}) == Timeouts()
    assert Timeouts.resolve(None, {"OCIMODEL_TIMEOUT": " 7.5 "}) == Timeouts.of(7.5)
    assert Timeouts.resolve(3, {"OCIMODEL_TIMEOUT": "7.5"}) == Timeouts.of(3)  # the flag wins
    for bad in ("0", "-1", "nan", "inf", "1e9"):
        with pytest.raises(UsageError, match="OCIMODEL_TIMEOUT|--timeout"):
            Timeouts.resolve(None, {"OCIMODEL_TIMEOUT": bad})
    with pytest.raises(UsageError, match="not a number of seconds"):
        Timeouts.resolve(None, {"OCIMODEL_TIMEOUT": "soon"})


@pytest.mark.parametrize("value", ["0", "-3", "abc"])
def test_bad_timeout_is_a_usage_error(value, cli_env):
    out = run("tags", "127.0.0.1:1/m", "--timeout", value, env=cli_env)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "timeout" in out.stderr.lower(), out.stderr


def test_retries_stop_when_the_budget_is_spent():
    """Each attempt is bounded by the timeouts; the budget bounds how many of them there are."""
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    def attempt() -> None:
        now[0] += 1.0  # an attempt that ran into a 1 s timeout
        raise RetryableFailure(NetworkError("registry r did not answer"))

    policy = RetryPolicy(max_attempts=50, sleep=sleep, jitter=lambda: 0.0, clock=lambda: now[0])
    with pytest.raises(NetworkError, match=r"gave up after 3 attempt\(s\): the 4s retry budget is spent"):
        policy.run(attempt, budget=4.0)
    assert sleeps == [0.25, 0.5] and now[0] <= 4.0
