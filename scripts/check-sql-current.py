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
