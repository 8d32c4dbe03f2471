#!/usr/bin/env python3
# Checks that the ClickHouse migrations parse and run on the current ClickHouse engine
# (embedded via the chdb-core package: pip install chdb-core), that the index's queries
# run there, and that every statement of the read API (scripts/serve-queries.sql,
# generated from the code by the test serve::catalogue) runs there and returns the column
# types its rows decode.
#
#   scripts/check-sql-current.py                      # current ClickHouse (chdb)
#   scripts/check-sql-current.py --server URL         # the same on a running server, e.g.
#                                                     # the tests' 18.16 (http://127.0.0.1:28123),
#                                                     # in a scratch database dropped afterwards
# The test suite checks the migrations on the locally installed 18.16 server.
import csv, glob, os, re, sys, tempfile, urllib.error, urllib.request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')


class Chdb:
    name = 'current ClickHouse (chdb)'

    def __init__(self):
        from chdb import session
        self.s = session.Session(tempfile.mkdtemp())

    def query(self, sql, fmt='CSV'):
        return str(self.s.query(sql, fmt or 'CSV'))

    def use(self, db):
        self.s.query(f"USE {db}")

    def close(self):
        pass


class Server:
    def __init__(self, url):
        self.url, self.db, self.name = url.rstrip('/'), None, f'the server at {url}'

    def query(self, sql, fmt='CSV'):
        if fmt and not re.search(r'^\s*(CREATE|DROP|INSERT|USE)', sql, re.I):
            sql = f"{sql} FORMAT {fmt}"
        url = self.url + '/' + (f'?database={self.db}' if self.db else '')
        try:
            return urllib.request.urlopen(urllib.request.Request(url, data=sql.encode())).read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(e.read().decode()[:600])

    def use(self, db):
        self.db = db

    def close(self):
        self.db = None
        for db in (DB, API_DB):
            self.query(f"DROP DATABASE IF EXISTS {db}", None)


args = sys.argv[1:]
if args[:1] == ['--server'] and len(args) == 2:
    engine = Server(args[1])
    DB = f"sipas_sqlcheck_{os.getpid()}"
else:
    engine = Chdb()
    DB = 'sipas'
# The read API's statements run over their own rows, in a database of their own.
API_DB = DB + '_api'
q = engine.query

files = sorted(glob.glob(os.path.join(ROOT, 'src/sink/migrations/*.sql')))
names = {r['code_2025']: r['name_2025'] for r in csv.DictReader(open(os.path.join(ROOT, 'config/provinces.csv')))}
codes = sorted(names)


def migrate(db):
    sql = ';\n'.join(open(f).read() for f in files).replace('{db}', db)
    sql = sql.replace('{province_codes}', '[' + ','.join(f"'{c}'" for c in codes) + ']')
    sql = sql.replace('{province_names}', '[' + ','.join(f"'{names[c]}'" for c in codes) + ']')
    sql = sql.replace('{province_values}', ','.join(f"('{c}','{names[c]}')" for c in codes))
    sql = re.sub(r'--[^\n]*', '', sql)
    q(f"CREATE DATABASE IF NOT EXISTS {db}", None)
    q(f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, applied_at DateTime('UTC')) ENGINE = ReplacingMergeTree() ORDER BY version", None)
    for stmt in [x.strip() for x in sql.split(';\n') if x.strip()]:
        stmt = stmt.rstrip(';')
        try:
            q(stmt, None); print('ok:', stmt.split('\n')[0][:70])
        except Exception as e:
            print('ERR', stmt[:80], e); sys.exit(1)


try:
    migrate(DB)
    q(f"INSERT INTO {DB}.survey_submissions (submission_id, answer_criteria, answer_scores) VALUES ('a',['access.1','staff.1'],[5,0]),('a',['access.1','staff.1'],[5,0])", None)
    print(q(f"SELECT count() FROM {DB}.survey_submissions_dedup"))
    print(q(f"SELECT * FROM {DB}.survey_answers"))
    # The latest ranking and nation read satisfaction_latest at its newest day (a stale
    # row of an older day is left out).
    q(f"INSERT INTO {DB}.satisfaction_latest (framework, unit_type, unit_id, province_code, window, as_of, respondents, sipas, ci_n, ranked, factor_ids, factor_values, version) VALUES ('F','province','92','92','30d','2026-10-01',40,99,40,1,['access'],[99],1)", None)
    q(f"INSERT INTO {DB}.satisfaction_latest (framework, unit_type, unit_id, province_code, window, as_of, respondents, sipas, ci_n, ranked, factor_ids, factor_values, version) VALUES ('F','province','01','01','30d','2026-11-20',40,90,40,1,['access','staff'],[88,NULL],1),('F','province','79','79','30d','2026-11-20',50,85,50,1,['access','staff'],[80,90],1),('F','province','48','48','30d','2026-11-20',45,90,45,1,['access'],[91],1),('F','province','31','31','30d','2026-11-20',5,99,5,0,['access'],[99],1)", None)
    ranks = q(f"SELECT province_code, rank FROM {DB}.province_ranking_latest ORDER BY province_code")
    print(q(f"SELECT province_code, province_name, sipas, access, staff, rank FROM {DB}.province_ranking_latest ORDER BY province_code"))
    print(ranks)
    assert ranks.split() == ['"01",1', '"31",\\N', '"48",1', '"79",3'], ranks
    print(q(f"SELECT * FROM {DB}.nation_latest"))

    # The index processor's and materialiser's queries (src/index/materialiser.rs), on a few
    # fact rows, with the types the Rust rows expect.
    q(f"INSERT INTO {DB}.satisfaction_day_counts (framework, province_code, day, agency_id, agency_level, channel, respondent_type, procedure_code, source_partition, source_block, respondents, criterion_ids, criterion_n1, criterion_n2, criterion_n3, criterion_n4, criterion_n5, criterion_missing, expectation_ids, expectation_ticks, version) VALUES ('F','79','2026-11-20','a','commune','online','citizen','',0,0,2,['c1','c2'],[0,0],[0,1],[1,0],[0,1],[1,0],[0,0],['e'],[1],7),('F','79','2026-11-20','a','commune','online','citizen','',1,0,1,['c1','c2'],[1,0],[0,0],[0,0],[0,0],[0,0],[0,1],['e'],[0],3)")
    q(f"INSERT INTO {DB}.hotline_day_counts (province_code, day, agency_id, category, channel, source_partition, source_block, received, responded, responded_on_time, rated, rated_satisfied, reopened, rejected, past_due_delta, response_bins, response_counts, version) VALUES ('79','2026-11-20','','traffic','phone',0,0,1,1,1,0,0,0,0,0,[40,41],[1,-1],5),('79','2026-11-21','','traffic','phone',0,0,0,-1,0,0,0,0,0,1,[41],[1],6)")
    index_queries = [
        (f"SELECT toUInt16(max(day)) AS d FROM {DB}.satisfaction_day_counts", ["20777"]),
        (f"SELECT toUInt16(max(day)) AS d FROM {DB}.hotline_day_counts WHERE received != 0 OR responded != 0 OR rated != 0 OR reopened != 0 OR rejected != 0", ["20778"]),
        (f"SELECT toUInt16(max(as_of)) AS d FROM {DB}.satisfaction_latest WHERE unit_type = 'province'", ["20777"]),
        (f"SELECT framework, province_code, toUInt16(day) AS d, source_partition AS p, maxMerge(top) AS top FROM {DB}.satisfaction_day_prints WHERE day >= toDate('2025-11-20') GROUP BY framework, province_code, d, p ORDER BY p", ['"F","79",20777,0,7', '"F","79",20777,1,3']),
        (f"SELECT '' AS framework, province_code, toUInt16(day) AS d, source_partition AS p, maxMerge(top) AS top FROM {DB}.hotline_day_prints WHERE day >= toDate('2025-11-20') GROUP BY province_code, d, p ORDER BY d", ['"","79",20777,0,5', '"","79",20778,0,6']),
        (f"SELECT province_code, toUInt16(day) AS d, sum(respondents) AS respondents, sumForEach(criterion_n1) AS n1, sumForEach(criterion_n2) AS n2, sumForEach(criterion_n3) AS n3, sumForEach(criterion_n4) AS n4, sumForEach(criterion_n5) AS n5, sumForEach(criterion_missing) AS missing, sumForEach(expectation_ticks) AS ticks FROM {DB}.satisfaction_day_counts FINAL WHERE framework = 'F' AND has(['79'], province_code) AND day >= toDate('2025-11-20') AND day <= toDate('2026-11-20') GROUP BY province_code, d", ['"79",20777,3,"[1,0]","[0,1]","[1,0]","[0,1]","[1,0]","[0,1]","[1]"']),
        (f"SELECT province_code, category, toUInt16(day) AS d, sum(received) AS received, sum(responded) AS responded, sum(responded_on_time) AS responded_on_time, sum(rated) AS rated, sum(rated_satisfied) AS rated_satisfied, sum(reopened) AS reopened, sum(rejected) AS rejected, sum(past_due_delta) AS past_due_delta, tupleElement(sumMap(response_bins, response_counts), 1) AS bins, arrayMap(x -> toInt64(x), tupleElement(sumMap(response_bins, response_counts), 2)) AS bin_counts FROM {DB}.hotline_day_counts FINAL WHERE has(['79'], province_code) AND day >= toDate('2025-11-20') AND day <= toDate('2026-11-21') GROUP BY province_code, category, d ORDER BY d", None),
        (f"SELECT province_code, category, sum(past_due_delta) AS base FROM {DB}.hotline_day_counts FINAL WHERE has(['79'], province_code) AND day < toDate('2026-11-21') GROUP BY province_code, category", ['"79","traffic",0']),
        (f"SELECT province_code, toUInt16(day) AS d, sum(respondents) AS respondents FROM {DB}.satisfaction_day_totals GROUP BY province_code, d", ['"79",20777,3']),
        (f"SELECT channel, sum(received) AS received FROM {DB}.hotline_day_totals GROUP BY channel", ['"phone",1']),
        (f"SELECT framework, window, as_of, provinces, sipas_mean_of_provinces, ci_low, ci_high FROM {DB}.nation_daily ORDER BY as_of", None),
    ]
    for stmt, want in index_queries:
        try:
            got = q(stmt).split()
            print('ok:', stmt[:70], '->', ' '.join(got)[:100])
        except Exception as e:
            print('ERR', stmt[:80], e); sys.exit(1)
        if want is not None:
            assert got == want, (stmt, got, want)
    # The histogram sums keep signed counts, with their type as the Rust row reads it (Int64).
    types = q(f"SELECT toTypeName(arrayMap(x -> toInt64(x), tupleElement(sumMap(response_bins, response_counts), 2))) FROM {DB}.hotline_day_counts").strip()
    assert types == '"Array(Int64)"', types
    print(f"index queries run on {engine.name}")


    # The read API's statements (scripts/serve-queries.sql), over rows that make every one
    # of them return something.
    migrate(API_DB)
    fixtures = [
        "INSERT INTO satisfaction_daily (framework, unit_type, unit_id, province_code, window, as_of, respondents, sipas, ci_n, ranked, factor_ids, factor_values, version) VALUES ('F','province','79','79','30d','2026-10-21',44,81,44,1,['access'],[80],1),('F','province','79','79','month','2026-11-20',30,80,30,1,['access'],[80],1),('F','province','01','01','30d','2026-11-20',40,90,40,1,['access','staff'],[88,NULL],1),('F','province','79','79','30d','2026-11-20',50,85,50,1,['access','staff'],[80,90],1)",
        "INSERT INTO satisfaction_latest (framework, unit_type, unit_id, province_code, window, as_of, respondents, sipas, ci_n, ranked, factor_ids, factor_values, version) VALUES ('F','province','79','79','30d','2026-11-20',50,85,50,1,['access','staff'],[80,90],1)",
        "INSERT INTO satisfaction_day_counts (framework, province_code, day, agency_id, agency_level, channel, respondent_type, procedure_code, source_partition, source_block, respondents, criterion_ids, criterion_n1, criterion_n2, criterion_n3, criterion_n4, criterion_n5, criterion_missing, expectation_ids, expectation_ticks, version) VALUES ('F','79','2026-11-20','a','province','online','citizen','P1',0,0,2,['access.1','staff.1'],[0,1],[0,0],[0,0],[1,0],[1,0],[0,1],['expect.x'],[1],1),('F','79','2026-11-20','a','province','online','citizen','P1',0,0,9,['access.1','staff.1'],[9,9],[0,0],[0,0],[0,0],[0,0],[0,0],['expect.x'],[0],0)",
        "INSERT INTO hotline_day_counts (province_code, day, agency_id, category, channel, source_partition, source_block, received, responded, responded_on_time, rated, rated_satisfied, reopened, rejected, past_due_delta, response_bins, response_counts, version) VALUES ('79','2026-11-20','a','water','zalo',0,0,3,2,1,1,1,0,0,1,[3,7],[1,1],1)",
        "INSERT INTO hotline_kpi_latest (unit_type, unit_id, province_code, window, as_of, received, version) VALUES ('province','79','79','30d','2026-11-20',3,1),('category','79/water','79','30d','2026-11-20',3,1)",
        "INSERT INTO hotline_kpi_daily (unit_type, unit_id, province_code, window, as_of, received, version) VALUES ('province','79','79','30d','2026-11-20',3,1),('category','79/water','79','30d','2026-11-20',3,1)",
    ]
    engine.use(API_DB)
    for f in fixtures:
        q(f, None)
    text = open(os.path.join(ROOT, 'scripts/serve-queries.sql')).read()
    checked = 0
    for block in text.split('\n-- query: ')[1:]:
        lines = block.strip().split('\n')
        name, rest = lines[0], lines[1:]
        types = None
        if rest and rest[0].startswith('-- types: '):
            types = [t.strip().split(' ', 1) for t in rest[0][len('-- types: '):].split(', ')]
            rest = rest[1:]
        stmt = '\n'.join(rest).strip().rstrip(';')
        try:
            rows = q(stmt).strip()
            assert rows, f"{name}: no row from the fixtures"
            if types:
                got = q(f"SELECT {', '.join(f'toTypeName({c})' for c, _ in types)} FROM ({stmt}) LIMIT 1")
                got = [g.strip('"') for g in next(csv.reader([got.strip()]))]
                want = [t for _, t in types]
                assert got == want, f"{name}: types {got}, the row decodes {want}"
        except Exception as e:
            print('ERR', name, '\n   ', stmt[:200], '\n   ', e); sys.exit(1)
        checked += 1
        print('ok:', name, '->', rows.split('\n')[0][:80])
    assert checked >= 19, checked
    # FINAL and the sum over sources: the agency's day holds the version-1 row only.
    day_sums = q("SELECT respondents, n1, n4 FROM (" + [b for b in text.split('\n-- query: ') if b.startswith("units: an agency's day sums")][0].split('\n', 2)[2].strip().rstrip(';') + ")")
    assert day_sums.strip() == '2,"[0,1]","[1,0]"', day_sums
    print(f"{checked} read API statements ran on {engine.name}")
finally:
    engine.close()
