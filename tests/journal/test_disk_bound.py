"""The disk bound (bridge.journal.store): ``journal.max_bytes`` bounds the files on disk, and they shrink back.

A sink that is down for days must not fill the disk: the journal's files (database, WAL, WAL index) stay within
``max_bytes`` plus one commit, whatever is written, and once the backlog is delivered they shrink again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import JournalFull
from bridge.journal import Journal
from bridge.pipeline import Pipeline
from tests.helpers import running_journal, switch, wait_until

MAX = 8 * 1024**2


def state_dir_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


async def test_the_state_directory_stays_within_the_bound_and_shrinks_after_the_backlog(tmp_path: Path) -> None:
    """With max_bytes 8 MiB and the sink down, the files never pass 8 MiB + one commit; delivered, they shrink."""
    state = tmp_path / "state"
    async with running_journal(state / "journal.sqlite3", max_bytes=MAX) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["down"])
        bound = MAX + j.commit_cap
        peak, n = 0, 0
        refused = 0
        # The outage: nothing is delivered. Keep writing well past the point where the journal says full.
        while refused < 20:
            try:
                await p.ingest("home", "hubitat", [switch(str(k % 500), f"{k}:" + "v" * 600) for k in range(n, n + 40)])
            except JournalFull:
                refused += 1
            n += 40
            peak = max(peak, state_dir_bytes(state))
        assert j.full
        held = j.pending_bytes
        assert held > MAX // 2, "the bound is used, not wasted"
        assert peak <= bound, f"the state directory grew to {peak} bytes, past {bound}"
        # The sink comes back and delivers in batches, as a delivery loop does.
        head = j.head
        for seq in range(j.cursor("down") + 500, head, 500):
            await j.advance("down", seq)
            peak = max(peak, state_dir_bytes(state))
        await j.advance("down", head)
        assert peak <= bound, f"draining grew the files to {peak} bytes, past {bound}"
        # Within a trim interval of the last delivery, with nothing else happening, the files shrink back.
        await wait_until(lambda: state_dir_bytes(state) < 1024**2, "the files shrank back after the backlog drained")
        assert (j.pending_bytes, j.full) == (0, False)


@pytest.mark.parametrize("max_bytes", [4 * 1024**2, 64 * 1024**2, 1024**3])
def test_the_wal_budget_and_commit_cap_leave_room_for_data(tmp_path: Path, max_bytes: int) -> None:
    """Whatever the bound, the WAL and one commit take a small share of it, so most of it holds events."""
    j = Journal(tmp_path / "journal.sqlite3", max_bytes=max_bytes)
    assert j.wal_budget + j.commit_cap <= max_bytes // 8
    assert j.limit >= max_bytes * 7 // 8
