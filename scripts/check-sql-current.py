#!/usr/bin/env python3
# Checks that the ClickHouse migrations parse and run on the current ClickHouse engine
# (embedded via the chdb-core package: pip install chdb-core). The test suite checks them
# on the locally installed 18.16 server.
import re, sys, tempfile
from chdb import session
s = session.Session(tempfile.mkdtemp())
import glob, os
files = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src/sink/migrations/*.sql')))
import csv
names = {r['code_2025']: r['name_2025'] for r in csv.DictReader(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'config/provinces.csv')))}
codes = sorted(names)
sql = ';\n'.join(open(f).read() for f in files).replace('{db}', 'sipas')
sql = sql.replace('{province_codes}', '[' + ','.join(f"'{c}'" for c in codes) + ']')
sql = sql.replace('{province_names}', '[' + ','.join(f"'{names[c]}'" for c in codes) + ']')
sql = sql.replace('{province_values}', ','.join(f"('{c}','{names[c]}')" for c in codes))
sql = re.sub(r'--[^\n]*', '', sql)
s.query("CREATE DATABASE IF NOT EXISTS sipas")
s.query("CREATE TABLE IF NOT EXISTS sipas.schema_migrations (version UInt32, name String, applied_at DateTime('UTC')) ENGINE = ReplacingMergeTree() ORDER BY version")
for stmt in [x.strip() for x in sql.split(';\n') if x.strip()]:
    stmt = stmt.rstrip(';')
    try:
        s.query(stmt); print('ok:', stmt.split('\n')[0][:70])
    except Exception as e:
        print('ERR', stmt[:80], e); sys.exit(1)
s.query("INSERT INTO sipas.survey_submissions (submission_id, answer_criteria, answer_scores) VALUES ('a',['access.1','staff.1'],[5,0]),('a',['access.1','staff.1'],[5,0])")
print(s.query("SELECT count() FROM sipas.survey_submissions_dedup", "CSV"))
print(s.query("SELECT * FROM sipas.survey_answers", "CSV"))
s.query("INSERT INTO sipas.satisfaction_daily (framework, unit_type, unit_id, province_code, window, as_of, respondents, sipas, ranked, factor_ids, factor_values, version) VALUES ('F','province','01','01','30d','2026-11-20',40,90,1,['access','staff'],[88,NULL],1),('F','province','79','79','30d','2026-11-20',50,85,1,['access','staff'],[80,90],1),('F','province','48','48','30d','2026-11-20',45,90,1,['access'],[91],1),('F','province','31','31','30d','2026-11-20',5,99,0,['access'],[99],1)")
ranks = str(s.query("SELECT province_code, rank FROM sipas.province_ranking_latest ORDER BY province_code", "CSV"))
print(s.query("SELECT province_code, province_name, sipas, access, staff, rank FROM sipas.province_ranking_latest ORDER BY province_code", "CSV"))
print(ranks)
assert ranks.split() == ['"01",1', '"31",\\N', '"48",1', '"79",3'], ranks
print(s.query("SELECT * FROM sipas.nation_latest", "CSV"))

# The read API's queries (src/serve/api.rs), with `?fields` expanded and `?` bound as the
# clickhouse crate binds them (quoted strings, arrays). Keep in sync with api.rs.
ranking_fields = "province_code, province_name, period, as_of, sipas, access, procedure, staff, result, feedback, respondents, ci_low, ci_high, ranked, rank"
api_queries = [
    f"SELECT {ranking_fields} FROM sipas.province_ranking_latest WHERE framework = 'F' AND window = '30d' ORDER BY isNull(rank), rank, province_code",
    f"SELECT {ranking_fields} FROM sipas.province_ranking_daily WHERE framework = 'F' AND window = '30d' AND as_of = toDate('2026-11-20') ORDER BY isNull(rank), rank, province_code",
    "SELECT province_code, as_of, sipas, rank FROM sipas.province_ranking_daily WHERE framework = 'F' AND window = '30d' AND has(['2026-10-21','2026-10-20'], toString(as_of))",
    "SELECT unit_type, unit_id, province_code, period, as_of, window_start, respondents, sipas, ci_low, ci_high, ranked, min_sample, factor_ids, factor_values, criterion_ids, criterion_values, criterion_valid, criterion_satisfied, criterion_missing, expectation_ids, expectation_shares FROM sipas.satisfaction_latest FINAL WHERE framework = 'F' AND unit_type = 'province' AND unit_id = '79' AND window = '30d'",
    "SELECT as_of, respondents, sipas, ci_low, ci_high, ranked, factor_ids, factor_values FROM sipas.satisfaction_daily FINAL WHERE framework = 'F' AND unit_type = 'province' AND unit_id = '79' AND window = '30d' AND as_of >= toDate('2026-08-23') AND as_of <= toDate('2026-11-20') ORDER BY as_of",
    "SELECT unit_type, unit_id, province_code, period, as_of, window_start, received, responded, responded_on_time, on_time_rate, median_response_hours, rated, satisfaction_rate, reopened, reopen_rate, rejected, open_past_due FROM sipas.hotline_kpi_latest FINAL WHERE unit_type = 'category' AND window = '30d' AND province_code = '79' ORDER BY received DESC, unit_id",
]
s.query("INSERT INTO sipas.satisfaction_daily (framework, unit_type, unit_id, province_code, window, as_of, respondents, sipas, ranked, factor_ids, factor_values, version) VALUES ('F','province','79','79','30d','2026-10-21',44,81,1,['access'],[80],1)")
for q in api_queries:
    try:
        print('ok:', q[:70], '->', str(s.query(q, "CSV")).strip()[:80])
    except Exception as e:
        print('ERR', q[:80], e); sys.exit(1)
previous = str(s.query(api_queries[2], "CSV")).split()
assert previous == ['"79","2026-10-21",81,1'], previous

# The index processor's and materialiser's queries (src/index/materialiser.rs), on a few
# fact rows, with the types the Rust rows expect.
s.query("INSERT INTO sipas.satisfaction_day_counts (framework, province_code, day, agency_id, agency_level, channel, respondent_type, procedure_code, source_partition, source_block, respondents, criterion_ids, criterion_n1, criterion_n2, criterion_n3, criterion_n4, criterion_n5, criterion_missing, expectation_ids, expectation_ticks, version) VALUES ('F','79','2026-11-20','a','commune','online','citizen','',0,0,2,['c1','c2'],[0,0],[0,1],[1,0],[0,1],[1,0],[0,0],['e'],[1],7),('F','79','2026-11-20','a','commune','online','citizen','',1,0,1,['c1','c2'],[1,0],[0,0],[0,0],[0,0],[0,0],[0,1],['e'],[0],3)")
s.query("INSERT INTO sipas.hotline_day_counts (province_code, day, agency_id, category, channel, source_partition, source_block, received, responded, responded_on_time, rated, rated_satisfied, reopened, rejected, past_due_delta, response_bins, response_counts, version) VALUES ('79','2026-11-20','','traffic','phone',0,0,1,1,1,0,0,0,0,0,[40,41],[1,-1],5),('79','2026-11-21','','traffic','phone',0,0,0,-1,0,0,0,0,0,1,[41],[1],6)")
index_queries = [
    ("SELECT toUInt16(max(day)) AS d FROM sipas.satisfaction_day_counts", ["20777"]),
    ("SELECT toUInt16(max(day)) AS d FROM sipas.hotline_day_counts WHERE received != 0 OR responded != 0 OR rated != 0 OR reopened != 0 OR rejected != 0", ["20778"]),
    ("SELECT toUInt16(max(as_of)) AS d FROM sipas.satisfaction_daily WHERE unit_type = 'province'", ["20777"]),
    ("SELECT framework, province_code, toUInt16(day) AS d, count() AS rows, sum(version) AS versions, uniqExact(source_partition) AS partitions FROM sipas.satisfaction_day_counts WHERE day >= toDate('2025-11-20') GROUP BY framework, province_code, d", ['"F","79",20777,2,10,2']),
    ("SELECT '' AS framework, province_code, toUInt16(day) AS d, count() AS rows, sum(version) AS versions, uniqExact(source_partition) AS partitions FROM sipas.hotline_day_counts WHERE day >= toDate('2025-11-20') GROUP BY province_code, d ORDER BY d", ['"","79",20777,1,5,1', '"","79",20778,1,6,1']),
    ("SELECT province_code, toUInt16(day) AS d, sum(respondents) AS respondents, sumForEach(criterion_n1) AS n1, sumForEach(criterion_n2) AS n2, sumForEach(criterion_n3) AS n3, sumForEach(criterion_n4) AS n4, sumForEach(criterion_n5) AS n5, sumForEach(criterion_missing) AS missing, sumForEach(expectation_ticks) AS ticks FROM sipas.satisfaction_day_counts FINAL WHERE framework = 'F' AND has(['79'], province_code) AND day >= toDate('2025-11-20') AND day <= toDate('2026-11-20') GROUP BY province_code, d", ['"79",20777,3,"[1,0]","[0,1]","[1,0]","[0,1]","[1,0]","[0,1]","[1]"']),
    ("SELECT province_code, category, toUInt16(day) AS d, sum(received) AS received, sum(responded) AS responded, sum(responded_on_time) AS responded_on_time, sum(rated) AS rated, sum(rated_satisfied) AS rated_satisfied, sum(reopened) AS reopened, sum(rejected) AS rejected, sum(past_due_delta) AS past_due_delta, tupleElement(sumMap(response_bins, response_counts), 1) AS bins, arrayMap(x -> toInt64(x), tupleElement(sumMap(response_bins, response_counts), 2)) AS bin_counts FROM sipas.hotline_day_counts FINAL WHERE has(['79'], province_code) AND day >= toDate('2025-11-20') AND day <= toDate('2026-11-21') GROUP BY province_code, category, d ORDER BY d", None),
    ("SELECT province_code, category, sum(past_due_delta) AS base FROM sipas.hotline_day_counts FINAL WHERE has(['79'], province_code) AND day < toDate('2026-11-21') GROUP BY province_code, category", ['"79","traffic",0']),
    ("SELECT province_code, toUInt16(day) AS d, sum(respondents) AS respondents FROM sipas.satisfaction_day_totals GROUP BY province_code, d", ['"79",20777,3']),
    ("SELECT channel, sum(received) AS received FROM sipas.hotline_day_totals GROUP BY channel", ['"phone",1']),
    ("SELECT framework, window, as_of, provinces, sipas_mean_of_provinces, ci_low, ci_high FROM sipas.nation_daily ORDER BY as_of", None),
]
for q, want in index_queries:
    try:
        got = str(s.query(q, "CSV")).split()
        print('ok:', q[:70], '->', ' '.join(got)[:100])
    except Exception as e:
        print('ERR', q[:80], e); sys.exit(1)
    if want is not None:
        assert got == want, (q, got, want)
# The histogram sums keep signed counts, with their type as the Rust row reads it (Int64).
types = str(s.query("SELECT toTypeName(arrayMap(x -> toInt64(x), tupleElement(sumMap(response_bins, response_counts), 2))) FROM sipas.hotline_day_counts", "CSV")).strip()
assert types == '"Array(Int64)"', types
print("index queries run on current ClickHouse")
