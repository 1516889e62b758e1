"""The background-thread event loop every test peer runs on: the peer's `_open()` on a new
loop, `ready` told when it listens (or why it could not), then the loop until stopped."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any


def run_peer_loop(peer: Any, ready: concurrent.futures.Future[None]) -> None:
    loop = asyncio.new_event_loop()
    peer._loop = loop
    try:
        loop.run_until_complete(peer._open())
    except BaseException as err:
        loop.close()
        ready.set_exception(err)
        return
    ready.set_result(None)
    try:
        loop.run_forever()
    finally:
        loop.close()
