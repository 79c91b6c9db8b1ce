"""The claim lock of an SQLite study (issue 15): portable (filelock, no `fcntl` at import), exclusive across
processes, waited for, and dropped by the system when its holder is killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest
from fresh_process import REPO

from shufflesearch.search.queue import ClaimLock

HOLD = """
import sys, time
from shufflesearch.search.queue import ClaimLock
lock = ClaimLock(None, sys.argv[1], "study")
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_search_imports_where_there_is_no_fcntl():
    # Windows has no fcntl: the search package (and the claim lock's module) must import without it.
    probe = "import sys; sys.modules['fcntl'] = None\nimport shufflesearch.search.queue, shufflesearch.search.workers"
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPO, capture_output=True)


@pytest.mark.slow
def test_the_claim_lock_waits_for_another_process_and_a_killed_holder_releases_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, url], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = ClaimLock(None, url, "study")
        taken = threading.Event()
        waiter = threading.Thread(target=lambda: (lock.acquire(), taken.set()), daemon=True)
        waiter.start()
        assert not taken.wait(2.0)  # exclusive: blocked while the other process holds it
        holder.send_signal(signal.SIGKILL)  # a worker killed mid-claim releases nothing itself
        holder.wait(timeout=30)
        assert taken.wait(30)  # the system dropped the dead holder's lock
        waiter.join(timeout=5)
        lock.release()
        lock.release()  # idempotent
        again = ClaimLock(None, url, "study")
        again.acquire()  # released for real: another claimant gets it at once
        again.close()
        lock.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
