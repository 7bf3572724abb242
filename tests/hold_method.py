"""A method that exists only for the tests: ``Test/hold`` keeps its request in flight until the
file ``release`` appears in the data directory (at most 30 s), so a test can fill the user's
maxConcurrentRequests slots on purpose. A server loads it with TIDINGS_EXTRA_TYPES=tests.hold_method."""

from __future__ import annotations

import time
from pathlib import Path

from app.protocol.registry import CORE, method


@method("Test/hold", CORE)
def hold(ctx, args: dict) -> dict:
    data = Path(args["data"])
    (data / f"held-{args['n']}").touch()  # tells the test this request holds a slot
    deadline = time.monotonic() + 30
    while not (data / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"n": args["n"]}
