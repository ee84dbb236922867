"""Random (version 4) UUIDs as text, for request, correlation and event ids.

`str(uuid.uuid4())` costs ~9 µs here, most of it one `getrandom` system call per id: a request minted three.
These come from the same kernel source, read 256 ids at a time, and are the same 122 random bits in the
same format. The pool is per process (refilled after a fork) and taken under a lock, so no two callers
(threads, forked workers) ever share bytes.
"""

from __future__ import annotations

import os
import threading

_POOL_BYTES = 4096
_KEEP = ~((0xF000 << 64) | (0xC000 << 48))  # clears the version nibble and the variant bits
_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 9562 variant


class _Pool:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.data = b""
        self.at = 0


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.reset)


def new_id() -> str:
    """A random UUID (version 4) in its canonical text form, like `str(uuid.uuid4())`."""
    with _pool.lock:
        at = _pool.at
        if at >= len(_pool.data):
            _pool.data, at = os.urandom(_POOL_BYTES), 0
        _pool.at = at + 16
        raw = _pool.data[at:at + 16]
    h = "%032x" % (int.from_bytes(raw) & _KEEP | _SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
