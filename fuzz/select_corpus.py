#!/usr/bin/env python3
"""Greedy feature cover under a file cap, from a libFuzzer merge control file.

usage: select_corpus.py CONTROL_FILE OUT_DIR CAP  (see minimize.sh)
Picks, until CAP files or nothing new: the file with the most not-yet-covered features per
(1 + size/4096) — small files win ties. Copies them to OUT_DIR under their sha1 names (seeds
keep their seed- names).
"""
import hashlib, os, shutil, sys
ctl, out, cap = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(ctl, errors="replace").read().splitlines()
n = int(lines[0]); files = lines[2:2 + n]
feats = {}; size = {}
for l in lines[2 + n:]:
    p = l.split()
    if not p: continue
    if p[0] == "STARTED": size[int(p[1])] = int(p[2])
    elif p[0] == "FT": feats[int(p[1])] = set(map(int, p[2:]))
covered = set(); chosen = []
allf = set().union(*feats.values()) if feats else set()
# The seeds made from the project's fixtures stay, whatever they cover.
for i, f in enumerate(files):
    if os.path.basename(f).startswith("seed-") and i in feats:
        chosen.append(i); covered |= feats.pop(i)
while len(chosen) < cap:
    best, score = None, 0.0
    for i, f in feats.items():
        new = len(f - covered)
        if not new: continue
        s = new / (1 + size.get(i, 0) / 4096)
        if s > score: best, score = i, s
    if best is None: break
    chosen.append(best); covered |= feats.pop(best)
print(f"{len(chosen)} files ({sum(os.path.basename(files[i]).startswith('seed-') for i in chosen)} seeds), {len(covered)}/{len(allf)} features, {sum(size.get(i,0) for i in chosen)} bytes")
os.makedirs(out, exist_ok=True)
for i in chosen:
    src = files[i]; data = open(src, "rb").read()
    name = os.path.basename(src)
    if not name.startswith("seed-"): name = hashlib.sha1(data).hexdigest()
    shutil.copyfile(src, os.path.join(out, name))
