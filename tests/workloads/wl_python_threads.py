#!/usr/bin/env python3
"""Workload wl_python_threads: a real interpreter running several threads, checkpointed mid-flight.

Usage: wl_python_threads.py TRIGGER DIR [--inject-fault]

Four worker threads, each with its own threading.local value and name: one waits on a threading.Event,
one on a Condition, one sleeps in short steps, one computes (a running sum) until told to stop; all report
their native thread id before READY. After the trigger the main thread checks that the same native ids are
alive (threading.enumerate and /proc/self/task), wakes everybody, and each worker checks its local value,
name and native id; the computing one also that its sum is exactly what its iteration count implies.
Prints one line per check and PASS wl_python_threads (exit 0) or FAILED (exit 1).
"""

import os
import sys
import threading
import time

TRIGGER_TIMEOUT = 900.0
NAME = "wl_python_threads"


def say(line):
    print(line, flush=True)


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.lines = []

    def check(self, what, ok, detail=""):
        with self.lock:
            self.lines.append((what, ok, detail))


def main():
    if len(sys.argv) < 3:
        say(f"FAIL {NAME}-protocol: usage: wl_python_threads.py TRIGGER DIR [--inject-fault]")
        return 2
    trigger = sys.argv[1]
    inject = "--inject-fault" in sys.argv[3:]
    local = threading.local()
    results = Results()
    event = threading.Event()
    cond = threading.Condition()
    state = {"go": False, "stop": False}
    ids = {}
    ready = threading.Barrier(5)

    def common(name, value):
        local.value = value
        ids[name] = threading.get_native_id()
        ready.wait()

    def verify(name, value):
        results.check(f"{name}-local", getattr(local, "value", None) == value,
                      f"local {getattr(local, 'value', None)!r}, expected {value!r}")
        results.check(f"{name}-name", threading.current_thread().name == name,
                      threading.current_thread().name)
        results.check(f"{name}-native-id", threading.get_native_id() == ids[name],
                      f"{threading.get_native_id()} vs {ids[name]}")

    def waiter_event():
        common("py-event", "event-7")
        event.wait()
        verify("py-event", "event-7")

    def waiter_cond():
        common("py-cond", ("cond", 11))
        with cond:
            while not state["go"]:
                cond.wait()
        verify("py-cond", ("cond", 11))

    def sleeper():
        common("py-sleep", 3.25)
        while not state["stop"]:
            time.sleep(0.05)
        verify("py-sleep", 3.25)

    def computer():
        common("py-compute", [1, 2, 3])
        n = 0
        total = 0
        while not state["stop"]:
            n += 1
            total += n
        if inject:
            total += 1
        verify("py-compute", [1, 2, 3])
        results.check("py-compute-sum", total == n * (n + 1) // 2, f"sum {total} for {n} steps")
        results.check("py-compute-ran", n > 0, f"{n} steps")

    workers = [threading.Thread(target=f, name=n) for f, n in [
        (waiter_event, "py-event"), (waiter_cond, "py-cond"), (sleeper, "py-sleep"),
        (computer, "py-compute")]]
    for w in workers:
        w.start()
    ready.wait()
    time.sleep(0.2)
    before = set(ids.values())

    ready_pid = os.getpid()
    say(f"READY {ready_pid}")
    start = time.monotonic()
    while not os.path.exists(trigger):
        if time.monotonic() - start > TRIGGER_TIMEOUT:
            say(f"FAIL {NAME}-protocol: no trigger")
            return 2
        time.sleep(0.005)

    tasks = {int(t) for t in os.listdir("/proc/self/task")}
    results.check("task-list", tasks == before | {ready_pid}, f"{sorted(tasks)} vs {sorted(before)}")
    event.set()
    with cond:
        state["go"] = True
        cond.notify_all()
    state["stop"] = True
    for w in workers:
        w.join(60)
        results.check(f"{w.name}-woke", not w.is_alive(), "still running")
    results.check("same-pid", os.getpid() == ready_pid, f"{os.getpid()} vs {ready_pid}")

    failed = 0
    for what, ok, detail in results.lines:
        if ok:
            say(f"ok {what}")
        else:
            failed += 1
            say(f"FAIL {what}: {detail}")
    if failed == 0:
        say(f"PASS {NAME}")
        return 0
    say(f"FAILED {NAME}: {failed} of {len(results.lines)} checks")
    return 1


if __name__ == "__main__":
    sys.exit(main())
