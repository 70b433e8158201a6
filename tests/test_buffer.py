"""The SQLite outbox: order, seq persistence, ack-only deletion, the bound."""

from __future__ import annotations

import time
from pathlib import Path

from lobbywatch.edge.buffer import Draft, Outbox


def _put(box: Outbox, n: int) -> list[int]:
    return [
        box.put(lambda seq: Draft(f"t/{seq}", f'{{"seq":{seq}}}'.encode(), True, 60)).seq
        for _ in range(n)
    ]


def test_messages_stay_until_acked_in_seq_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", 100)
    assert _put(box, 5) == [1, 2, 3, 4, 5]
    first = box.after(0, 3)
    assert [m.seq for m in first] == [1, 2, 3]
    assert first[0].payload == b'{"seq":1}' and first[0].topic == "t/1" and first[0].retain
    box.ack(2)  # acks may come in any order; only acked rows go
    assert [m.seq for m in box.after(0, 10)] == [1, 3, 4, 5]
    assert [m.seq for m in box.after(3, 10)] == [4, 5]
    assert box.depth == 4
    box.ack(2)  # twice: harmless
    assert box.depth == 4
    box.close()


def test_seq_and_backlog_survive_a_restart(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", 100)
    _put(box, 3)
    box.ack(1)
    box.ack(2)
    box.ack(3)
    _put(box, 2)  # 4, 5 unacked when the agent dies
    box.close()
    again = Outbox(tmp_path / "o.sqlite", 100)
    assert [m.seq for m in again.after(0, 10)] == [4, 5]
    assert again.depth == 2
    assert _put(again, 1) == [6]  # never reuses a seq, even after all were acked
    again.close()
    empty = Outbox(tmp_path / "e.sqlite", 100)
    _put(empty, 2)
    empty.ack(1)
    empty.ack(2)
    empty.close()
    assert _put(Outbox(tmp_path / "e.sqlite", 100), 1) == [3]


def test_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    dropped: list[int] = []
    box = Outbox(tmp_path / "o.sqlite", 5, on_drop=dropped.append)
    _put(box, 8)
    assert box.depth == 5
    assert [m.seq for m in box.after(0, 10)] == [4, 5, 6, 7, 8]
    assert box.dropped_total == 3 and sum(dropped) == 3
    box.close()
    # a smaller bound after a restart trims the backlog on the next put
    smaller = Outbox(tmp_path / "o.sqlite", 2, on_drop=dropped.append)
    _put(smaller, 1)
    assert [m.seq for m in smaller.after(0, 10)] == [8, 9]
    assert smaller.dropped_total == 4


def test_remaining_expiry_counts_time_in_the_outbox(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", 10)
    msg = box.put(lambda seq: Draft("t", b"{}", True, 60))
    assert msg.remaining_expiry(msg.created + 15) == 45
    assert msg.remaining_expiry(msg.created + 90) is not None
    assert (msg.remaining_expiry(msg.created + 90) or 0) <= 0
    none = box.put(lambda seq: Draft("t", b"{}", True, None))
    assert none.remaining_expiry(time.time() + 1e6) is None
