"""`new_id` is `str(uuid.uuid4())` from a pooled random source: same format, never a repeat, not shared by a fork."""

from __future__ import annotations

import os
import uuid

from opsat.common.ids import new_id


def test_ids_are_canonical_version_4_uuids_and_never_repeat():
    ids = [new_id() for _ in range(20_000)]  # several refills of the pool
    assert len(set(ids)) == len(ids)
    for text in ids[:2_000]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_does_not_reuse_the_parents_pool():
    new_id()  # the pool holds unread bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids must come from a pool of its own
        os.write(write, ",".join(new_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 4096).decode().split(",")
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(3)]
    assert len(child) == 3 and not set(child) & set(parent)
