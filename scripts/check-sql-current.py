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
s.query("INSERT INTO sipas.satisfaction_latest (framework, unit_type, unit_id, province_code, window, as_of, respondents, sipas, ranked, factor_ids, factor_values, version) VALUES ('F','province','01','01','30d','2026-11-20',40,90,1,['access','staff'],[88,NULL],1),('F','province','79','79','30d','2026-11-20',50,85,1,['access','staff'],[80,90],1),('F','province','48','48','30d','2026-11-20',45,90,1,['access'],[91],1),('F','province','31','31','30d','2026-11-20',5,99,0,['access'],[99],1)")
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
