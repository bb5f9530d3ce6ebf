"""Registry client pieces without a registry: upload pieces, read size, scheme, retry policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocimodel.errors import (
    NetworkError,
)
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.uploads import group_chunks, split_pieces


def test_helpers_split_and_group() -> None:
    assert [len(p) for p in split_pieces([b"a" * 5, b"", b"b" * 2], 2)] == [2, 2, 1, 2]
    groups = list(group_chunks([b"abc", b"defg", b"h"], 3))
    assert groups == [[b"abc"], [b"def"], [b"g", b"h"]]


def test_retry_policy_backoff_and_caps() -> None:
    from ocimodel.registry.retry import RetryableFailure, RetryPolicy, is_retryable_status, parse_retry_after

    policy = RetryPolicy(base_delay=1.0, max_delay=4.0, jitter=lambda: 1.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None
    assert [s for s in (408, 429, 500, 501, 503, 505, 400, 404) if is_retryable_status(s)] == [408, 429, 500, 503]

    sleeps: list[float] = []
    capped = RetryPolicy(total_cap=10.0, sleep=sleeps.append)

    def always_busy() -> None:
        raise RetryableFailure(NetworkError("busy"), retry_after=6.0)

    with pytest.raises(NetworkError, match="busy"):
        capped.run(always_busy)
    assert sleeps == [6.0]  # a second 6 s wait would cross the 10 s cap


def test_plain_http_from_environment(monkeypatch: pytest.MonkeyPatch, docker_config: Path) -> None:
    monkeypatch.setenv("OCIMODEL_PLAIN_HTTP", "1")
    with RegistryClient() as client:
        assert client.transport.scheme == "http"
    monkeypatch.setenv("OCIMODEL_PLAIN_HTTP", "0")
    with RegistryClient() as client:
        assert client.transport.scheme == "https"  # never downgraded automatically, not even for localhost


def test_client_reads_the_socket_in_1_mib_pieces() -> None:
    """Pull speed depends on it (see registry.blobs.raise_read_size): an httpcore upgrade
    that renames the knob must fail here, not silently halve throughput."""
    from httpcore._sync.http11 import HTTP11Connection

    with RegistryClient(Connection(plain_http=True)):
        assert HTTP11Connection.READ_NUM_BYTES >= 1024 * 1024
