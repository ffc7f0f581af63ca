#!/usr/bin/env python3
"""Summarize py-spy raw (collapsed) profiles: self and inclusive share per function.

    .venv/bin/python bench/terminal_bench.py --pyspy-dir var/pyspy ...   # samples with --gil
    python3 bench/pyspy_summary.py var/pyspy/jsonl-*.txt
"""
import sys, collections, re
self_c = collections.Counter(); incl = collections.Counter(); total = 0
for path in sys.argv[1:]:
    for line in open(path):
        line=line.rstrip()
        if not line: continue
        stack, _, n = line.rpartition(" ")
        n = int(n); total += n
        frames = stack.split(";")
        # drop thread name frame? py-spy raw: first frame is "process..."/thread? keep
        self_c[frames[-1]] += n
        seen=set()
        for f in frames:
            key = re.sub(r":\d+\)$", ")", f)  # drop line numbers for inclusive
            if key in seen: continue
            seen.add(key); incl[key]+=n
print("total samples", total)
print("--- self (top 40)")
for f,n in self_c.most_common(40): print(f"{100*n/total:5.1f}% {f}")
print("--- inclusive (top 70)")
for f,n in incl.most_common(70): print(f"{100*n/total:5.1f}% {f}")
