#!/usr/bin/env python3
# Checks that the ClickHouse migrations parse and run on the current ClickHouse engine
# (embedded via the chdb-core package: pip install chdb-core). The test suite checks them
# on the locally installed 18.16 server.
import re, sys, tempfile
from chdb import session
s = session.Session(tempfile.mkdtemp())
sql = open(__import__('os').path.join(__import__('os').path.dirname(__file__), '..', 'src/sink/migrations/0001_raw_events.sql')).read().replace('{db}', 'sipas')
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
