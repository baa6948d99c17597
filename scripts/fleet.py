"""The fleet (issue 27, "scale beyond one process's file limit"): FLEET_CONNS connections
(20,000) held at once across FLEET_WORKERS worker processes (3) on one host, for
`BENCH_ONLY=fleet scripts/bench` (the table) and `SOAK_FLEET=1 scripts/soak` (the soak).

Not run on its own: scripts/bench and scripts/soak load it and hand it their `bench` module
(`attach`). The topology, every process a separate one:

- one controller, SQLite store, audit on (scripts/bench's Cluster);
- FLEET_WORKERS workers, each with its own directory, name and ports, not pinned;
- FLEET_CLIS (= FLEET_WORKERS) `portcullis connect echoN --listen-port 0` processes, one
  session each; the controller gives a new session to the worker with the fewest live
  sessions (controller/src/sessions/plan/worker.rs), so N sessions land one a worker: checked
  through `sessions list --live --json` (each session's worker_id), and a session that lands
  on a worker already carrying its share is cancelled and asked again;
- FLEET_ECHOES (3) `portcullis-bench echo` processes, targets echo1..echoN round them;
- FLEET_GENS (4) `portcullis-bench fleet` load generators (bench/src/fleet.rs), each binding
  FLEET_SOURCES (3) source addresses of its own from 127.0.0.2 up, each holding its share of
  every CLI's connections (one descriptor each).

Every process inherits the caller's RLIMIT_NOFILE (raised to the hard limit); the table shows
each process's limit as read from /proc.
"""

import json
import math
import os
import random
import signal
import subprocess
import time

bench = None  # scripts/bench as a module: attach() sets it

CONNS = int(os.environ.get("FLEET_CONNS", "20000"))
WORKERS = int(os.environ.get("FLEET_WORKERS", "3"))
CLIS = int(os.environ.get("FLEET_CLIS", str(WORKERS)))
ECHOES = int(os.environ.get("FLEET_ECHOES", "3"))
GENS = int(os.environ.get("FLEET_GENS", "4"))
SOURCES = int(os.environ.get("FLEET_SOURCES", "3"))
# Placement retries when a new session lands on a worker that already carries its share.
PLACEMENT_TRIES = 5


def attach(module):
    """Hands this module scripts/bench's helpers (Cluster, start, rss_kib, wait_quiet...)."""
    global bench
    bench = module


def log(msg):
    print(f"[fleet] {msg}", flush=True, file=__import__("sys").stderr)


def raise_nofile():
    """RLIMIT_NOFILE to the hard limit for this process and every process it starts."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def nofile(pid):
    """The soft descriptor limit of a process (/proc/PID/limits)."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


class Gen:
    """One `portcullis-bench fleet` load generator, driven a command a line."""

    def __init__(self, index, sources, logdir):
        self.index, self.sources = index, sources
        self.proc, _ = bench.start([bench.TOOL, "fleet", ",".join(sources)], stdin=subprocess.PIPE,
                                   errors_to=os.path.join(logdir, f"gen-{index}.log"))

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def answer(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"load generator {self.index} exited (exit {self.proc.poll()}); see its log")
        return json.loads(line)

    def ask(self, line):
        self.send(line)
        return self.answer()


def ask_all(gens, line):
    """The same command to every generator at once; their answers."""
    for g in gens:
        g.send(line)
    return [g.answer() for g in gens]


class Cli:
    """One CLI slot: `connect TARGET --listen-port 0`, restarted in place after a cancel."""

    def __init__(self, fleet, slot, target):
        self.fleet, self.slot, self.target = fleet, slot, target
        self.incarnation = 0
        self.proc = self.port = self.session = None

    def start(self):
        self.incarnation += 1
        f = self.fleet
        self.proc, ready = bench.start([f.c.bin, "connect", self.target, "--listen-port", "0", "--json"],
                                       env=f.c.env,
                                       errors_to=os.path.join(f.c.dir, f"cli-{self.slot}.{self.incarnation}.log"))
        self.port, self.session = ready["port"], ready["session_id"]
        self.baseline = {"rss": bench.rss_kib(self.proc.pid), "fds": fds(self.proc.pid)}

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def cancel(self, timeout=30):
        """`sessions cancel` its session; True when the CLI exited within `timeout` s."""
        subprocess.run([self.fleet.c.bin, "sessions", "cancel", self.session], env=self.fleet.c.env,
                       capture_output=True, timeout=60)
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False


class Fleet:
    def __init__(self, work):
        self.hard = raise_nofile()
        self.c = bench.Cluster(work, name="fleet")
        for _ in range(WORKERS):
            self.c.start_worker(cpu=None)
        self.echoes = []
        for _ in range(ECHOES):
            p, ready = bench.start([bench.TOOL, "echo", "127.0.0.1:0"])
            self.echoes.append((p, ready["ready"]))
        self.clis = []
        for i in range(CLIS):
            target = f"echo{i + 1}"
            self.c.target(target, self.echoes[i % ECHOES][1])
            self.clis.append(Cli(self, i + 1, target))
        self.placement_retries = 0
        for cli in self.clis:
            self.place(cli)
        sources = [f"127.0.0.{2 + i}" for i in range(GENS * SOURCES)]
        if GENS * SOURCES > 253:
            raise SystemExit("FLEET_GENS × FLEET_SOURCES must stay within 127.0.0.2..127.0.0.254")
        self.gens = [Gen(g + 1, sources[g * SOURCES:(g + 1) * SOURCES], self.c.dir) for g in range(GENS)]

    # Placement.

    def sessions_by_worker(self):
        """{worker index (1-based): [session ids]} of the live sessions."""
        out = subprocess.run([self.c.bin, "sessions", "list", "--live", "--json", "--limit", "1000"],
                             env=self.c.env, capture_output=True, check=True).stdout
        by = {}
        for s in json.loads(out):
            w = self.c.worker_ids.index(s["worker_id"]) + 1 if s["worker_id"] in self.c.worker_ids else s["worker_id"]
            by.setdefault(w, []).append(s["id"])
        return by

    def worker_of(self, cli):
        for w, ids in self.sessions_by_worker().items():
            if cli.session in ids:
                return w
        return None

    def place(self, cli):
        """Starts the slot's CLI so that its session lands on a worker carrying fewer than its
        share (ceil(CLIS / WORKERS)) of sessions; a session that lands elsewhere is cancelled
        and asked for again (counted)."""
        share = math.ceil(CLIS / WORKERS)
        for _ in range(PLACEMENT_TRIES):
            cli.start()
            by = self.sessions_by_worker()
            w = next((w for w, ids in by.items() if cli.session in ids), None)
            if w is not None and len(by[w]) <= share:
                cli.worker = w
                return
            self.placement_retries += 1
            log(f"CLI {cli.slot}'s session landed on worker {w}, which carries {len(by.get(w, []))}; asking again")
            cli.cancel()
        raise SystemExit(f"CLI {cli.slot}: no session landed on a worker with room in {PLACEMENT_TRIES} tries")

    def spread(self):
        """`worker N: CLI a, CLI b` from the controller's view (sessions list)."""
        by = self.sessions_by_worker()
        return {w: [c.slot for c in self.clis if c.session in ids] for w, ids in sorted(by.items(), key=str)}

    # Processes and samples.

    def processes(self):
        """{name: pid} of every process of the fleet, the CLIs as they are now."""
        procs = {"controller": self.c.proc.pid}
        procs.update({f"worker {i + 1}": w.pid for i, w in enumerate(self.c.workers)})
        procs.update({f"CLI {c.slot}": c.proc.pid for c in self.clis})
        procs.update({f"echo {i + 1}": p.pid for i, (p, _) in enumerate(self.echoes)})
        procs.update({f"load generator {g.index}": g.proc.pid for g in self.gens})
        return procs

    def daemons(self):
        """The controller, the workers and the CLIs still running."""
        procs = [self.c.proc, *self.c.workers, *(c.proc for c in self.clis)]
        return [p.pid for p in procs if p.poll() is None]

    def sample(self):
        """{name: {"pid", "rss", "fds"}} of every process now."""
        return {k: {"pid": p, "rss": bench.rss_kib(p), "fds": fds(p), "limit": nofile(p)}
                for k, p in self.processes().items()}

    def quiet(self):
        return bench.wait_quiet(self.daemons())

    # Load.

    def open_all(self):
        """Opens CONNS connections: each CLI's share split among the generators, each
        generator starting at another CLI (so that no worker's handshake gate sees them all
        at once). Returns (opened, errors, seconds)."""
        per_cli = [CONNS // CLIS + (1 if i < CONNS % CLIS else 0) for i in range(CLIS)]
        plan = {g.index: [] for g in self.gens}
        for i, n in enumerate(per_cli):
            for k, g in enumerate(self.gens):
                plan[g.index].append((i, n // GENS + (1 if k < n % GENS else 0)))
        t0 = time.perf_counter()
        for g in self.gens:
            todo = plan[g.index]
            shift = (g.index - 1) % len(todo)
            plan[g.index] = todo[shift:] + todo[:shift]
            for i, n in plan[g.index]:
                g.send(f"open {self.clis[i].addr} {n}")
        opened = errors = 0
        self.held = [0] * CLIS
        self.gen_held = {}
        for g in self.gens:
            for i, n in plan[g.index]:
                a = g.answer()
                opened += a["opened"]
                errors += a["errors"]
                self.held[i] += a["opened"]
            self.gen_held[f"load generator {g.index}"] = a["held"]
        return opened, errors, time.perf_counter() - t0

    def sources_seen(self):
        """{source address: connections} of the established connections to the CLIs' ports
        (/proc/net/tcp): where the clients really came from."""
        ports = {c.port for c in self.clis}
        seen = {}
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                local, remote, state = line.split()[1:4]
                ip, port = local.split(":")
                if state != "01" or ip != "0100007F" or int(port, 16) not in ports:
                    continue
                ip = bytes.fromhex(remote.split(":")[0])[::-1]
                addr = ".".join(map(str, ip))
                seen[addr] = seen.get(addr, 0) + 1
        return seen

    def totals(self):
        return ask_all(self.gens, "totals")

    def stop_clis(self):
        """Ctrl-C to every CLI; the ones still running 30 s later (killed)."""
        lingering = 0
        for c in self.clis:
            c.proc.send_signal(signal.SIGINT)
        for c in self.clis:
            try:
                c.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                lingering += 1
                c.proc.kill()
                c.proc.wait()
        return lingering

    def audit_accounts(self, client_opened, failures):
        """`audit verify`, and the connection events against what the clients opened; appends
        what does not hold to failures; returns the event counts by kind."""
        env = self.c.env
        verify = subprocess.run([self.c.bin, "audit", "verify"], env=env, capture_output=True)
        if verify.returncode != 0:
            failures.append(f"audit verify failed: {verify.stdout.decode()} {verify.stderr.decode()}")
        export = os.path.join(self.c.dir, "audit.jsonl")
        with open(export, "wb") as f:
            subprocess.run([self.c.bin, "audit", "export"], env=env, stdout=f, check=True)
        kinds, opened, closes = {}, set(), {}
        with open(export) as f:
            for line in f:
                event = json.loads(line)
                kind = event.get("type")
                kinds[kind] = kinds.get(kind, 0) + 1
                cid = (event.get("details") or {}).get("connection_id")
                if kind == "connection_opened" and cid:
                    opened.add(cid)
                elif kind == "connection_closed" and cid:
                    closes[cid] = closes.get(cid, 0) + 1
        never_closed = opened - closes.keys()
        if never_closed:
            failures.append(f"{len(never_closed)} connections opened in the audit log were never closed there, "
                            f"e.g. {sorted(never_closed)[:3]}")
        if len(opened) != client_opened:
            failures.append(f"the clients opened {client_opened} connections (each echoed), the audit log has "
                            f"{len(opened)} connection_opened")
        kinds["connections closed twice (a lost-close, then the real one)"] = sum(1 for n in closes.values() if n > 1)
        return kinds

    def descriptor_accounts(self, before, after, failures, slack=8):
        """Every process's descriptors idle after, against its baseline (a CLI restarted since:
        against its own start)."""
        for k, a in after.items():
            base = before[k]["fds"] if before[k]["pid"] == a["pid"] else next(
                c.baseline["fds"] for c in self.clis if f"CLI {c.slot}" == k)
            a["fds_base"] = base
            if a["fds"] > base + slack:
                failures.append(f"{k} holds {a['fds']} descriptors idle after, {base} before")


def per_connection_table(fleet, before, during, after, opened):
    """The bench's table: every process, its connections, RSS and descriptors."""
    by_worker = {}
    for i, c in enumerate(fleet.clis):
        by_worker[c.worker] = by_worker.get(c.worker, 0) + fleet.held[i]
    conns = {}
    for k in before:
        if k.startswith("worker "):
            conns[k] = by_worker.get(int(k.split()[1]), 0)
        elif k.startswith("CLI "):
            conns[k] = fleet.held[int(k.split()[1]) - 1]
        elif k.startswith("echo "):
            i = int(k.split()[1]) - 1
            conns[k] = sum(fleet.held[j] for j in range(CLIS) if j % ECHOES == i)
        elif k.startswith("load generator "):
            conns[k] = fleet.gen_held.get(k)
        else:
            conns[k] = opened
    lines = ["| process | connections | RSS before KiB | RSS idle with them KiB | per connection KiB | "
             "fds before | fds with them | fds after close | fd limit |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    sums = {}
    for k in before:
        n = conns[k]
        grown = during[k]["rss"] - before[k]["rss"]
        per = f"{grown / n:.1f}" if n else ""
        role = k.rsplit(" ", 1)[0]
        if n and role in ("worker", "CLI"):
            s = sums.setdefault(role, [0, 0])
            s[0] += grown
            s[1] += n
        lines.append(f"| {k} | {n if n is not None else ''} | {before[k]['rss']} | {during[k]['rss']} | {per} | "
                     f"{before[k]['fds']} | {during[k]['fds']} | {after[k]['fds']} | {before[k]['limit']} |")
    per_side = {role: grown / n for role, (grown, n) in sums.items() if n}
    return lines, per_side


def bench_part(work):
    """`BENCH_ONLY=fleet scripts/bench`: open FLEET_CONNS, measure them idle, every one
    echoes, close; the table, and the reasons it failed (exit 1 when any)."""
    failures = []
    fleet = Fleet(work)
    log(f"{CONNS} connections: {WORKERS} workers, {CLIS} CLIs, {ECHOES} echo processes, {GENS} load generators "
        f"on {GENS * SOURCES} source addresses; hard descriptor limit {fleet.hard}")
    fleet.quiet()
    before = fleet.sample()
    opened, errors, secs = fleet.open_all()
    log(f"opened {opened} (errors {errors}) in {secs:.1f} s")
    settle = fleet.quiet()
    during = fleet.sample()
    spread = fleet.spread()
    seen = fleet.sources_seen()
    placed = ", ".join(f"worker {w}: CLI {', '.join(map(str, c))}" for w, c in spread.items())
    checks = ask_all(fleet.gens, "check")
    checked, ok = sum(a["checked"] for a in checks), sum(a["ok"] for a in checks)
    closes = ask_all(fleet.gens, "close")
    closed, close_errors = sum(a["closed"] for a in closes), sum(a["errors"] for a in closes)
    fleet.quiet()
    after = fleet.sample()
    totals = fleet.totals()
    lingering = fleet.stop_clis()
    fleet.quiet()
    if errors or opened != CONNS:
        failures.append(f"opened {opened} of {CONNS} connections, {errors} errors")
    if ok != opened or checked != opened:
        failures.append(f"after the idle measurement only {ok} of {opened} connections echoed")
    if close_errors or closed != ok:
        failures.append(f"closed {closed} of {ok} ({close_errors} errors)")
    if lingering:
        failures.append(f"{lingering} CLIs still ran 30 s after Ctrl-C")
    if any(len(v) != 1 for v in spread.values()) and CLIS == WORKERS:
        failures.append(f"the sessions did not land one a worker: {spread}")
    fleet.descriptor_accounts(before, after, failures)
    kinds = fleet.audit_accounts(sum(t["opened"] for t in totals), failures)
    said = [s for t in totals for s in t["said"]]
    rows, per_side = per_connection_table(fleet, before, during, after, opened)
    out = [f"\n## Fleet: {CONNS} connections across {WORKERS} workers\n",
           f"One controller (SQLite, audit on), {WORKERS} workers, {CLIS} `connect echoN --listen-port 0` CLIs (one "
           f"session each), {ECHOES} echo processes, {GENS} load generators binding {GENS * SOURCES} source "
           f"addresses (127.0.0.2..127.0.0.{1 + GENS * SOURCES}); hard descriptor limit {fleet.hard}.\n",
           f"Opened {opened} of {CONNS} (errors {errors}) in {secs:.1f} s, the daemons quiet {settle:.1f} s later; "
           f"then {ok} of {checked} echoed; {closed} closed (errors {close_errors}). Sessions by worker (from "
           f"`sessions list --json`): {placed}"
           f"{f'; placement retries {fleet.placement_retries}' if fleet.placement_retries else ''}.\n",
           f"The CLIs' ports saw {sum(seen.values())} established connections from {len(seen)} source addresses "
           f"({min(seen.values(), default=0)}..{max(seen.values(), default=0)} each).\n",
           "RSS from a fresh fleet before the first connection to every connection open and idle (after the "
           "daemons went quiet); descriptors before, with them, and after they closed:\n", *rows, ""]
    sides = [f"{role} {v:.1f} KiB" for role, v in per_side.items()]
    if per_side:
        out.append(f"Per idle connection: {', '.join(sides)}; worker + CLI {sum(per_side.values()):.1f} KiB.\n")
    out.append(f"Audit: {kinds.get('connection_opened', 0)} connection_opened, {kinds.get('connection_closed', 0)} "
               f"connection_closed, `audit verify` {'failed' if any('verify' in f for f in failures) else 'passed'}.")
    if said:
        out.append(f"\nFirst errors the load generators saw: {said[:5]}")
    return out, failures
