"""moto_server in its own process, with DynamoDB's isolation and number handling (tools.moto_fidelity).

A separate process keeps moto's CPU out of the GIL of the code being measured, as a real DynamoDB
endpoint would be.

    python -m benchmarks.moto_server -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import sys

from tools import moto_fidelity


def main(argv: list[str] | None = None) -> None:
    moto_fidelity.apply()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
