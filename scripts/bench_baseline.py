#!/usr/bin/env python3
"""Pipeline vs ceiling vs a plain Python baseline, on the same pre-filled topics.

Run through scripts/bench-baseline.sh, which starts the services, prepares the venv
(confluent-kafka, clickhouse-connect) and builds `sipas`. Steps:
  1. fresh topics + databases (`sipas topics` / `sipas migrate` with SIPAS__ overrides),
     pre-filled with N messages by `sipas simulate`;
  2. ceiling: a confluent-kafka consumer that reads everything and does nothing;
     baseline: a confluent-kafka consumer that parses the JSON and inserts the raw rows
     with clickhouse-connect in batches (Avro and unparseable messages are counted, skipped);
     pipeline: `sipas run` on a fresh group until raw rows + dead letters cover every message;
     kafka engine: ClickHouse's ENGINE = Kafka + materialized view on the hotline topic;
  3. a table on stdout and JSON in target/bench/baseline-<timestamp>.json.
Each Python consumer runs in its own child process so that getrusage covers only it.
"""
import argparse
import csv
import datetime as dt
import hashlib
import hmac
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VN = dt.timezone(dt.timedelta(hours=7))
UTC = dt.timezone.utc
MERGER_UNIX = 1_751_302_800  # src/domain/time.rs PROVINCE_MERGER_UNIX
# Same batching as the pipeline's defaults (config/default.toml [pipeline]).
BATCH_MAX_MESSAGES = 20000
BATCH_MAX_WAIT_S = 0.5

SURVEY_COLUMNS = [
    ("submission_id", "String"), ("framework", "String"), ("submitted_at", "DateTime('UTC')"),
    ("submitted_date", "Date"), ("province_code", "String"), ("province_code_original", "String"),
    ("province_code_system", "UInt16"), ("agency_id", "String"), ("agency_level", "String"),
    ("procedure_code", "String"), ("channel", "String"), ("respondent_type", "String"),
    ("answer_criteria", "Array(String)"), ("answer_scores", "Array(UInt8)"),
    ("expectations", "Array(String)"), ("encoding", "String"), ("_topic", "String"),
    ("_partition", "UInt32"), ("_offset", "UInt64"), ("ingested_at", "DateTime('UTC')"),
]
HOTLINE_COLUMNS = [
    ("event_id", "String"), ("ticket_id", "String"), ("type", "String"),
    ("occurred_at", "DateTime('UTC')"), ("occurred_date", "Date"), ("province_code", "String"),
    ("province_code_original", "String"), ("province_code_system", "UInt16"), ("channel", "String"),
    ("category", "String"), ("agency_id", "String"), ("due_at", "Nullable(DateTime('UTC'))"),
    ("rating", "String"), ("reason", "String"), ("reporter_phone_hash", "String"),
    ("reporter_email_hash", "String"), ("encoding", "String"), ("_topic", "String"),
    ("_partition", "UInt32"), ("_offset", "UInt64"), ("ingested_at", "DateTime('UTC')"),
]


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- clickhouse-connect on 18.16

def clickhouse_client(url, database):
    """clickhouse-connect 1.12 against ClickHouse 18.16.

    Its connect sequence reads system.settings.readonly, a column 18.16 does not have, so
    that one query is rewritten; inserts pass column types so it skips DESCRIBE (whose
    18.16 columns it cannot read either). HTTP compression off: 18.16 knows no lz4 body."""
    import dataclasses
    import clickhouse_connect
    import clickhouse_connect.driver.client as client_module
    from clickhouse_connect.driver._backend.operations import QueryOp

    original = client_module.init_sequence
    if not getattr(original, "_sipas_patched", False):
        def init_sequence(config):
            gen = original(config)
            op = next(gen)
            while True:
                if isinstance(op, QueryOp) and "readonly FROM system.settings" in op.text:
                    op = dataclasses.replace(op, text=op.text.replace("readonly FROM", "toUInt8(0) AS readonly FROM"))
                try:
                    try:
                        result = yield op
                    except Exception as error:  # pass the failure on; the sequence decides
                        op = gen.throw(error)
                        continue
                    op = gen.send(result)
                except StopIteration as done:
                    return done.value
        init_sequence._sipas_patched = True
        client_module.init_sequence = init_sequence
    parsed = urllib.parse.urlparse(url)
    return clickhouse_connect.get_client(host=parsed.hostname, port=parsed.port or 8123,
                                         database=database, compress=False)


def ch_query(url, sql):
    """Plain HTTP query (no bind values needed: identifiers come from this script only)."""
    req = urllib.request.Request(url, data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read().decode()


# ---------------------------------------------------------------- Kafka helpers

def consumer(brokers, group, extra=None):
    from confluent_kafka import Consumer
    conf = {
        "bootstrap.servers": brokers,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # Same read buffer as the pipeline's consumer (src/kafka/consumer.rs).
        "queued.max.messages.kbytes": 32768,
    }
    conf.update(extra or {})
    return Consumer(conf)


def end_offsets(brokers, topics):
    """{topic: [(partition, low, high)]}"""
    from confluent_kafka import TopicPartition
    c = consumer(brokers, "sipas-bench-offsets")
    out = {}
    try:
        for topic in topics:
            md = c.list_topics(topic, timeout=30)
            parts = sorted(md.topics[topic].partitions)
            out[topic] = []
            for p in parts:
                low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                out[topic].append((p, low, high))
    finally:
        c.close()
    return out


def total_messages(offsets):
    return sum(high - low for parts in offsets.values() for _, low, high in parts)


# ---------------------------------------------------------------- workers (child processes)

def usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_maxrss


def worker_ceiling(a):
    c = consumer(a.brokers, a.group)
    c.subscribe(a.topics)
    count = 0
    cpu0, _ = usage()
    start = time.monotonic()
    deadline = start + a.timeout
    while count < a.expect and time.monotonic() < deadline:
        for msg in c.consume(num_messages=10000, timeout=0.5):
            if msg.error() is None:
                count += 1
    seconds = time.monotonic() - start
    cpu1, rss = usage()
    c.close()
    return {"messages": count, "seconds": seconds, "cpu_seconds": cpu1 - cpu0, "peak_rss_kib": rss,
            "complete": count >= a.expect}


class Provinces:
    def __init__(self):
        self.codes_2025 = set()
        self.from_2004 = {}
        with open(os.path.join(ROOT, "config", "provinces.csv"), encoding="utf-8") as f:
            for row in csv.DictReader(f):
                self.codes_2025.add(row["code_2025"])
                self.from_2004[row["code_2004"]] = row["code_2025"]

    def resolve(self, code, system, unix):
        """(2025 code, system year); a team's baseline maps old codes but checks little else."""
        if system is None:
            system = 2004 if unix < MERGER_UNIX else 2025
        system = int(system)
        if system == 2004:
            return self.from_2004[code], 2004
        if code not in self.codes_2025:
            raise ValueError("unknown province")
        return code, 2025


def parse_time(text):
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError("no offset")
    return t.astimezone(UTC)


def survey_row(doc, provinces, msg, now):
    at = parse_time(doc["submitted_at"])
    code, system = provinces.resolve(str(doc["province_code"]), doc.get("province_code_system"), at.timestamp())
    answers = doc["answers"]
    return [
        str(doc["submission_id"]), doc["framework"], at, at.astimezone(VN).date(), code,
        str(doc["province_code"]), system, doc["agency_id"], doc["agency_level"],
        doc.get("procedure_code") or "", doc["channel"], doc["respondent_type"],
        list(answers.keys()), [int(v or 0) for v in answers.values()], list(doc.get("expectations") or []),
        "json", msg.topic(), msg.partition(), msg.offset(), now,
    ]


def hotline_row(doc, provinces, msg, now, secret):
    at = parse_time(doc["occurred_at"])
    code, system = provinces.resolve(str(doc["province_code"]), doc.get("province_code_system"), at.timestamp())

    def digest(value):
        # Personal data is stored only as a keyed hash, as the pipeline does.
        return hmac.new(secret, str(value).encode(), hashlib.sha256).hexdigest() if value else ""

    due = doc.get("due_at")
    return [
        str(doc["event_id"]), str(doc["ticket_id"]), doc["type"], at, at.astimezone(VN).date(), code,
        str(doc["province_code"]), system, doc.get("channel") or "", doc.get("category") or "",
        doc.get("agency_id") or "", parse_time(due) if due else None, doc.get("rating") or "",
        doc.get("reason") or "", digest(doc.get("reporter_phone")), digest(doc.get("reporter_email")),
        "json", msg.topic(), msg.partition(), msg.offset(), now,
    ]


def worker_baseline(a):
    provinces = Provinces()
    secret = os.environ.get("SIPAS__PII__HMAC_SECRET", "").encode()
    client = clickhouse_client(a.ch_url, a.database)
    c = consumer(a.brokers, a.group, {"enable.auto.commit": False})
    c.subscribe(a.topics)
    surveys, hotline = [], []
    counts = {"messages": 0, "inserted": 0, "skipped_avro_or_binary": 0, "skipped_invalid": 0}
    cpu0, _ = usage()
    start = time.monotonic()
    deadline = start + a.timeout
    batch_started = None
    pending = 0

    def flush():
        nonlocal surveys, hotline, pending, batch_started
        for table, rows, cols in (("survey_submissions", surveys, SURVEY_COLUMNS),
                                  ("hotline_events", hotline, HOTLINE_COLUMNS)):
            if rows:
                client.insert(table, rows, column_names=[n for n, _ in cols],
                              column_type_names=[t for _, t in cols])
                counts["inserted"] += len(rows)
        if pending:
            c.commit(asynchronous=False)  # at-least-once: offsets after the rows are stored
        surveys, hotline, pending, batch_started = [], [], 0, None

    while counts["messages"] < a.expect and time.monotonic() < deadline:
        msgs = c.consume(num_messages=5000, timeout=0.2)
        now = dt.datetime.now(UTC).replace(microsecond=0)
        for msg in msgs:
            if msg.error() is not None:
                continue
            counts["messages"] += 1
            pending += 1
            if batch_started is None:
                batch_started = time.monotonic()
            value = msg.value() or b""
            if not value.lstrip()[:1] == b"{":
                counts["skipped_avro_or_binary"] += 1
                continue
            try:
                doc = json.loads(value)
                if msg.topic() == a.surveys_topic:
                    surveys.append(survey_row(doc, provinces, msg, now))
                else:
                    hotline.append(hotline_row(doc, provinces, msg, now, secret))
            except (ValueError, KeyError, TypeError, AttributeError):
                counts["skipped_invalid"] += 1
        if pending and (pending >= BATCH_MAX_MESSAGES or time.monotonic() - batch_started >= BATCH_MAX_WAIT_S
                        or counts["messages"] >= a.expect):
            flush()
    if pending:
        flush()
    seconds = time.monotonic() - start
    cpu1, rss = usage()
    c.close()
    counts.update({"seconds": seconds, "cpu_seconds": cpu1 - cpu0, "peak_rss_kib": rss,
                   "complete": counts["messages"] >= a.expect})
    return counts


def run_worker(args, mode, extra, env=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", mode,
           "--brokers", args.brokers, "--ch-url", args.ch_url] + extra
    log(f"{mode}: {' '.join(extra)}")
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- the sipas pipeline

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    out = {"raw_rows": 0, "dlq": 0, "index_position": 0, "consumed": 0, "inserted": {}, "window_rows": 0}
    for line in text.splitlines():
        m = re.match(r'^sipas_(\w+)(\{[^}]*\})? ([0-9.e+]+)$', line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if name == "inserted_rows_total":
            table = re.search(r'table="([^"]*)"', labels)
            if table:
                out["inserted"][table.group(1)] = out["inserted"].get(table.group(1), 0) + value
            if '"survey_submissions"' in labels or '"hotline_events"' in labels:
                out["raw_rows"] += value
        elif name == "index_window_rows_total":
            out["window_rows"] += value
        elif name == "dlq_messages_total":
            out["dlq"] += value
        elif name == "index_position":
            out["index_position"] += value
        elif name == "consumed_messages_total":
            out["consumed"] += value
    return out


def proc_cpu_rss(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1])
    return cpu, rss


def measure_pipeline(args, env, total, log_path, index=True):
    """`sipas run` from process start until raw rows + dead letters cover every message
    (and, with the index, until every partition's index position reaches the end)."""
    port = free_port()
    env = dict(env, SIPAS__METRICS__LISTEN=f"127.0.0.1:{port}",
               SIPAS__KAFKA__GROUP_ID=f"{env['SIPAS__KAFKA__GROUP_ID']}-run",
               SIPAS__INDEX__GROUP_ID=f"{env['SIPAS__KAFKA__GROUP_ID']}-index",
               SIPAS__INDEX__ENABLED="true" if index else "false")
    url = f"http://127.0.0.1:{port}/metrics"
    with open(log_path, "w") as logf:
        start = time.monotonic()
        proc = subprocess.Popen([args.sipas, "run"], env=env, stdout=logf, stderr=logf)
        result = {"complete": False, "index_enabled": index, "index_complete": False, "timeline": []}
        try:
            deadline = start + args.timeout
            raw_done = None
            next_sample = start
            while time.monotonic() < deadline and proc.poll() is None:
                m = metrics(url)
                now = time.monotonic()
                if m and now >= next_sample:
                    # [seconds, consumed by ingest, raw rows + dead letters, index position]
                    result["timeline"].append([round(now - start, 1), int(m["consumed"]),
                                               int(m["raw_rows"] + m["dlq"]), int(m["index_position"])])
                    next_sample = now + 1.0
                if m and raw_done is None and m["raw_rows"] + m["dlq"] >= total:
                    raw_done = now
                    cpu, rss = proc_cpu_rss(proc.pid)
                    result.update({"complete": True, "seconds": raw_done - start, "cpu_seconds": cpu,
                                   "peak_rss_kib": rss, "raw_rows": m["raw_rows"], "dlq": m["dlq"]})
                    log(f"pipeline: raw rows + dead letters complete after {raw_done - start:.1f}s")
                    if not index:
                        break
                if m and raw_done is not None and m["index_position"] >= total:
                    cpu, rss = proc_cpu_rss(proc.pid)
                    result.update({"index_complete": True, "index_seconds": now - start,
                                   "index_cpu_seconds": cpu, "index_peak_rss_kib": rss,
                                   "inserted_rows": m["inserted"], "window_rows": m["window_rows"]})
                    log(f"pipeline: index position complete after {now - start:.1f}s")
                    break
                time.sleep(0.2)
            if proc.poll() is not None:
                result["exit_code"] = proc.returncode
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return result


# ---------------------------------------------------------------- ClickHouse Kafka engine

def try_kafka_engine(args, database, topic, log_dir, wait_s):
    """ENGINE = Kafka + materialized view on the hotline topic; reports rows and server errors.

    The server's own errors go to clickhouse-server.err.log; librdkafka's log lines go to
    the server's stderr, which scripts/services.sh writes to stdout.log."""
    group = f"{database}-chkafka"
    logs = [os.path.join(log_dir, name) for name in ("clickhouse-server.err.log", "stdout.log")] if log_dir else []
    log_offsets = {path: os.path.getsize(path) for path in logs if os.path.exists(path)}
    # Every field the simulator writes, as String, so JSONEachRow has no unknown field.
    cols = ["event_id", "ticket_id", "type", "occurred_at", "province_code", "province_code_system",
            "channel", "category", "agency_id", "due_at", "rating", "reason", "reporter_phone", "reporter_email"]
    col_sql = ", ".join(f"{c} String" for c in cols)
    statements = [
        f"CREATE TABLE {database}.kafka_hotline_queue ({col_sql}) ENGINE = Kafka('{args.brokers}', '{topic}', '{group}', 'JSONEachRow')",
        f"CREATE TABLE {database}.kafka_hotline_rows (event_id String, province_code String, occurred_at String) ENGINE = MergeTree() ORDER BY event_id",
        f"CREATE MATERIALIZED VIEW {database}.kafka_hotline_mv TO {database}.kafka_hotline_rows AS SELECT event_id, province_code, occurred_at FROM {database}.kafka_hotline_queue",
    ]
    result = {"topic": topic, "engine_sql": statements[0]}
    try:
        for s in statements:
            ch_query(args.ch_url, s)
    except OSError as error:
        body = error.read().decode() if hasattr(error, "read") else str(error)
        result.update({"consumed_rows": 0, "error": f"DDL failed: {body.strip()}"})
        return result
    start = time.monotonic()
    rows = 0
    while time.monotonic() - start < wait_s:
        time.sleep(2)
        rows = int(ch_query(args.ch_url, f"SELECT count() FROM {database}.kafka_hotline_rows").strip() or 0)
    result["consumed_rows"] = rows
    result["seconds_waited"] = round(time.monotonic() - start, 1)
    ch_query(args.ch_url, f"DROP TABLE IF EXISTS {database}.kafka_hotline_mv")
    ch_query(args.ch_url, f"DROP TABLE IF EXISTS {database}.kafka_hotline_queue")
    errors = []
    for path in logs:
        if not os.path.exists(path):
            continue
        with open(path, errors="replace") as f:
            f.seek(log_offsets.get(path, 0))
            for line in f:
                # librdkafka's own format is "%LEVEL|time|FAC|client| message".
                if re.match(r"%\d\|", line) or re.search(r"kafka|" + re.escape(database), line, re.I):
                    errors.append(f"{os.path.basename(path)}: {line.rstrip()[:600]}")
    result["server_log_lines"] = len(errors)
    # Distinct messages, first occurrence of each, so the report stays readable.
    seen, distinct = set(), []
    for line in errors:
        key = re.sub(r"[0-9.]+", "N", line.split("]: ", 1)[-1])[:200]
        if key not in seen:
            seen.add(key)
            distinct.append(line)
    result["server_log"] = distinct[:12]
    return result


# ---------------------------------------------------------------- sipas bench (its own topics)

SERVICE_HOME = os.environ.get("SIPAS_HOME", os.path.join(ROOT, ".local"))


def broker_state(brokers):
    """The broker's storage URL and its log's size now, as scripts/services.sh recorded them in
    its data directory (broker.info: storage=, listener=; the directory is SIPAS_BROKER_DIR,
    else SIPAS_HOME/tansu), read as `sipas bench` reads them (src/bench/broker.rs)."""
    directory = os.environ.get("SIPAS_BROKER_DIR") or os.path.join(SERVICE_HOME, "tansu")
    info_path = os.path.join(directory, "broker.info")
    try:
        with open(info_path) as f:
            info = dict(line.strip().split("=", 1) for line in f if "=" in line)
    except OSError:
        return f"broker storage unknown (no {info_path})"
    storage, listener = info.get("storage"), info.get("listener")
    norm = lambda s: s.strip().replace("localhost", "127.0.0.1")
    if not storage or not listener:
        return f"broker storage unknown ({info_path} lacks storage= or listener=)"
    if norm(listener) not in [norm(b) for b in brokers.split(",")]:
        return f"broker storage unknown ({info_path} is for {listener}, not {brokers})"
    text = f"{storage}, "
    if storage.startswith("sqlite://"):
        name = storage[len("sqlite://"):].split("?")[0].split("#")[0].lstrip("/")
        size = sum(os.path.getsize(p) for p in (os.path.join(directory, name + s) for s in ("", "-wal", "-shm", "-journal"))
                   if os.path.isfile(p))
        text += f"log {size / 1048576:.0f} MiB on disk"
    else:
        text += "log not on disk"
    try:
        with open(os.path.join(directory, "pid")) as f:
            text += f", broker RSS {proc_rss_kib(int(f.read().strip())) / 1024:.0f} MiB"
    except (OSError, ValueError):
        pass
    return text


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError("no VmRSS")


def machine_snapshot():
    """CPU seconds so far of the broker and ClickHouse (their pid files under SIPAS_HOME)
    and of the whole machine (busy and total, /proc/stat); the broker's storage and log."""
    snap = {"time": time.monotonic(),
            "broker_log": broker_state(os.environ.get("SIPAS__KAFKA__BROKERS", "127.0.0.1:19092"))}
    for name, pidfile in (("broker", "tansu/pid"), ("clickhouse", "clickhouse/pid")):
        try:
            with open(os.path.join(SERVICE_HOME, pidfile)) as f:
                snap[name] = proc_cpu_rss(int(f.read().strip()))[0]
        except (OSError, ValueError):
            snap[name] = None
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    snap["machine_busy"] = (sum(fields) - idle) / tick
    return snap


def step_usage(before, after):
    """Cores used by the broker, ClickHouse and the whole machine during a step."""
    wall = after["time"] - before["time"]
    out = {"wall_seconds": round(wall, 1), "broker_log": after.get("broker_log")}
    for key in ("broker", "clickhouse", "machine_busy"):
        if before.get(key) is not None and after.get(key) is not None and wall > 0:
            out[f"{key}_cores"] = round((after[key] - before[key]) / wall, 2)
    return out


def measure_rebuild(args, env, total, log_path):
    """`sipas rebuild` over the same topics: process start to exit (it stops at the end
    offsets it read at start)."""
    with open(log_path, "w") as logf:
        start = time.monotonic()
        proc = subprocess.Popen([args.sipas, "rebuild"], env=env, stdout=logf, stderr=logf)
        peak = 0
        cpu = 0.0
        while proc.poll() is None:
            try:
                cpu, rss = proc_cpu_rss(proc.pid)
                peak = max(peak, rss)
            except OSError:
                pass
            if time.monotonic() - start > args.timeout:
                proc.kill()
                break
            time.sleep(0.2)
        proc.wait()
        seconds = time.monotonic() - start
    return {"complete": proc.returncode == 0, "exit_code": proc.returncode, "seconds": seconds,
            "cpu_seconds": cpu, "peak_rss_kib": peak}


def quantile(values, q):
    values = sorted(values)
    return values[round((len(values) - 1) * q)] if values else None


def measure_queries(args, database, count=200):
    """p50/p99 of the analysts' ranking view over ClickHouse's HTTP interface."""
    sql = f"SELECT province_code, rank FROM {database}.province_ranking_latest WHERE window = '30d' FORMAT TSV"
    times = []
    rows = 0
    for _ in range(count):
        t0 = time.monotonic()
        rows = len(ch_query(args.ch_url, sql).strip().splitlines())
        times.append((time.monotonic() - t0) * 1000)
    return {"queries": count, "rows": rows, "p50_ms": round(quantile(times, 0.5), 2),
            "p99_ms": round(quantile(times, 0.99), 2)}


def wrk_ms(text, label):
    m = re.search(rf"^\s*{label}%\s+([0-9.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return None
    value, unit = float(m.group(1)), m.group(2)
    return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 3)


def measure_api(args, env, log_path, seconds=15, connections=50):
    """The rankings endpoint of `sipas serve` under `connections` concurrent pollers (wrk)."""
    wrk = shutil.which("wrk")
    if not wrk:
        return {"error": "wrk is not installed"}
    port = free_port()
    e = dict(env, SIPAS__SERVE__LISTEN=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/api/v1/rankings?window=30d"
    with open(log_path, "w") as logf:
        proc = subprocess.Popen([args.sipas, "serve"], env=e, stdout=logf, stderr=logf)
        try:
            for _ in range(100):
                try:
                    with urllib.request.urlopen(url, timeout=5) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    time.sleep(0.2)
            else:
                return {"error": "sipas serve did not answer"}
            out = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                                 stdout=subprocess.PIPE, text=True, check=True).stdout
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+([0-9]+)", out)
    return {"connections": connections, "seconds": seconds, "p50_ms": wrk_ms(out, "50"),
            "p99_ms": wrk_ms(out, "99"), "requests_per_s": rps and float(rps.group(1)),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def run_freshness(args, env):
    """`sipas bench --freshness`: a steady produce rate on its own fresh topics (freshness
    cannot be measured on a pre-filled log)."""
    e = {k: v for k, v in env.items() if not k.startswith(("SIPAS__KAFKA__", "SIPAS__CLICKHOUSE__DATABASE"))}
    e.update(SIPAS__KAFKA__BROKERS=args.brokers, RUST_LOG="warn")
    log(f"sipas bench --freshness {args.freshness_rate} --seconds {args.freshness_seconds}…")
    r = subprocess.run([args.sipas, "bench", "--freshness", str(args.freshness_rate), "--seconds",
                        str(args.freshness_seconds)], env=e, text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=args.timeout)
    out = {"exit_code": r.returncode, "rate": args.freshness_rate, "broker_log": broker_state(args.brokers)}
    if r.returncode != 0:
        # `sipas bench --freshness` refuses when its producer fell short of the rate.
        reason = [line for line in r.stderr.splitlines() if "freshness not reported" in line]
        out["refused"] = reason[-1].split("Error: ", 1)[-1] if reason else f"exit {r.returncode}: {r.stderr.strip()[-300:]}"
    m = re.search(r"\(([0-9]+) achieved\)", r.stdout)
    if m:
        out["achieved_rate"] = int(m.group(1))
    m = re.search(r"freshness p50 / p90 / p99 / max[^|]*\|\s*([0-9.]+) / ([0-9.]+) / ([0-9.]+) / ([0-9.]+) s", r.stdout)
    if m:
        out.update(p50_s=float(m.group(1)), p90_s=float(m.group(2)), p99_s=float(m.group(3)), max_s=float(m.group(4)))
    for key, pattern in (("fact_rows_per_event", r"fact rows written per event[^|]*\|\s*([0-9.]+)"),
                         ("window_rows_per_event", r"window rows written per event[^|]*\|\s*([0-9.]+)"),
                         ("checkpoint_mib_per_minute", r"checkpoint bytes written[^|]*\|\s*([0-9.]+) MiB")):
        m = re.search(pattern, r.stdout)
        if m:
            out[key] = float(m.group(1))
    out["table"] = r.stdout.strip().splitlines()
    return out


def run_sipas_bench(args, env, events):
    """`sipas bench --processing-only`: the processing cost without the broker, from the
    same generator, in memory on one core."""
    e = {k: v for k, v in env.items() if not k.startswith(("SIPAS__KAFKA__", "SIPAS__CLICKHOUSE__DATABASE"))}
    e.update(SIPAS__KAFKA__BROKERS=args.brokers, SIPAS__METRICS__LISTEN=f"127.0.0.1:{free_port()}")
    log(f"sipas bench --processing-only --events {events}…")
    r = subprocess.run([args.sipas, "bench", "--processing-only", "--events", str(events)], env=e, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=args.timeout)
    figures = {}
    for line in r.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] not in ("figure", "---") and not cells[0].startswith("-"):
            figures[cells[0]] = cells[1] + (" events/s per core" if len(cells) == 4 else "")
    return {"exit_code": r.returncode, "figures": figures}


# ---------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200000, help="messages to pre-fill (default 200000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--days", type=int, default=30, help="event-time spread of the simulated log")
    p.add_argument("--sipas", default=os.path.join(ROOT, "target", "release", "sipas"))
    p.add_argument("--config", default=os.path.join(ROOT, "config", "local.toml"))
    p.add_argument("--brokers", default=os.environ.get("SIPAS__KAFKA__BROKERS", "127.0.0.1:19092"))
    p.add_argument("--ch-url", default=os.environ.get("SIPAS__CLICKHOUSE__URL", "http://127.0.0.1:18123"))
    p.add_argument("--ch-log-dir", default="", help="ClickHouse server log directory (for the Kafka engine step)")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "target", "bench"))
    p.add_argument("--timeout", type=float, default=1800, help="seconds each measurement may take")
    p.add_argument("--kafka-engine-wait", type=float, default=60)
    p.add_argument("--skip-kafka-engine", action="store_true")
    p.add_argument("--skip-sipas-bench", action="store_true", help="do not run `sipas bench --processing-only`")
    p.add_argument("--keep", action="store_true", help="keep the bench databases (dropped by default)")
    p.add_argument("--freshness-rate", type=int, default=1000, help="events/s for the freshness step (0 skips it)")
    p.add_argument("--freshness-seconds", type=int, default=30)
    # Worker mode (internal).
    p.add_argument("--worker", choices=["ceiling", "baseline"])
    p.add_argument("--group")
    p.add_argument("--topics", nargs="+")
    p.add_argument("--surveys-topic")
    p.add_argument("--expect", type=int)
    p.add_argument("--database")
    a = p.parse_args()

    if a.worker:
        result = worker_ceiling(a) if a.worker == "ceiling" else worker_baseline(a)
        print(json.dumps(result))
        return

    stamp = dt.datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tag = stamp.lower()
    topics = {k: f"sipas.blbench.{tag}.{k}" for k in ("surveys", "hotline", "dlq")}
    db_pipeline = f"sipas_blbench_{tag}"
    db_baseline = f"sipas_blbench_{tag}_py"
    db_ingest_only = f"sipas_blbench_{tag}_noindex"
    env = dict(os.environ, SIPAS_CONFIG=a.config,
               SIPAS__KAFKA__BROKERS=a.brokers, SIPAS__CLICKHOUSE__URL=a.ch_url,
               SIPAS__KAFKA__SURVEYS_TOPIC=topics["surveys"], SIPAS__KAFKA__HOTLINE_TOPIC=topics["hotline"],
               SIPAS__KAFKA__DLQ_TOPIC=topics["dlq"], SIPAS__CLICKHOUSE__DATABASE=db_pipeline,
               SIPAS__KAFKA__GROUP_ID=f"sipas-blbench-{tag}")
    secret = ""
    with open(a.config) as f:
        m = re.search(r'^hmac_secret\s*=\s*"([^"]*)"', f.read(), re.M)
        secret = os.environ.get("SIPAS__PII__HMAC_SECRET") or (m.group(1) if m else "")

    def sipas(*cmd, db=db_pipeline, capture=False):
        e = dict(env, SIPAS__CLICKHOUSE__DATABASE=db)
        r = subprocess.run([a.sipas, *cmd], env=e, check=True, text=True,
                           stdout=subprocess.PIPE if capture else None)
        return r.stdout

    report = {"date": dt.datetime.now(UTC).isoformat(timespec="seconds"), "events": a.events, "seed": a.seed,
              "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
              "broker_storage": broker_state(a.brokers),
              "topics": topics,
              "databases": {"pipeline": db_pipeline, "baseline": db_baseline, "pipeline_ingest_only": db_ingest_only}}
    try:
        import confluent_kafka
        import clickhouse_connect
        librdkafka_debian = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "librdkafka1"],
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        report["versions"] = {"librdkafka_of_clickhouse_server": librdkafka_debian or "unknown",
                              "confluent_kafka": confluent_kafka.version(), "librdkafka": confluent_kafka.libversion()[0],
                              "clickhouse_connect": clickhouse_connect.__version__,
                              "clickhouse": ch_query(a.ch_url, "SELECT version()").strip()}
    except Exception as error:
        report["versions"] = {"error": str(error)}

    try:
        # 1. Fresh topics and databases, pre-filled log.
        log(f"topics {topics['surveys']}, {topics['hotline']}, {topics['dlq']}; databases {db_pipeline}, {db_baseline}")
        sipas("topics")
        sipas("migrate")
        sipas("migrate", db=db_baseline)
        sipas("migrate", db=db_ingest_only)
        log(f"simulating {a.events} messages (seed {a.seed}, {a.days} days)…")
        t0 = time.monotonic()
        sim_out = sipas("simulate", "--count", str(a.events), "--seed", str(a.seed), "--days", str(a.days), capture=True)
        sim_s = time.monotonic() - t0
        report["prefill"] = {"seconds": round(sim_s, 2), "summary": sim_out.strip().splitlines()[-1] if sim_out.strip() else ""}
        offsets = end_offsets(a.brokers, [topics["surveys"], topics["hotline"]])
        total = total_messages(offsets)
        report["prefill"]["messages_in_topics"] = total
        report["prefill"]["broker_log"] = broker_state(a.brokers)
        log(f"pre-filled {total} messages in {sim_s:.1f}s: {report['prefill']['summary']}")

        in_topics = [topics["surveys"], topics["hotline"]]
        common = ["--topics", *in_topics, "--expect", str(total), "--timeout", str(a.timeout)]

        # 2a. Ceiling.
        snap = machine_snapshot()
        ceiling = run_worker(a, "ceiling", ["--group", f"sipas-blbench-{tag}-ceiling", *common])
        ceiling["usage"], snap = step_usage(snap, machine_snapshot()), machine_snapshot()
        report["ceiling"] = ceiling
        # 2b. Baseline.
        baseline = run_worker(a, "baseline", ["--group", f"sipas-blbench-{tag}-py", "--database", db_baseline,
                                              "--surveys-topic", topics["surveys"], *common],
                              env=dict(os.environ, SIPAS__PII__HMAC_SECRET=secret))
        baseline["usage"] = step_usage(snap, machine_snapshot())
        baseline["rows_in_clickhouse"] = int(ch_query(
            a.ch_url, f"SELECT (SELECT count() FROM {db_baseline}.survey_submissions) + (SELECT count() FROM {db_baseline}.hotline_events)").strip())
        report["baseline"] = baseline
        # 2c. Pipeline.
        os.makedirs(a.out_dir, exist_ok=True)
        run_log = os.path.join(a.out_dir, f"baseline-{stamp}-sipas-run.log")
        snap = machine_snapshot()
        pipeline = measure_pipeline(a, env, total, run_log)
        pipeline["usage"] = step_usage(snap, machine_snapshot())
        pipeline["log"] = os.path.relpath(run_log, ROOT)
        pipeline["rows_in_clickhouse"] = int(ch_query(
            a.ch_url, f"SELECT (SELECT count() FROM {db_pipeline}.survey_submissions) + (SELECT count() FROM {db_pipeline}.hotline_events)").strip())
        dlq_offsets = end_offsets(a.brokers, [topics["dlq"]])
        pipeline["dlq_topic_messages"] = total_messages(dlq_offsets)
        report["pipeline"] = pipeline
        # 2c'. The same without the index processor: the raw-ingest part the baseline also does.
        run_log = os.path.join(a.out_dir, f"baseline-{stamp}-sipas-run-noindex.log")
        snap = machine_snapshot()
        ingest_only = measure_pipeline(a, dict(env, SIPAS__CLICKHOUSE__DATABASE=db_ingest_only,
                                               SIPAS__KAFKA__GROUP_ID=f"sipas-blbench-{tag}-noindex"),
                                       total, run_log, index=False)
        ingest_only["usage"] = step_usage(snap, machine_snapshot())
        ingest_only["log"] = os.path.relpath(run_log, ROOT)
        ingest_only["rows_in_clickhouse"] = int(ch_query(
            a.ch_url, f"SELECT (SELECT count() FROM {db_ingest_only}.survey_submissions) + (SELECT count() FROM {db_ingest_only}.hotline_events)").strip())
        report["pipeline_ingest_only"] = ingest_only
        # 2c''. Rebuild over the same log, then the read side on what it wrote.
        run_log = os.path.join(a.out_dir, f"baseline-{stamp}-sipas-rebuild.log")
        log("sipas rebuild over the same topics…")
        snap = machine_snapshot()
        rebuild = measure_rebuild(a, env, total, run_log)
        rebuild["usage"] = step_usage(snap, machine_snapshot())
        rebuild["log"] = os.path.relpath(run_log, ROOT)
        report["rebuild"] = rebuild
        log("province_ranking_latest: 200 queries…")
        report["queries"] = measure_queries(a, db_pipeline)
        log("rankings API under 50 concurrent pollers (wrk, 15 s)…")
        report["api"] = measure_api(a, env, os.path.join(a.out_dir, f"baseline-{stamp}-sipas-serve.log"))
        if a.freshness_rate > 0:
            report["freshness"] = run_freshness(a, env)
        # 2d. ClickHouse Kafka engine.
        if not a.skip_kafka_engine:
            log(f"ClickHouse Kafka engine on {topics['hotline']} for {a.kafka_engine_wait:.0f}s…")
            report["kafka_engine"] = try_kafka_engine(a, db_baseline, topics["hotline"], a.ch_log_dir, a.kafka_engine_wait)

        if not a.skip_sipas_bench:
            report["sipas_bench"] = run_sipas_bench(a, env, a.events)

    finally:
        # Dropped on failure too, so an interrupted run leaves no bench database behind.
        if not a.keep:
            for db in (db_pipeline, db_baseline, db_ingest_only):
                try:
                    ch_query(a.ch_url, f"DROP DATABASE IF EXISTS {db}")
                except OSError as error:
                    log(f"could not drop {db}: {error}")

    # 3. Table and JSON.
    def rate(r, key="seconds"):
        return r[key] and total / r[key] if r.get("complete") and r.get(key) else None

    def cpu_per_m(r, key="cpu_seconds"):
        return r[key] / total * 1e6 if r.get(key) is not None else None

    rows = [
        ("ceiling (confluent-kafka, no work)", ceiling, rate(ceiling), cpu_per_m(ceiling), ceiling.get("peak_rss_kib")),
        ("baseline (Python JSON + clickhouse-connect)", baseline, rate(baseline), cpu_per_m(baseline), baseline.get("peak_rss_kib")),
        ("pipeline: sipas run, raw rows + DLQ", pipeline, rate(pipeline), cpu_per_m(pipeline), pipeline.get("peak_rss_kib")),
        ("pipeline: sipas run, incl. index caught up", pipeline,
         rate(dict(pipeline, complete=pipeline.get("index_complete")), "index_seconds"),
         cpu_per_m(pipeline, "index_cpu_seconds"), pipeline.get("index_peak_rss_kib")),
        ("sipas run, index disabled: raw rows + DLQ", ingest_only, rate(ingest_only), cpu_per_m(ingest_only),
         ingest_only.get("peak_rss_kib")),
        ("sipas rebuild (index only, from offset 0)", rebuild, rate(rebuild), cpu_per_m(rebuild),
         rebuild.get("peak_rss_kib")),
    ]
    figures = {}
    for name, step, r, cpu, rss in rows:
        figures[name] = {"events_per_s": r and round(r), "cpu_s_per_million": cpu and round(cpu, 2),
                         "peak_rss_mib": rss and round(rss / 1024, 1),
                         "broker": step.get("usage", {}).get("broker_log")}
    ratios = {}
    p_rate, c_rate, b_rate = rows[3][2], rows[0][2], rows[1][2]
    if p_rate and c_rate:
        ratios["pipeline (incl. index)/ceiling"] = round(p_rate / c_rate, 3)
    if rows[2][2] and c_rate:
        ratios["pipeline raw rows + DLQ/ceiling"] = round(rows[2][2] / c_rate, 3)
    if rows[5][2] and c_rate:
        ratios["rebuild/ceiling"] = round(rows[5][2] / c_rate, 3)
    if p_rate and b_rate:
        ratios["pipeline/baseline"] = round(p_rate / b_rate, 3)
    if b_rate and c_rate:
        ratios["baseline/ceiling"] = round(b_rate / c_rate, 3)
    i_rate = rows[4][2]
    if i_rate and c_rate:
        ratios["pipeline without index/ceiling"] = round(i_rate / c_rate, 3)
    if i_rate and b_rate:
        ratios["pipeline without index/baseline"] = round(i_rate / b_rate, 3)
    report["figures"] = figures
    report["ratios"] = ratios

    out = os.path.join(a.out_dir, f"baseline-{stamp}.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=2, default=str)

    print(f"\n{total:,} messages in the topics ({report['prefill']['summary']}); broker after the pre-fill: "
          f"{report['prefill'].get('broker_log')}")
    print(f"broker before the pre-fill: {report['broker_storage']}")
    print(f"{'measurement':<46} {'events/s':>10} {'CPU s/M ev':>11} {'peak RSS MiB':>13}  broker after the step")
    for name, step, r, cpu, rss in rows:
        print(f"{name:<46} {('%.0f' % r) if r else 'incomplete':>10} {('%.2f' % cpu) if cpu else '-':>11} "
              f"{('%.1f' % (rss / 1024)) if rss else '-':>13}  {step.get('usage', {}).get('broker_log', '-')}")
    for k, v in ratios.items():
        print(f"ratio {k}: {v}")
    for name, r in (("ceiling", ceiling), ("baseline", baseline), ("pipeline", pipeline),
                    ("pipeline, index disabled", ingest_only), ("rebuild", rebuild)):
        u = r.get("usage", {})
        print(f"cores used during {name}: broker {u.get('broker_cores')}, ClickHouse {u.get('clickhouse_cores')}, "
              f"whole machine {u.get('machine_busy_cores')} of {os.cpu_count()}")
    print(f"baseline: {baseline.get('inserted', 0)} rows inserted, {baseline.get('skipped_avro_or_binary', 0)} Avro/binary "
          f"and {baseline.get('skipped_invalid', 0)} invalid messages skipped")
    print(f"pipeline: {pipeline.get('raw_rows', 0):.0f} raw rows + {pipeline.get('dlq', 0):.0f} dead letters "
          f"(ClickHouse has {pipeline['rows_in_clickhouse']} raw rows, DLQ topic {pipeline['dlq_topic_messages']} messages)")
    if pipeline.get("inserted_rows"):
        ins = pipeline["inserted_rows"]
        facts = ins.get("satisfaction_day_counts", 0) + ins.get("hotline_day_counts", 0)
        windows = sum(v for t, v in ins.items() if t.startswith(("satisfaction_daily", "satisfaction_latest", "hotline_kpi_")))
        print(f"pipeline index rows per message (from /metrics when the index caught up): facts (day counts) "
              f"{facts / total:.3f}; windows written by the materialiser {windows / total:.2f} "
              f"(sipas_index_window_rows_total {pipeline['window_rows'] / total:.2f}); per table: "
              + ", ".join(f"{t} {v:.0f}" for t, v in sorted(ins.items())))
    q, api, fr = report.get("queries", {}), report.get("api", {}), report.get("freshness")
    print(f"province_ranking_latest (30d, {q.get('queries')} sequential queries): p50 {q.get('p50_ms')} ms, p99 {q.get('p99_ms')} ms")
    print(f"rankings API, {api.get('connections')} concurrent pollers: p50 {api.get('p50_ms')} ms, p99 {api.get('p99_ms')} ms, "
          f"{api.get('requests_per_s')} requests/s, {api.get('non_2xx')} non-2xx" + (f"; {api['error']}" if api.get("error") else ""))
    if fr and fr.get("refused"):
        print(f"freshness at {fr.get('rate')} events/s requested ({fr.get('achieved_rate')} achieved): {fr['refused']}; "
              f"broker: {fr.get('broker_log')}")
    elif fr:
        print(f"freshness at {fr.get('rate')} events/s requested ({fr.get('achieved_rate')} achieved): p50 {fr.get('p50_s')} s, "
              f"p99 {fr.get('p99_s')} s, max {fr.get('max_s')} s; per event {fr.get('fact_rows_per_event')} fact rows, "
              f"{fr.get('window_rows_per_event')} window rows; checkpoints {fr.get('checkpoint_mib_per_minute')} MiB/min; "
              f"broker: {fr.get('broker_log')}")
    ke = report.get("kafka_engine")
    if ke:
        print(f"ClickHouse Kafka engine: {ke.get('consumed_rows', 0)} rows in {ke.get('seconds_waited', 0)}s"
              + (f"; {ke['error']}" if ke.get("error") else ""))
        for line in ke.get("server_log", [])[:6]:
            print(f"  server log: {line[:300]}")
    sb = report.get("sipas_bench")
    if sb:
        print(f"processing cost without the broker (sipas bench --processing-only --events {a.events}; exit {sb['exit_code']}):")
        for k, v in sb["figures"].items():
            print(f"  {k}: {v}")
    print(f"JSON: {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()
