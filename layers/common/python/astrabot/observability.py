"""Powertools singletons shared by every module (logger and metrics).

Tracing is switched on at the function level in the SAM template (`Tracing: Active`); we do not
ship the X-Ray SDK in the layer because it adds cold-start time to the interactions path.
"""

from __future__ import annotations

import logging
import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "AstraBotNexus")

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "astrabot"))
metrics = Metrics(namespace=NAMESPACE)

# httpx logs every request URL at INFO, and our URLs carry secrets (the alert webhook's token,
# interaction tokens). Keep them out of CloudWatch whatever level the root logger runs at.
logging.getLogger("httpx").setLevel(logging.WARNING)

__all__ = ["NAMESPACE", "MetricUnit", "logger", "metrics"]
