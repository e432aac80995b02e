#!/usr/bin/env python3
"""Workload wl_python: a real interpreter nobody here wrote, with a large heap and an open file.

Usage: wl_python.py TRIGGER DIR [--inject-fault]

It builds a dict of 1,000,000 entries (about 100 MiB of Python objects spread over the interpreter's
arenas), opens a file in DIR with os.open and writes to it, then prints READY <pid> and polls for the
trigger with time.sleep (which Python retries on EINTR). After the trigger it re-verifies every dict entry,
the file descriptor's offset, the file's identity and content, writes more and reads it all back, and prints
one line per check and PASS wl_python (exit 0) or FAILED (exit 1). The protocol is in tests/README.md.
"""

import os
import sys
import time

ENTRIES = 1_000_000
PRIME = 1_000_003
TRIGGER_TIMEOUT = 900.0


def value(i):
    return (i * i * 7919 + 13) % PRIME


def say(line):
    print(line, flush=True)


def main():
    if len(sys.argv) < 3:
        say("FAIL wl_python-protocol: usage: wl_python.py TRIGGER DIR [--inject-fault]")
        return 2
    trigger, workdir = sys.argv[1], sys.argv[2]
    inject = "--inject-fault" in sys.argv[3:]

    table = {i: value(i) for i in range(ENTRIES)}
    # Strings too, so the heap holds more than small ints.
    names = {f"key-{i}": i for i in range(0, ENTRIES, 10)}

    path = os.path.join(workdir, "wl_python.data")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    first = b"".join(b"line %06d of the first half\n" % i for i in range(2000))
    os.write(fd, first)
    offset = os.lseek(fd, 0, os.SEEK_CUR)
    ino = os.fstat(fd).st_ino

    ready_pid = os.getpid()
    say(f"READY {ready_pid}")
    start = time.monotonic()
    while not os.path.exists(trigger):
        if time.monotonic() - start > TRIGGER_TIMEOUT:
            say(f"FAIL wl_python-protocol: trigger {trigger} did not appear")
            return 2
        time.sleep(0.005)

    if inject:
        table[4242] += 1

    failed = 0
    total = 0

    def check(what, problem):
        nonlocal failed, total
        total += 1
        if problem:
            failed += 1
            say(f"FAIL {what}: {problem}")
        else:
            say(f"ok {what}")

    bad = [i for i in range(ENTRIES) if table.get(i) != value(i)]
    check("dict", f"{len(bad)} wrong entries, first {bad[:3]}" if bad or len(table) != ENTRIES
          else None)
    bad_names = [k for k, v in names.items() if k != f"key-{v}"]
    check("str-dict", f"{len(bad_names)} wrong" if bad_names or len(names) != ENTRIES // 10 else None)

    now = os.lseek(fd, 0, os.SEEK_CUR)
    check("file-offset", None if now == offset else f"offset {now}, want {offset}")
    st = os.fstat(fd)
    check("file-identity", None if st.st_ino == ino and st.st_size == len(first)
          else f"inode {st.st_ino} size {st.st_size}, want {ino} {len(first)}")
    second = b"".join(b"line %06d of the second half\n" % i for i in range(2000))
    os.write(fd, second)
    with open(path, "rb") as f:
        content = f.read()
    check("file-content", None if content == first + second
          else f"{len(content)} bytes, want {len(first) + len(second)}")
    os.close(fd)

    # os.getpid() asks the kernel every time: a restore must keep the pid.
    check("same-pid", None if os.getpid() == ready_pid else f"getpid() {os.getpid()}, READY said {ready_pid}")

    if failed == 0 and total > 0:
        say("PASS wl_python")
        return 0
    say(f"FAILED wl_python: {failed} of {total} checks")
    return 1


if __name__ == "__main__":
    sys.exit(main())
