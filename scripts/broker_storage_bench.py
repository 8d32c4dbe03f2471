#!/usr/bin/env python3
"""The local broker's storage engines as the log grows (BENCHMARKS.md, "Broker storage").

Run through scripts/broker-storage-bench.sh, which prepares the venv (confluent-kafka) and
finds `sipas` and `tansu`. For each storage URL: a fresh tansu on its own port and data
directory, the pipeline's topics (`sipas topics`), then at each log size (100k, 300k, 1M
messages by default):
  produce  `sipas simulate` fills the log up to that size as fast as it can (the project's
           producer: idempotent, acks=all, with the producer properties of --config);
  fetch    a bare consumer (confluent-kafka, partitions assigned, no group) reads the whole
           log from offset 0;
  paced    `sipas simulate --rate R` for a few seconds: the rate a steady producer gets
           (what `sipas bench --freshness R` and the demo's trickle need);
  fresh    the same paced producer into new, empty topics while a consumer group follows
           them (what `sipas bench --freshness` and bench-baseline.sh do beside the big log),
           then a full fetch of those topics;
with the broker's data directory size, its RSS and the machine's load beside each figure.
With --demo-load, the local stack's steady clients run meanwhile, from the topics' creation
on: the demo's trickle (`sipas simulate --rate 5`) and a consumer group following the log
as `sipas run` does (subscribed, offsets committed each second, fetch.wait.max.ms 100,
session.timeout.ms 6000 as config/local.toml); its rebalances and longest wait are reported.
A step that does not finish within its timeout is recorded as such and ends that engine's
run (later sizes would only be slower). Everything it starts is stopped.
"""
import argparse
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPICS = ("sipas.surveys", "sipas.hotline")


def log(msg):
    print(f"[storage-bench] {msg}", file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def dir_bytes(path):
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(base, name))
            except OSError:
                pass
    return total


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def scheme(url):
    return url.split(":", 1)[0]


# ---------------------------------------------------------------- the fetch worker (child process)

def worker_fetch(a):
    """Reads every partition of the topics from offset 0 until `expect` messages or the timeout."""
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
    c = Consumer({
        "bootstrap.servers": a.brokers,
        "group.id": "sipas-storage-bench",  # required by the client; nothing is committed
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        # Same read buffer as the pipeline's consumer (src/kafka/consumer.rs).
        "queued.max.messages.kbytes": 32768,
    })
    parts = []
    for topic in a.topics:
        md = c.list_topics(topic, timeout=30)
        parts += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(md.topics[topic].partitions)]
    start = time.monotonic()
    c.assign(parts)
    count, first, longest_wait, last = 0, None, 0.0, start
    deadline = start + a.timeout
    while count < a.expect and time.monotonic() < deadline:
        for msg in c.consume(num_messages=10000, timeout=0.5):
            if msg.error() is None:
                now = time.monotonic()
                if first is None:
                    first = now - start
                longest_wait = max(longest_wait, now - last)
                last = now
                count += 1
    seconds = time.monotonic() - start
    c.close()
    print(json.dumps({"messages": count, "seconds": seconds, "first_message_s": first,
                      "longest_wait_s": longest_wait, "complete": count >= a.expect}))


def worker_tail(a):
    """Follows TOPICS in a consumer group until killed; writes its counters to a.tail_file."""
    from confluent_kafka import Consumer
    c = Consumer({
        "bootstrap.servers": a.brokers,
        "group.id": "sipas-storage-bench-tail-" + a.topics[0],
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "fetch.wait.max.ms": 100,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "queued.max.messages.kbytes": 32768,
    })
    state = {"consumed": 0, "assignments": 0, "revocations": 0, "longest_wait_s": 0.0}

    def on_assign(_, parts):
        state["assignments"] += 1

    def on_revoke(_, parts):
        state["revocations"] += 1

    c.subscribe(list(a.topics), on_assign=on_assign, on_revoke=on_revoke)
    last_message, last_write = time.monotonic(), 0.0
    while True:
        msgs = c.consume(num_messages=10000, timeout=0.5)
        now = time.monotonic()
        if any(m.error() is None for m in msgs):
            state["longest_wait_s"] = round(max(state["longest_wait_s"], now - last_message), 1)
            last_message = now
            state["consumed"] += sum(1 for m in msgs if m.error() is None)
        if now - last_write > 2:
            with open(a.tail_file + ".tmp", "w") as f:
                json.dump(state, f)
            os.replace(a.tail_file + ".tmp", a.tail_file)
            last_write = now


def read_tail(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- one engine

class Broker:
    def __init__(self, a, url, data_dir):
        self.a, self.url, self.dir = a, url, data_dir
        self.proc = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        env = dict(os.environ, STORAGE_ENGINE=self.url, RUST_LOG="warn")
        listener = f"tcp://127.0.0.1:{self.a.port}"
        self.log_file = open(os.path.join(self.dir, "broker.log"), "ab")
        self.proc = subprocess.Popen(
            [self.a.tansu, "broker", "--listener-url", listener, "--advertised-listener-url", listener],
            cwd=self.dir, env=env, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not port_open(self.a.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited during start-up with {self.url}; see {self.dir}/broker.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tansu did not listen on port {self.a.port} within 60 s")
            time.sleep(0.5)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            log("tansu did not stop within 30 s; killing it")
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log_file.close()


def sipas_env(a, config=None, prefix=None):
    env = dict(os.environ, SIPAS_CONFIG=config or a.config, SIPAS__KAFKA__BROKERS=f"127.0.0.1:{a.port}",
               RUST_LOG="warn")
    if prefix:
        env.update(SIPAS__KAFKA__SURVEYS_TOPIC=f"{prefix}.surveys", SIPAS__KAFKA__HOTLINE_TOPIC=f"{prefix}.hotline",
                   SIPAS__KAFKA__DLQ_TOPIC=f"{prefix}.dlq")
    return env


def fetch_all(a, topics, expect):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", "--port", str(a.port), "--topics", *topics,
         "--expect", str(expect), "--timeout", str(a.step_timeout)],
        stdout=subprocess.PIPE, text=True, timeout=a.step_timeout + 120)
    fetch = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"error": out.returncode}
    if fetch.get("seconds"):
        fetch["events_per_s"] = round(fetch["messages"] / fetch["seconds"])
    return fetch


def fresh_probe(a, target, seed, side_log, data_dir):
    """A paced producer into new topics that a consumer group follows, then their full fetch."""
    prefix = f"sipas.fresh{target}"
    topics = [f"{prefix}.surveys", f"{prefix}.hotline"]
    env = sipas_env(a, prefix=prefix)
    code, _ = run_bounded([a.sipas, "topics"], env, 120, side_log)
    if code != 0:
        return {"error": f"sipas topics failed (exit {code})"}
    tail_file = os.path.join(data_dir, f"tail-{prefix}.json")
    with open(side_log, "ab") as out:
        tail = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--tail-worker", "--port", str(a.port),
                                 "--tail-file", tail_file, "--topics", *topics],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        count = int(a.paced_rate * a.paced_seconds)
        code, seconds = run_bounded(
            [a.sipas, "simulate", "--count", str(count), "--rate", str(a.paced_rate), "--seed", str(seed)],
            env, a.paced_seconds * 10, side_log)
        # Let the group read what was produced (bounded), then take its counters.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and ((read_tail(tail_file) or {}).get("consumed", 0) < count):
            time.sleep(1)
        follower = read_tail(tail_file)
    finally:
        os.killpg(tail.pid, signal.SIGKILL)
        tail.wait()
    return {"requested_per_s": a.paced_rate, "seconds": round(seconds, 1), "exit": code, "timed_out": code is None,
            "achieved_per_s": round(count / seconds) if code == 0 and seconds else None,
            "follower": follower, "fetch": fetch_all(a, topics, count if code == 0 else 1)}


def run_bounded(cmd, env, timeout, log_path):
    """(exit code or None when it timed out, seconds). The process group is killed at the timeout."""
    with open(log_path, "ab") as out:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        return code, time.monotonic() - start


def log_size(a):
    """Messages in TOPICS (sum of high - low watermarks), or None when the broker does not answer."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": f"127.0.0.1:{a.port}", "group.id": "sipas-storage-bench-offsets"})
    try:
        total = 0
        for topic in TOPICS:
            md = c.list_topics(topic, timeout=30)
            for p in md.topics[topic].partitions:
                low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                total += high - low
        return total
    except Exception as error:  # noqa: BLE001 - a broker that does not answer is a result here
        log(f"watermarks: {error}")
        return None
    finally:
        c.close()


def measure_engine(a, url, seed):
    name = scheme(url)
    data_dir = os.path.join(a.work_dir, name)
    if os.path.exists(data_dir):
        subprocess.run(["rm", "-rf", data_dir], check=True)
    os.makedirs(data_dir)
    side_log = os.path.join(data_dir, "clients.log")
    broker = Broker(a, url, data_dir)
    result = {"storage": url, "demo_load": a.demo_load, "steps": []}
    background = []
    tail_file = os.path.join(data_dir, "tail.json")
    try:
        broker.start()
        code, _ = run_bounded([a.sipas, "topics"], sipas_env(a), 120, side_log)
        if code != 0:
            result["error"] = f"sipas topics failed (exit {code}); see {side_log}"
            return result
        if a.demo_load:
            out = open(side_log, "ab")
            background.append(subprocess.Popen(
                [a.sipas, "simulate", "--count", "100000000", "--rate", "5", "--seed", "999"],
                env=sipas_env(a), stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
            background.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--tail-worker", "--port", str(a.port),
                 "--tail-file", tail_file, "--topics", *TOPICS], stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True))
        produced = 0
        for target in a.sizes:
            step = {"log_messages_target": target, "load_before": loadavg()}
            result["steps"].append(step)
            log(f"{name}: producing {target - produced:,} messages (log {produced:,} -> {target:,})…")
            code, seconds = run_bounded(
                [a.sipas, "simulate", "--count", str(target - produced), "--days", "30", "--seed", str(seed)],
                sipas_env(a, config=a.fill_config), a.step_timeout, side_log)
            seed += 1
            now = log_size(a)
            done = target - produced if code == 0 else (now or produced) - produced
            step["produce"] = {"messages": done, "seconds": round(seconds, 1),
                               "exit": code, "timed_out": code is None,
                               "events_per_s": round(done / seconds) if seconds else None}
            step["load_after_produce"] = loadavg()
            produced = now if now is not None else produced
            step["log_messages"] = produced
            step["disk_bytes"] = dir_bytes(data_dir)
            step["broker_rss_mib"] = rss_mib(broker.proc.pid)
            if code != 0:
                step["gave_up"] = ("produce timed out" if code is None else f"produce failed (exit {code})") + \
                    f" after {seconds:.0f} s"
                log(f"{name}: {step['gave_up']}")
                break
            log(f"{name}: fetching {produced:,} messages from offset 0…")
            fetch = fetch_all(a, TOPICS, produced)
            step["fetch"] = fetch
            step["load_after_fetch"] = loadavg()
            count = int(a.paced_rate * a.paced_seconds)
            log(f"{name}: paced producer, {count} messages at {a.paced_rate:.0f}/s…")
            code, seconds = run_bounded(
                [a.sipas, "simulate", "--count", str(count), "--rate", str(a.paced_rate), "--seed", str(seed)],
                sipas_env(a), a.paced_seconds * 10, side_log)
            seed += 1
            now = log_size(a)
            paced_done = count if code == 0 else (now - produced) if now is not None else 0
            step["paced"] = {"requested_per_s": a.paced_rate, "messages": paced_done, "seconds": round(seconds, 1),
                             "achieved_per_s": round(paced_done / seconds) if seconds else None,
                             "timed_out": code is None, "exit": code}
            step["load_after_paced"] = loadavg()
            produced = now if now is not None else produced + count
            log(f"{name}: paced producer into new topics, a group following them…")
            step["fresh"] = fresh_probe(a, target, seed, side_log, data_dir)
            seed += 1
            step["load_after_fresh"] = loadavg()
            step["disk_bytes"] = dir_bytes(data_dir)
            step["broker_rss_mib"] = rss_mib(broker.proc.pid)
            if a.demo_load:
                step["tail_consumer"] = read_tail(tail_file)
            if not fetch.get("complete"):
                step["gave_up"] = f"fetch incomplete after {fetch.get('seconds', 0):.0f} s"
                log(f"{name}: {step['gave_up']}")
                break
    finally:
        for proc in background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        broker.stop()
        result["disk_bytes_after_stop"] = dir_bytes(data_dir)
        if not a.keep:
            subprocess.run(["rm", "-rf", data_dir], check=False)
    return result


def fmt_rate(x):
    return f"{x:,}" if isinstance(x, int) else "-"


def print_table(results):
    print("| storage | log (messages) | on disk | broker RSS | produce events/s | full fetch events/s "
          "(first message) | paced producer achieved / requested | load (1-min) before, after produce, fetch, paced, new topics |"
          " following group: rebalances, longest wait | new topics beside it: paced producer achieved, "
          "follower's longest wait, full fetch events/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if r.get("error"):
            print(f"| {r['storage']} | {r['error']} | | | | | | | | |")
        for s in r["steps"]:
            p, f, q = s.get("produce", {}), s.get("fetch", {}), s.get("paced", {})
            produce = fmt_rate(p.get("events_per_s")) + (" (timed out)" if p.get("timed_out") else "")
            if f:
                first = f.get("first_message_s")
                fetch = (fmt_rate(f.get("events_per_s")) if f.get("complete")
                         else f"incomplete: {f.get('messages', 0):,} in {f.get('seconds', 0):.0f} s")
                fetch += f" ({first:.1f} s)" if first is not None else " (none)"
            else:
                fetch = "-"
            paced = (f"{fmt_rate(q.get('achieved_per_s'))} / {q['requested_per_s']:.0f}"
                     + (" (timed out)" if q.get("timed_out") else "")) if q else "-"
            loads = ", ".join(s.get(k, "-").split()[0] for k in
                              ("load_before", "load_after_produce", "load_after_fetch", "load_after_paced",
                               "load_after_fresh") if s.get(k))
            t = s.get("tail_consumer")
            tail = f"{t['assignments']}, {t['longest_wait_s']} s" if t else "-"
            fr = s.get("fresh") or {}
            fresh = (f"{fmt_rate(fr.get('achieved_per_s'))} / {fr.get('requested_per_s', 0):.0f}, "
                     f"{(fr.get('follower') or {}).get('longest_wait_s', '-')} s, "
                     f"{fmt_rate((fr.get('fetch') or {}).get('events_per_s'))}") if fr else "-"
            print(f"| {r['storage']} | {s.get('log_messages', 0):,} | {s.get('disk_bytes', 0) / 1048576:.0f} MiB | "
                  f"{s.get('broker_rss_mib') or '-'} MiB | {produce} | {fetch} | {paced} | {loads} | {tail} | {fresh} |"
                  + (f" gave up: {s['gave_up']}" if s.get("gave_up") else ""))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=0, help=argparse.SUPPRESS)
    p.add_argument("--tail-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tail-file", help=argparse.SUPPRESS)
    p.add_argument("--topics", nargs="+", default=list(TOPICS), help=argparse.SUPPRESS)
    p.add_argument("--fill-config", help="the configuration of the producer that fills the log "
                   "(default: --config); e.g. config/default.toml (batching) to reach a size quickly")
    p.add_argument("--demo-load", action="store_true",
                   help="run the demo's trickle and a following consumer group meanwhile")
    p.add_argument("--storage", action="append", help="tansu STORAGE_ENGINE URL (repeatable); "
                   "default: sqlite://tansu.db and memory://tansu/")
    p.add_argument("--sizes", default="100000,300000,1000000", help="log sizes to measure at (messages)")
    p.add_argument("--port", type=int, default=int(os.environ.get("SIPAS_STORAGE_BENCH_PORT", "19094")))
    p.add_argument("--work-dir", default=os.path.join(os.environ.get("SIPAS_HOME", os.path.join(ROOT, ".local")),
                                                      "storage-bench"))
    p.add_argument("--sipas", default=os.path.join(ROOT, "target", "release", "sipas"))
    p.add_argument("--tansu", default=os.path.join(os.environ.get("SIPAS_TOOLS_DIR", ""), "bin", "tansu"))
    p.add_argument("--config", default=os.path.join(ROOT, "config", "local.toml"),
                   help="the sipas configuration the producer uses (default: the local stack's)")
    p.add_argument("--step-timeout", type=float, default=900, help="seconds before a produce or fetch step gives up")
    p.add_argument("--paced-rate", type=float, default=1000)
    p.add_argument("--paced-seconds", type=float, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep each engine's data directory")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "target", "bench"))
    a = p.parse_args()
    a.brokers = f"127.0.0.1:{a.port}"
    if a.worker:
        return worker_fetch(a)
    if a.tail_worker:
        return worker_tail(a)
    a.sizes = [int(x) for x in a.sizes.split(",")]
    a.fill_config = a.fill_config or a.config
    storages = a.storage or ["sqlite://tansu.db", "memory://tansu/"]
    for path, what in ((a.sipas, "sipas"), (a.tansu, "tansu")):
        if not os.access(path, os.X_OK):
            sys.exit(f"{what} not found at {path}")
    if port_open(a.port):
        sys.exit(f"port {a.port} is taken (set --port or SIPAS_STORAGE_BENCH_PORT)")
    os.makedirs(a.work_dir, exist_ok=True)
    os.makedirs(a.out_dir, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results = []
    for url in storages:
        results.append(measure_engine(a, url, a.seed))
        with open(os.path.join(a.out_dir, f"broker-storage-{stamp}-{a.port}.json"), "w") as f:
            json.dump({"config": a.config, "fill_config": a.fill_config, "sizes": a.sizes, "nproc": os.cpu_count(), "results": results}, f, indent=2)
    print_table(results)
    print(f"JSON: {os.path.relpath(os.path.join(a.out_dir, f'broker-storage-{stamp}-{a.port}.json'), ROOT)}")


if __name__ == "__main__":
    main()
