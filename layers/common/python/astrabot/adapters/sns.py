"""SNS adapter: publish one credit alert to the alert topic.

The body is the alert's JSON (DESIGN.md section 5); `severity` and `kind` are also message
attributes so email/SMS subscriptions can filter (e.g. only `critical`) without parsing the body.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from astrabot.domain.alerts import Alert
from astrabot.errors import AlertPublishFailed

SUBJECT_LIMIT = 100  # SNS rejects longer subjects (shown by email subscriptions)


class AlertPublisher:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self._client = client
        self._topic_arn = topic_arn

    def publish(self, alert: Alert) -> str:
        """Publish `alert`; returns SNS's MessageId. Raises AlertPublishFailed."""
        try:
            answer = self._client.publish(
                TopicArn=self._topic_arn,
                Message=json.dumps(alert.message(), separators=(",", ":")),
                Subject=f"AstraBot credits {alert.status.value} ({alert.kind.value})"[:SUBJECT_LIMIT],
                MessageAttributes={
                    "severity": {"DataType": "String", "StringValue": alert.severity},
                    "kind": {"DataType": "String", "StringValue": alert.kind.value},
                },
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            raise AlertPublishFailed(f"SNS publish of {alert.alert_id} failed: {code}") from exc
        except BotoCoreError as exc:
            raise AlertPublishFailed(f"SNS publish of {alert.alert_id} failed: {type(exc).__name__}") from exc
        return str(answer["MessageId"])
