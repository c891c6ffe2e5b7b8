"""Board locks: one owner per USB serial, released even when the owner dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hil.locks import BoardBusy, BoardLock

HOLDER = """
import sys, time
from hil.locks import BoardLock
lock = BoardLock(sys.argv[1], sys.argv[2]).acquire()
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "SN1", str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait(5)


def test_second_owner_is_refused_naming_the_holders_pid(tmp_path, holder):
    with pytest.raises(BoardBusy) as err:
        BoardLock("SN1", tmp_path, wait=0.2).acquire()
    assert f"pid {holder.pid}" in str(err.value)
    assert "SN1" in str(err.value)


def test_wait_is_bounded(tmp_path, holder):
    start = time.monotonic()
    with pytest.raises(BoardBusy):
        BoardLock("SN1", tmp_path, wait=0.5).acquire()
    assert 0.4 <= time.monotonic() - start < 3.0


def test_lock_is_released_when_the_holder_is_killed(tmp_path, holder):
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(5)
    with BoardLock("SN1", tmp_path, wait=2.0) as lock:
        assert lock.held


def test_a_waiting_owner_gets_the_board_when_it_is_freed(tmp_path, holder):
    def free_later():
        time.sleep(0.3)
        holder.kill()

    import threading

    threading.Thread(target=free_later, daemon=True).start()
    with BoardLock("SN1", tmp_path, wait=5.0) as lock:
        assert lock.held


def test_different_boards_do_not_block_each_other(tmp_path, holder):
    with BoardLock("SN2", tmp_path) as lock:
        assert lock.held


def test_release_lets_the_next_owner_in(tmp_path):
    first = BoardLock("SN3", tmp_path).acquire()
    first.release()
    with BoardLock("SN3", tmp_path) as second:
        assert second.held


def test_claim_first_free_takes_the_first_board_nobody_holds(tmp_path):
    from hil.locks import BoardBusy, BoardLock, claim_first_free

    boards = [("A", tmp_path), ("B", tmp_path), ("C", tmp_path)]
    held = BoardLock("A", tmp_path).acquire()
    try:
        index, lock = claim_first_free(boards)
        assert index == 1 and lock.held
        index2, lock2 = claim_first_free(boards)  # another worker: the next free one
        assert index2 == 2
        with pytest.raises(BoardBusy, match="every board of the rig is busy"):
            claim_first_free(boards, wait=0.2)
        lock.release()
        assert claim_first_free(boards, wait=1.0)[0] == 1  # freed: taken again
    finally:
        held.release()
