"""Board locks: one owner per USB serial, released even when the owner dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


# -- one lock directory per host, shared by every user (issue 15) -------------------------
def test_the_default_lock_directory_is_the_hosts_not_the_users(monkeypatch):
    from hil.locks import default_lock_dir

    monkeypatch.delenv("HIL_LOCK_DIR", raising=False)
    path = default_lock_dir()
    assert str(os.getuid()) not in path.name
    assert path.name in ("hil", "hil-locks")


def test_lock_directory_and_files_let_every_user_in(tmp_path):
    import stat

    lock = BoardLock("SN-SHARED", tmp_path / "locks").acquire()
    try:
        assert stat.S_IMODE((tmp_path / "locks").stat().st_mode) == 0o1777
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o666
    finally:
        lock.release()


def test_a_symlink_planted_as_a_lock_file_is_not_followed(tmp_path):
    from hil.errors import HilError

    locks = tmp_path / "locks"
    locks.mkdir(mode=0o1777)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (locks / "SN-LINK.lock").symlink_to(victim)
    with pytest.raises(HilError):
        BoardLock("SN-LINK", locks).acquire()
    assert victim.read_text() == "precious\n"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as a second user")
def test_two_users_of_one_host_exclude_each_other(tmp_path):
    """A lock another user holds (here: nobody, uid 65534) keeps us out, and ours keeps
    them out, through the same host-wide directory."""
    import subprocess
    import sys

    locks = tmp_path / "locks"
    tmp_path.chmod(0o755)
    script = (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from hil.locks import BoardLock, BoardBusy\n"
        "try:\n    l = BoardLock('SN-USERS', sys.argv[2], wait=0).acquire()\n"
        "except BoardBusy:\n    print('busy', flush=True); sys.exit(0)\n"
        "print('held', flush=True); time.sleep(30)\n"
    )

    def as_nobody():
        os.setgid(65534)
        os.setuid(65534)

    root = str(Path(__file__).resolve().parent.parent)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import hil.locks", root],
            capture_output=True, preexec_fn=as_nobody, timeout=60,
        )
    except (PermissionError, subprocess.SubprocessError) as exc:
        pytest.skip(f"user nobody cannot run this Python or read this tree: {exc}")
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot import hil from {root}: {probe.stderr.decode()[-200:]}")
    theirs = subprocess.Popen(
        [sys.executable, "-c", script, root, str(locks)], stdout=subprocess.PIPE, text=True, preexec_fn=as_nobody
    )
    try:
        assert theirs.stdout.readline().strip() == "held"
        with pytest.raises(BoardBusy, match=f"pid {theirs.pid}"):
            BoardLock("SN-USERS", locks, wait=0).acquire()
    finally:
        theirs.kill()
        theirs.wait(5)
    mine = BoardLock("SN-USERS", locks, wait=5).acquire()
    try:
        again = subprocess.run(
            [sys.executable, "-c", script, root, str(locks)], capture_output=True, text=True,
            preexec_fn=as_nobody, timeout=60,
        )
        assert again.stdout.strip() == "busy", again.stderr
    finally:
        mine.release()
