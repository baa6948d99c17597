#!/usr/bin/env python3
"""Top functions of the Portcullis processes (the CLI and the worker) in a system-wide
`perf record -a -g -e cpu-clock` taken while scripts/bench ran, from
`perf script -F event,pid,comm,ip,sym,dso` on stdin (cpu-clock samples only are counted).
A process is Portcullis if any of its samples runs in a binary whose path ends with
`$BINARY` (default `/portcullis`; with BENCH_BASELINE, `target/release/portcullis` is HEAD
and `bench-baseline/bin/<commit>/portcullis` the baseline).
Prints a markdown table of self time by function, grouped: TLS cipher, kernel TCP/syscalls,
memory copies, allocation, runtime, other; and writes folded stacks for a flame graph
(inferno-flamegraph / flamegraph.pl) to the path given as the first argument, if any."""
import collections
import os
import re
import sys

BINARY = os.environ.get("BINARY", "/portcullis")

samples = []  # (pid, frames leaf-first as (sym, dso))
pid = None
frames = []
for line in sys.stdin:
    if not line.strip():
        if pid is not None:
            samples.append((pid, frames))
        pid, frames = None, []
        continue
    if not line.startswith(("\t", " ")):
        head = re.match(r"(.*?)\s+(\d+)\s*(\S+:)?", line)
        pid, frames = head.group(2), []
        if head.group(3) and not head.group(3).startswith("cpu-clock"):
            pid = None  # another event (syscalls): not a time sample
        continue
    m = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)$", line.rstrip())
    if m:
        frames.append((m.group(1), m.group(2)))
if pid is not None:
    samples.append((pid, frames))

ours = {p for p, fr in samples if any(d.endswith(BINARY) for _, d in fr)}
mine = [[(sym, dso.rsplit("/", 1)[-1]) for sym, dso in fr] for p, fr in samples if p in ours]


def group(sym, dso):
    s = sym.lower()
    if "aes" in s or "gcm" in s or "chacha" in s or "poly1305" in s or "ghash" in s:
        return "TLS cipher (ring AES-GCM)"
    if "memcpy" in s or "memmove" in s or "copy_user" in s or "copy_to_iter" in s or "copy_from_iter" in s or "rep_movs" in s:
        return "memory copies"
    if "malloc" in s or "free" in s or "realloc" in s or "alloc" in s and dso != "[kernel.kallsyms]":
        return "allocation"
    if dso == "[kernel.kallsyms]":
        return "kernel (TCP, syscalls, scheduler)"
    if "tokio" in s or "mio" in s or "epoll" in s:
        return "runtime (tokio, epoll)"
    if "rustls" in s:
        return "rustls (records, buffers)"
    return "other"


total = len(mine) or 1
by_group = collections.Counter()
by_sym = collections.Counter()
for fr in mine:
    if not fr:
        continue
    sym, dso = fr[0]
    by_group[group(sym, dso)] += 1
    by_sym[(sym[:80], dso)] += 1
print(f"{len(mine)} samples in {len(ours)} Portcullis processes\n")
print("| where (self time) | share |\n|---|---:|")
for g, n in by_group.most_common():
    print(f"| {g} | {n / total * 100:.1f} % |")
print("\n| function | dso | self |\n|---|---|---:|")
for (sym, dso), n in by_sym.most_common(25):
    print(f"| `{sym}` | {dso} | {n / total * 100:.1f} % |")
if len(sys.argv) > 1:
    folded = collections.Counter(";".join(s for s, _ in reversed(fr)) for fr in mine if fr)
    with open(sys.argv[1], "w") as f:
        for stack, n in folded.items():
            f.write(f"{stack} {n}\n")
