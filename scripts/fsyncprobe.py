#!/usr/bin/env python3
"""fsyncprobe.py DIR [--seconds S] [--delete-mib N] [--create-mib N] [--stall-ms M]

Measures what a ledger's commits wait for on the filesystem that holds DIR:
an 8 KiB write and fdatasync every 2 ms (a WAL commit's pattern) into a
file that was allocated and synced first, for S seconds. It prints the
latency percentiles and every stall over M ms with its UTC time.

--delete-mib N writes and syncs a file of N MiB in DIR first and deletes it
a third of the way into the run: on a filesystem mounted with `discard`,
the deletion sends the freed blocks to the device as discards, and the
probe shows whether the device stalls other writers meanwhile.
--create-mib N instead writes (and fdatasyncs) a new N MiB file then,
as PostgreSQL does when it creates a WAL segment.

See docs/operations.md, "The filesystem under the ledger".
"""
import argparse
import os
import threading
import time


def stamp(t):
    return time.strftime("%H:%M:%S", time.gmtime(t)) + ".%03d" % int((t % 1) * 1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--delete-mib", type=int, default=0)
    ap.add_argument("--create-mib", type=int, default=0)
    ap.add_argument("--stall-ms", type=float, default=10)
    a = ap.parse_args()

    probe = os.path.join(a.dir, "fsyncprobe.dat")
    other = os.path.join(a.dir, "fsyncprobe.other")
    size = 16 << 20
    fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"\0" * size)
    os.fsync(fd)
    if a.delete_mib:
        with open(other, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(a.delete_mib):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())

    event = []

    def act():
        event.append(time.time())
        if a.delete_mib:
            os.unlink(other)
        elif a.create_mib:
            g = os.open(other, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            for _ in range(a.create_mib * 128):
                os.write(g, b"\0" * 8192)
            os.fdatasync(g)
            os.close(g)
            os.unlink(other)  # small enough not to matter at the end of the run
        event.append(time.time())

    if a.delete_mib or a.create_mib:
        threading.Timer(a.seconds / 3, act).start()

    buf = os.urandom(8192)
    lat, stalls, off = [], [], 0
    end = time.time() + a.seconds
    while time.time() < end:
        t0 = time.perf_counter()
        os.pwrite(fd, buf, off)
        os.fdatasync(fd)
        d = (time.perf_counter() - t0) * 1000
        lat.append(d)
        if d > a.stall_ms:
            stalls.append((stamp(time.time()), round(d, 1)))
        off = (off + 8192) % size
        time.sleep(0.002)
    os.close(fd)
    os.unlink(probe)
    lat.sort()
    n = len(lat)
    print("%d commits: p50 %.2f ms, p99 %.2f, p99.9 %.2f, max %.1f; stalls over %g ms: %d %s"
          % (n, lat[n // 2], lat[int(n * 0.99)], lat[int(n * 0.999)], lat[-1], a.stall_ms, len(stalls), stalls[:10]))
    if event:
        what = "deleted %d MiB" % a.delete_mib if a.delete_mib else "created %d MiB" % a.create_mib
        print("%s at %s (took %.0f ms)" % (what, stamp(event[0]), (event[1] - event[0]) * 1000))


if __name__ == "__main__":
    main()
