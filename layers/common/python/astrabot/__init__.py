"""AstraBot Nexus: the shared package of the Lambda layer.

Handlers (functions/*/app.py) call one function of `astrabot.service`; services combine the pure
`astrabot.domain` with the I/O of `astrabot.adapters`. `observability` may be imported anywhere.
"""

__version__ = "0.1.0"
