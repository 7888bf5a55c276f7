#!/usr/bin/env python3
"""WAL frames per device, by b-tree, of a SQLite ledger during a bench run.

Usage: scripts/walframes.py PREFIX [LEDGER]

PREFIX.c1, PREFIX.c2, ... are copies of a ledger (copy.db, copy.db-wal) taken
during one run, in order (scripts/walrun.sh takes them). Of the pairs of
copies in one WAL generation (same salt: no checkpoint restarted the WAL
between them), the one with the most devices bound in between is used: the frames the later WAL has beyond the earlier are mapped to b-trees
with the dbstat table and divided by the devices bound between the copies.
Each copy is read from a scratch copy, since opening a database with its WAL
checkpoints it. Copies that hold only the WAL and a device count
(copy.devices: scripts/walrun.sh with --prefill) are mapped with LEDGER, the
ledger as the run left it.
"""
import collections
import glob
import os
import shutil
import sqlite3
import struct
import sys
import tempfile


def frames(d):
    wal = open(os.path.join(d, 'copy.db-wal'), 'rb').read()
    psz = struct.unpack('>I', wal[8:12])[0]
    salt = wal[16:24]
    off, pages, commits = 32, [], 0
    while off + 24 + psz <= len(wal):
        pg, csize = struct.unpack('>II', wal[off:off + 8])
        if wal[off + 8:off + 16] != salt:
            break
        pages.append(pg)
        commits += csize != 0
        off += 24 + psz
    return psz, salt, pages, commits


def query(d, q):
    with tempfile.TemporaryDirectory() as tmp:
        for f in ('copy.db', 'copy.db-wal'):
            shutil.copy(os.path.join(d, f), tmp)
        return sqlite3.connect(os.path.join(tmp, 'copy.db')).execute(q).fetchall()


def main():
    copies = sorted(glob.glob(sys.argv[1] + '.c*'), key=lambda p: int(p.rsplit('.c', 1)[1]))
    info = []
    for c in copies:
        try:
            n = os.path.join(c, 'copy.devices')
            devices = int(open(n).read()) if os.path.exists(n) else query(c, 'SELECT COUNT(*) FROM devices')[0][0]
            info.append((c, frames(c), devices))
        except (OSError, ValueError, sqlite3.Error, struct.error):
            pass
    best = None
    pairs = [(x, y) for i, x in enumerate(info) for y in info[i + 1:]]
    for (a, fa, na), (b, fb, nb) in pairs:
        if fa[1] == fb[1] and nb > na and (best is None or nb - na > best[2]):
            best = ((a, fa), (b, fb), nb - na)
    if best is None:
        sys.exit('no two copies in one WAL generation with devices bound between them')
    (a, fa), (b, fb), ndev = best
    new = fb[2][len(fa[2]):]
    ncommits = fb[3] - fa[3]
    if len(sys.argv) > 2:
        names = dict(sqlite3.connect('file:' + sys.argv[2] + '?mode=ro', uri=True).execute('SELECT pageno, name FROM dbstat'))
    else:
        names = dict(query(b, 'SELECT pageno, name FROM dbstat'))
    count = collections.Counter(names.get(p, '(free)') for p in new)
    print(f'{a} -> {b}: page size {fb[0]}, {len(new)} frames, {ncommits} commits, {ndev} devices bound: '
          f'{len(new) / ndev:.1f} frames per device, {len(new) / max(ncommits, 1):.0f} per commit')
    for name, k in count.most_common():
        print(f'  {name:42s} {k:6d} {100 * k / len(new):5.1f} %  {k / ndev:5.2f}/device')


main()
