"""Suite-wide guards: no network but loopback, fake AWS credentials, no real endpoints."""

from __future__ import annotations

import os

import pytest

# Set before any boto3 client exists: nothing in the suite may talk to real AWS.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_METRICS_NAMESPACE": "AstraBotNexus",
    "POWERTOOLS_SERVICE_NAME": "astrabot-tests",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Loopback only: moto_server and the local simulators live on 127.0.0.1.
    import pytest_socket

    pytest_socket.socket_allow_hosts(["127.0.0.1", "localhost", "::1"], allow_unix_socket=True)
