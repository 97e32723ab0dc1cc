"""Integration fixtures: a real moto_server on 127.0.0.1 (one per session) and a fresh table per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from astrabot.adapters.ledger import Ledger
from tools import moto_fidelity
from tools.cfn import create_table_from_template


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    moto_fidelity.apply()  # DynamoDB's isolation and number handling, which moto lacks
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def server_ddb(moto_endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=moto_endpoint,
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=32),
    )


@pytest.fixture
def server_ledger(server_ddb: Any) -> Ledger:
    name = f"astrabot-{uuid.uuid4().hex[:8]}"
    create_table_from_template(server_ddb, name)
    return Ledger(server_ddb, name)
