"""`SOAK_FLEET=1 scripts/soak`: the fleet (scripts/fleet.py: FLEET_CONNS connections across
FLEET_WORKERS workers) held for SOAK_SECONDS under random churn, then the accounts.

    SOAK_FLEET=1 scripts/soak                                       # 10 minutes, 20,000 connections
    SOAK_FLEET=1 SOAK_SECONDS=60 FLEET_CONNS=3000 scripts/soak      # a smoke run

The churn: each load generator closes a random connection and opens one in its place
FLEET_CHURN times a second (10), echoing on another; and at random (exponential gaps, mean
FLEET_CANCEL_EVERY s, 60) a whole session is cancelled with `portcullis sessions cancel` while
its connections are open: the generators leave them alone first (`pause`), the CLI must exit,
a new CLI starts in its slot (its session placed on the worker that lost one), and the
generators check that every connection of the old session was cut and open as many through
the new one (`retarget`).

Samples: every process's RSS and descriptors idle before the first connection, under load at
the start (after FLEET_WARMUP s, 30), the middle and the end, and idle after every connection
closed. A load sample pauses the churn, waits for the daemons to go quiet, samples, and then
checks that the load is the same: every connection held echoes (`check`). The accounts, each of which fails the run:
  - errors: none in the generators (opens, echoes, closes), no connection survives its
    session's cancel, every cancelled CLI exits within 30 s;
  - memory: at the same load, the end within 10 % of the middle for the controller, every
    worker, and every CLI slot (a slot whose session was cancelled between runs a new CLI
    at the end: compared too, and labelled "restarted between");
  - descriptors: every process idle after within 8 of its idle baseline (a restarted CLI:
    of its own start);
  - audit: `audit verify` passes, every connection_opened has a connection_closed, and there
    are exactly as many connection_opened as connections the clients opened (each echoed).
"""

import os
import random
import shutil
import sys
import tempfile
import time

import fleet

SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
CHURN = int(os.environ.get("FLEET_CHURN", "10"))
CANCEL_EVERY = float(os.environ.get("FLEET_CANCEL_EVERY", "60"))
WARMUP = int(os.environ.get("FLEET_WARMUP", str(min(30, SECONDS // 6))))
# The processes whose memory must be flat (the product's), by name prefix.
FLAT = ("controller", "worker ", "CLI ")


def log(msg):
    print(f"[soak] {msg}", file=sys.stderr, flush=True)


class FleetSoak:
    def __init__(self, work):
        self.fleet = fleet.Fleet(work)
        self.rng = random.Random(int(os.environ.get("FLEET_SEED", "27")))
        self.cancels = []
        self.samples = {}
        self.held = {}

    def load_sample(self, label):
        """Churn paused, the daemons quiet: every process's RSS and descriptors, and the
        connections held."""
        f = self.fleet
        fleet.ask_all(f.gens, "churn 0")
        f.quiet()
        self.samples[label] = f.sample()
        checks = fleet.ask_all(f.gens, "check")
        self.held[label] = sum(a["ok"] for a in checks)
        log(f"{label}: {self.held[label]} connections held; "
            f"workers {[self.samples[label][f'worker {i + 1}']['rss'] for i in range(fleet.WORKERS)]} KiB, "
            f"CLIs {[self.samples[label][f'CLI {c.slot}']['rss'] for c in f.clis]} KiB, "
            f"controller {self.samples[label]['controller']['rss']} KiB")
        fleet.ask_all(f.gens, f"churn {CHURN}")

    def cancel_one(self):
        """Cancels a random slot's session with its connections open, restarts the slot."""
        f = self.fleet
        cli = self.rng.choice(f.clis)
        old, old_session, old_worker = cli.addr, cli.session, cli.worker
        t0 = time.perf_counter()
        held = sum(a["held"] for a in fleet.ask_all(f.gens, f"pause {old}"))
        exited = cli.cancel()
        f.place(cli)
        answers = fleet.ask_all(f.gens, f"retarget {old} {cli.addr}")
        row = {"slot": cli.slot, "session": old_session, "held": held, "exited": exited,
               "cut": sum(a["cut"] for a in answers), "survived": sum(a["survived"] for a in answers),
               "reopened": sum(a["opened"] for a in answers), "errors": sum(a["errors"] for a in answers),
               "from worker": old_worker, "to worker": cli.worker, "seconds": time.perf_counter() - t0}
        self.cancels.append(row)
        log(f"cancelled CLI {cli.slot}'s session {old_session}: {row}")

    def run(self):
        f = self.fleet
        f.quiet()
        self.samples["idle before"] = f.sample()
        opened, errors, secs = f.open_all()
        log(f"opened {opened} (errors {errors}) in {secs:.1f} s; churn {CHURN}/s per generator, a cancel every "
            f"{CANCEL_EVERY:.0f} s on average, for {SECONDS} s")
        self.open_errors = errors
        fleet.ask_all(f.gens, f"churn {CHURN}")
        t0 = time.time()
        next_cancel = t0 + self.rng.expovariate(1 / CANCEL_EVERY)
        for label, at in (("start (load)", WARMUP), ("middle (load)", SECONDS / 2), ("end (load)", SECONDS)):
            while next_cancel < t0 + at:
                time.sleep(max(0.0, next_cancel - time.time()))
                self.cancel_one()
                next_cancel = time.time() + self.rng.expovariate(1 / CANCEL_EVERY)
            time.sleep(max(0.0, t0 + at - time.time()))
            self.load_sample(label)
        fleet.ask_all(f.gens, "churn 0")
        self.closes = fleet.ask_all(f.gens, "close")
        f.quiet()
        self.samples["idle after"] = f.sample()
        self.totals = f.totals()
        self.lingering = f.stop_clis()
        f.quiet()

    def accounts(self):
        f, failures = self.fleet, []
        t = {k: sum(x[k] for x in self.totals) for k in ("opened", "closed", "cut", "survived", "echoes", "errors")}
        if t["errors"]:
            said = [s for x in self.totals for s in x["said"]]
            failures.append(f"the load generators counted {t['errors']} errors, e.g. {said[:3]}")
        if t["survived"]:
            failures.append(f"{t['survived']} connections still echoed after their session was cancelled")
        stuck = [c for c in self.cancels if not c["exited"]]
        if stuck:
            failures.append(f"{len(stuck)} CLIs still ran 30 s after their session was cancelled")
        if self.lingering:
            failures.append(f"{self.lingering} CLIs still ran 30 s after Ctrl-C at the end")
        if t["opened"] != t["closed"] + t["cut"]:
            failures.append(f"the generators opened {t['opened']} but closed {t['closed']} and saw {t['cut']} cut")
        mid, end = self.samples["middle (load)"], self.samples["end (load)"]
        if self.held["middle (load)"] != self.held["end (load)"]:
            failures.append(f"not the same load: {self.held['middle (load)']} connections in the middle, "
                            f"{self.held['end (load)']} at the end")
        for k in mid:
            # A CLI slot restarted between (its session cancelled) still carries the same
            # load: compared too, and labelled so.
            if not k.startswith(FLAT):
                continue
            restarted = " (restarted between)" if mid[k]["pid"] != end[k]["pid"] else ""
            if abs(end[k]["rss"] - mid[k]["rss"]) > 0.1 * mid[k]["rss"]:
                failures.append(f"{k}{restarted}: RSS at the end {end[k]['rss']} KiB is not within 10 % of the "
                                f"middle's {mid[k]['rss']} KiB")
        f.descriptor_accounts(self.samples["idle before"], self.samples["idle after"], failures)
        kinds = f.audit_accounts(t["opened"], failures)
        return t, kinds, failures

    def report(self, t, kinds, failures):
        s = self.samples
        out = [f"\n## Fleet soak: {SECONDS} s, {fleet.CONNS} connections, {fleet.WORKERS} workers, "
               f"{fleet.CLIS} CLIs\n",
               f"Churn {CHURN}/s per load generator ({fleet.GENS}), a session cancelled every {CANCEL_EVERY:.0f} s on "
               f"average ({len(self.cancels)} in all), the controller on SQLite; hard descriptor limit "
               f"{self.fleet.hard}. Connections held at the load samples: "
               f"{', '.join(f'{k} {v}' for k, v in self.held.items())}.\n",
               "| process | RSS start KiB | RSS middle KiB | RSS end KiB | end/middle | fds idle before | "
               "fds start | fds middle | fds end | fds idle after |",
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for k in s["idle before"]:
            row = [s[w][k] for w in ("start (load)", "middle (load)", "end (load)")]
            same = s["middle (load)"][k]["pid"] == s["end (load)"][k]["pid"]
            ratio = f"{row[2]['rss'] / row[1]['rss']:.3f}" + ("" if same else " (restarted between)")
            base = s["idle after"][k].get("fds_base", s["idle before"][k]["fds"])
            out.append(f"| {k} | {row[0]['rss']} | {row[1]['rss']} | {row[2]['rss']} | {ratio} | {base} | "
                       f"{row[0]['fds']} | {row[1]['fds']} | {row[2]['fds']} | {s['idle after'][k]['fds']} |")
        out.append("\n(fds idle before: a CLI restarted since counts from its own start.)\n")
        out.append("| count | n |\n|---|---:|")
        rows = [("connections the clients opened (each echoed)", t["opened"]),
                ("closed by the clients (half-close, EOF read)", t["closed"]),
                ("cut by a session's cancel", t["cut"]), ("survived a cancel", t["survived"]),
                ("echoes checked on held connections", t["echoes"]), ("errors", t["errors"]),
                ("errors while opening the first connections", self.open_errors),
                ("sessions cancelled with connections open", len(self.cancels)),
                ("placement retries", self.fleet.placement_retries)]
        rows += [(f"audit events {k}", kinds.get(k, 0)) for k in
                 ("session_authorized", "session_terminated", "connection_opened", "connection_closed",
                  "connection_refused", "connections closed twice (a lost-close, then the real one)")]
        rows.append(("audit events in all", sum(v for k, v in kinds.items() if k and k.islower() and " " not in k)))
        out += [f"| {k} | {v} |" for k, v in rows]
        if self.cancels:
            out.append("\n| cancel | CLI | held | cut | survived | reopened | errors | worker before → after | s |\n"
                       "|---:|---:|---:|---:|---:|---:|---:|---|---:|")
            for i, c in enumerate(self.cancels, 1):
                out.append(f"| {i} | {c['slot']} | {c['held']} | {c['cut']} | {c['survived']} | {c['reopened']} | "
                           f"{c['errors']} | {c['from worker']} → {c['to worker']} | {c['seconds']:.1f} |")
        if failures:
            out.append("\nFAILED:\n" + "\n".join(f"- {f}" for f in failures))
        else:
            out.append("\nAll accounts hold.")
        return out


def main(bench):
    fleet.attach(bench)
    bench.build()
    work = tempfile.mkdtemp(prefix="portcullis-fleet-soak-")
    try:
        soak = FleetSoak(work)
        soak.run()
        t, kinds, failures = soak.accounts()
        print("\n".join(soak.report(t, kinds, failures)))
        if failures:
            sys.exit(1)
    finally:
        bench.stop_all()
        shutil.rmtree(work, ignore_errors=True)
