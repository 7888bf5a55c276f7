#!/usr/bin/env python3
"""diskpeak.py DIR -- COMMAND...: run COMMAND and report the peak of the
space it holds: the files in DIR plus every file the process has open
(deleted temporary files included, which a directory listing misses),
counted once per inode by allocated blocks, sampled every 0.1 s. Prints one
JSON line to stderr: peak_bytes, start_bytes (DIR before), seconds, exit."""
import json, os, subprocess, sys, time

def held(dirpath, pid):
    seen = {}
    for name in os.listdir(dirpath):
        try:
            st = os.stat(os.path.join(dirpath, name))
        except OSError:
            continue
        seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        fds = []
    for fd in fds:
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if st.st_mode & 0o170000 == 0o100000:  # regular files only
            seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values())

def main():
    dirpath, cmd = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    start = held(dirpath, -1)
    t0 = time.time()
    p = subprocess.Popen(cmd)
    peak = start
    while p.poll() is None:
        peak = max(peak, held(dirpath, p.pid))
        time.sleep(0.1)
    print(json.dumps({"peak_bytes": peak, "start_bytes": start, "seconds": round(time.time() - t0, 1), "exit": p.returncode}), file=sys.stderr)

main()
