"""Fewer, larger socket writes for pika: what a process has buffered goes out in one send.

pika (1.3, 1.4) buffers every frame it marshals as a chunk of its own and sends each
chunk with its own ``send()``: a publish is three frames (method, header, body), so three
system calls and, with ``TCP_NODELAY``, three TCP segments for the broker to read. A
profile of a filter worker spent more time in ``send()`` than in everything else it does
per task, and every extra segment costs the broker a read too. Joining the chunks that
are waiting before the transport sends them changes neither the bytes nor their order,
only how many calls carry them.

:func:`coalesce_writes` wraps pika's transport once per process; if a pika release
renames what it wraps, nothing is changed and pika sends as it always did.
"""

from __future__ import annotations

import logging
from typing import Any

from pika.adapters.utils import io_services_utils

log = logging.getLogger(__name__)

_TRANSPORT = getattr(io_services_utils, "_AsyncTransportBase", None)
_MARK = "_insultbench_coalesced"


def coalesce_writes() -> bool:
    """Make pika send all buffered frames of a connection in one call; True if applied."""
    produce = getattr(_TRANSPORT, "_produce", None)
    if produce is None:
        log.debug("pika's transport has no _produce; writes are left as they are")
        return False
    if getattr(produce, _MARK, False):
        return True

    def coalesced(self: Any) -> None:
        buffers = getattr(self, "_tx_buffers", None)
        if buffers is not None and len(buffers) > 1:
            joined = b"".join(buffers)
            buffers.clear()
            buffers.append(joined)
        produce(self)

    setattr(coalesced, _MARK, True)
    _TRANSPORT._produce = coalesced
    return True
