#!/usr/bin/env python3
"""Workload wl_python_tree_threads: python3 with a child process that runs three threads.

Usage: wl_python_tree_threads.py TRIGGER DIR [--inject-fault]

The root forks a child; the child starts three threads, each with its own threading.local value, which
poll for the trigger file. After the trigger each thread checks its local value and native thread id, and
the child exits 0 only if all three matched; the root checks the child is still its child (same pid) and
reaps it with status 0. With --inject-fault one thread changes its local value after the trigger.
Prints one line per check and PASS wl_python_tree_threads (exit 0) or FAILED (exit 1).
"""

import os
import sys
import threading
import time

NAME = "wl_python_tree_threads"
TRIGGER_TIMEOUT = 900.0


def say(line):
    print(line, flush=True)


def wait_trigger(trigger):
    start = time.monotonic()
    while not os.path.exists(trigger):
        if time.monotonic() - start > TRIGGER_TIMEOUT:
            return False
        time.sleep(0.01)
    return True


def child(trigger, inject):
    local = threading.local()
    ids = {}
    results = []
    lock = threading.Lock()

    def worker(i):
        local.value = ("thread", i)
        ids[i] = threading.get_native_id()
        wait_trigger(trigger)
        if inject and i == 1:
            local.value = ("changed", i)
        ok = local.value == ("thread", i) and threading.get_native_id() == ids[i]
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os._exit(0 if len(results) == 3 and all(results) else 1)


def main():
    if len(sys.argv) < 3:
        say(f"FAIL {NAME}-protocol: usage: wl_python_tree_threads.py TRIGGER DIR [--inject-fault]")
        return 2
    trigger = sys.argv[1]
    inject = "--inject-fault" in sys.argv[3:]
    pid = os.fork()
    if pid == 0:
        child(trigger, inject)
    # Ready once the child runs its three threads.
    start = time.monotonic()
    while len(os.listdir(f"/proc/{pid}/task")) < 4:
        if time.monotonic() - start > 60:
            say(f"FAIL {NAME}-protocol: child threads never started")
            return 2
        time.sleep(0.01)
    ready_pid = os.getpid()
    say(f"READY {ready_pid}")
    if not wait_trigger(trigger):
        say(f"FAIL {NAME}-protocol: no trigger")
        return 2
    checks = []
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    checks.append(("child-ppid", ppid == ready_pid, f"ppid {ppid}"))
    _, status = os.waitpid(pid, 0)
    checks.append(("child-threads", status == 0, f"wait status {status:#x}"))
    checks.append(("same-pid", os.getpid() == ready_pid, f"{os.getpid()} vs {ready_pid}"))
    failed = 0
    for what, ok, detail in checks:
        if ok:
            say(f"ok {what}")
        else:
            failed += 1
            say(f"FAIL {what}: {detail}")
    if failed:
        say(f"FAILED {NAME}: {failed} of {len(checks)} checks")
        return 1
    say(f"PASS {NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
