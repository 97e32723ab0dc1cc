"""The dev stack's embedded AWS: moto on 127.0.0.1, the template's table and topic, SNS -> alert_notifier.

moto cannot run Lambda code (no Docker here), so the topic's Lambda subscription is played by an SQS
queue subscribed to the topic and a thread that hands each message to alert_notifier's handler as
an SNS-shaped event. A message whose delivery raised stays in the queue and comes back after the
visibility timeout, as SNS retries a failed Lambda delivery.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from werkzeug.serving import BaseWSGIServer, make_server

from tools import moto_fidelity
from tools.cfn import create_table_from_template, load_template

HOST = "127.0.0.1"
REGION = "us-east-1"
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
ALERT_TOPIC_LOGICAL_ID = "AlertTopic"
REDELIVERY_SECONDS = 2  # how soon a failed alert delivery is retried (SNS waits longer)


class PortBusy(Exception):
    """A port of the dev stack is taken."""

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} on {HOST} is already in use")
        self.port = port


class MotoServer:
    """moto's server in a thread. Unlike ThreadedMotoServer, a taken port raises at once (it would hang)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per AWS call on the terminal
        moto_fidelity.apply()  # DynamoDB's isolation and number handling, which moto lacks
        # Bind here: werkzeug prints and calls sys.exit(1) when its own bind fails.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((HOST, self.port))
            listener.listen(128)
            app = DomainDispatcherApplication(create_backend_app)
            server = make_server(HOST, self.port, app, threaded=True, fd=listener.fileno())
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortBusy(self.port) from None
            raise
        finally:
            listener.close()  # the server holds its own duplicate of the descriptor
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **FAKE_CREDENTIALS)  # type: ignore[call-overload]


def topic_attributes() -> dict[str, str]:
    """The alert topic's attributes from infra/template.yaml that moto understands.

    KmsMasterKeyId is a reference to a KMS key resource the local stack does not create; encryption
    at rest changes nothing about what subscribers receive.
    """
    properties = load_template()["Resources"][ALERT_TOPIC_LOGICAL_ID]["Properties"]
    return {name: str(value) for name, value in properties.items() if isinstance(value, str | int)}


@dataclass(frozen=True)
class AwsResources:
    table_name: str
    topic_arn: str
    queue_url: str
    subscription_arn: str


def create_resources(endpoint: str, *, table_name: str, topic_name: str) -> AwsResources:
    """The ledger table and alert topic as the template defines them, plus the queue standing in for
    alert_notifier's SNS subscription."""
    create_table_from_template(client("dynamodb", endpoint), table_name)
    sns, sqs = client("sns", endpoint), client("sqs", endpoint)
    topic_arn = sns.create_topic(Name=topic_name, Attributes=topic_attributes())["TopicArn"]
    queue_url = sqs.create_queue(
        QueueName=f"{topic_name}-alert-notifier",
        Attributes={"VisibilityTimeout": str(REDELIVERY_SECONDS)},
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    subscription = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)["SubscriptionArn"]
    return AwsResources(table_name, topic_arn, queue_url, subscription)


def sns_event(envelope: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """The event Lambda receives from an SNS subscription, built from the SNS envelope SQS got."""
    keep = (
        "Type",
        "MessageId",
        "TopicArn",
        "Subject",
        "Message",
        "Timestamp",
        "SignatureVersion",
        "Signature",
        "SigningCertURL",
        "UnsubscribeURL",
        "MessageAttributes",
    )
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription_arn,
                "Sns": {name: envelope[name] for name in keep if name in envelope},
            }
        ]
    }


SnsHandler = Callable[[dict[str, Any]], Any]


class AlertPump:
    """Delivers every message published to the alert topic to `handler`, in a background thread."""

    def __init__(
        self, endpoint: str, resources: AwsResources, handler: SnsHandler, log: Callable[[str], None]
    ) -> None:
        self._sqs = client("sqs", endpoint)
        self._resources = resources
        self._handler = handler
        self._log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-pump", daemon=True)
        self.delivered = 0
        self.failed = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self._sqs.receive_message(
                    QueueUrl=self._resources.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
            except Exception as exc:  # moto is stopping, or a bug: say so once per second at most
                if self._stop.is_set():
                    return
                self._log(f"alert pump: cannot read the queue ({type(exc).__name__})")
                self._stop.wait(1)
                continue
            for message in answer.get("Messages", []):
                self._deliver(message)

    def _deliver(self, message: dict[str, Any]) -> None:
        event = sns_event(json.loads(message["Body"]), self._resources.subscription_arn)
        try:
            self._handler(event)
        except Exception as exc:
            self.failed += 1
            self._log(
                f"alert_notifier raised {type(exc).__name__}: {exc}; "
                f"SNS-style redelivery in {REDELIVERY_SECONDS} s"
            )
            traceback.print_exc()
            return
        self.delivered += 1
        with contextlib.suppress(Exception):
            self._sqs.delete_message(
                QueueUrl=self._resources.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
