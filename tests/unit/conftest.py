"""Unit fixtures: moto-backed DynamoDB table built from infra/template.yaml."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from astrabot.adapters.ledger import Ledger
from tools import moto_fidelity
from tools.cfn import create_table_from_template

TABLE = "astrabot-test"


@pytest.fixture
def aws() -> Iterator[None]:
    moto_fidelity.apply()  # DynamoDB's number handling, which moto lacks
    with mock_aws():
        yield


@pytest.fixture
def ddb(aws: None) -> Any:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table_from_template(client, TABLE)
    return client


@pytest.fixture
def ledger(ddb: Any) -> Ledger:
    return Ledger(ddb, TABLE)
