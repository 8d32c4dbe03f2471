//! Helpers for the `sipas serve` tests: a serve child process, simulated data through the
//! real pipeline, and a small HTTP client.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::*;

/// A `sipas serve` child on a free port, killed when dropped.
pub struct Serve {
    pub child: Child,
    pub port: u16,
}

impl Serve {
    /// Starts `sipas serve` with the test's configuration and waits for its health endpoint.
    pub async fn start(env: &TestEnv, refresh_interval_ms: u64) -> Self {
        let port = free_port();
        let log =
            std::fs::File::create(log_path(&format!("{}-serve-{port}.log", env.name))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sipas"))
            .arg("serve")
            .current_dir(root())
            .env_clear()
            .envs(env.child_env(free_port()))
            .env("SIPAS__SERVE__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "SIPAS__SERVE__REFRESH_INTERVAL_MS",
                refresh_interval_ms.to_string(),
            )
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sipas serve starts");
        let serve = Self { child, port };
        wait_for("sipas serve to answer", || async {
            serve.get("/api/v1/health", &[]).await.status != 0
        })
        .await;
        serve
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// GET; status 0 when the connection failed.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        get(&self.url(path), headers).await
    }

    pub async fn json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path, &[]).await;
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Sum of a metric of this process.
    pub async fn metric(&self, prefix: &str) -> f64 {
        metric_sum(&self.get("/metrics", &[]).await.text(), prefix)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match client.request(request.body(Empty::new()).unwrap()).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default();
            HttpResponse {
                status,
                headers,
                body,
            }
        }
        Err(_) => HttpResponse {
            status: 0,
            headers: hyper::HeaderMap::new(),
            body: Vec::new(),
        },
    }
}

/// Produces `count` simulated messages spread over the last `days` days, starts `sipas run`
/// and waits until the index processor folded all of them and materialised the newest
/// day. Returns the pipeline.
pub async fn fill_with_simulation(env: &TestEnv, count: u64, days: f64, seed: u64) -> Pipeline {
    fill_with(env, count, days, seed, &[]).await
}

/// [`fill_with_simulation`] with `extra` surveys produced beside the simulated messages.
pub async fn fill_with(
    env: &TestEnv,
    count: u64,
    days: f64,
    seed: u64,
    extra: &[sipas_stream::contract::raw::RawSurvey],
) -> Pipeline {
    use sipas_stream::domain::{FrameworkCatalog, ProvinceRegistry};
    use sipas_stream::simulate::{sink, SimSettings, Simulator};
    let frameworks = FrameworkCatalog::load_dir(&env.config.contract.frameworks_dir).unwrap();
    let framework = frameworks.get("BNV-2640-2017").unwrap().clone();
    let now = sipas_stream::domain::time::unix_now();
    let settings = SimSettings {
        seed,
        start_unix: now - (days * 86_400.0) as i64,
        step_seconds: days * 86_400.0 / count as f64,
        ..Default::default()
    };
    let mut simulator = Simulator::new(settings, &ProvinceRegistry::builtin(), framework);
    let k = &env.config.kafka;
    let producer = env.producer();
    let tally = sink::to_kafka(
        &mut simulator,
        &producer,
        k.input_topics(),
        count,
        0.0,
        |_| {},
        || false,
    )
    .await
    .unwrap();
    for survey in extra {
        let key = survey.province_code.clone().unwrap_or_default();
        let payload = sipas_stream::simulate::generator::survey_json(survey);
        env.produce(&producer, &k.surveys_topic, &key, &payload)
            .await;
    }
    let pipeline = Pipeline::start(env);
    let total = (tally.total() + extra.len() as u64) as f64;
    wait_for("the index processor to fold the simulated log", || async {
        pipeline.index_position().await == total
    })
    .await;
    wait_materialised(env).await;
    pipeline
}

/// Waits until the materialised 30-day values of the newest day hold every fact of that
/// window (surveys and hotline), so that the API and the tables answer alike.
pub async fn wait_materialised(env: &TestEnv) {
    wait_for("the index to materialise the newest day", || async {
        let counted = |sql: &'static str| env.count(sql);
        let survey_facts = counted(
            "SELECT toUInt64(sum(respondents)) AS n FROM satisfaction_day_counts FINAL \
             WHERE day > (SELECT max(day) FROM satisfaction_day_counts) - 30",
        )
        .await;
        let survey_latest = counted(
            "SELECT toUInt64(sum(respondents)) AS n FROM satisfaction_latest FINAL \
             WHERE unit_type = 'province' AND window = '30d'",
        )
        .await;
        // The hotline's newest day is its newest day with events (a past-due toggle of a
        // deadline may lie ahead).
        let hotline_facts = counted(
            "SELECT toUInt64(greatest(sum(received), 0)) AS n FROM hotline_day_counts FINAL \
             WHERE day > (SELECT max(day) FROM hotline_day_counts WHERE received != 0 \
             OR responded != 0 OR rated != 0 OR reopened != 0 OR rejected != 0) - 30",
        )
        .await;
        let hotline_latest = counted(
            "SELECT toUInt64(sum(received)) AS n FROM hotline_kpi_latest FINAL \
             WHERE unit_type = 'province' AND window = '30d'",
        )
        .await;
        survey_facts > 0 && survey_facts == survey_latest && hotline_facts == hotline_latest
    })
    .await;
}

/// A survey of BNV-2640-2017 by a citizen to a province-level agency, with `answers`
/// (criterion id, answer), submitted at `submitted_at` (RFC 3339).
pub fn bnv_survey(
    id: &str,
    province: &str,
    agency: &str,
    channel: &str,
    submitted_at: String,
    answers: Vec<(String, sipas_stream::contract::raw::RawAnswer)>,
) -> sipas_stream::contract::raw::RawSurvey {
    sipas_stream::contract::raw::RawSurvey {
        submission_id: Some(id.to_owned()),
        framework: Some("BNV-2640-2017".into()),
        submitted_at: Some(submitted_at),
        province_code: Some(province.to_owned()),
        province_code_system: None,
        agency_id: Some(agency.to_owned()),
        agency_level: Some("province".into()),
        procedure_code: None,
        channel: Some(channel.to_owned()),
        respondent_type: Some("citizen".into()),
        answers: Some(answers),
        expectations: None,
    }
}

/// A survey answering every criterion of BNV-2640-2017 (as the framework file lists them)
/// with `score`, submitted at `unix`.
pub fn survey(
    env: &TestEnv,
    id: &str,
    province: &str,
    agency: &str,
    channel: &str,
    score: i64,
    unix: i64,
) -> sipas_stream::contract::raw::RawSurvey {
    use sipas_stream::contract::raw::RawAnswer;
    let frameworks =
        sipas_stream::domain::FrameworkCatalog::load_dir(&env.config.contract.frameworks_dir)
            .unwrap();
    let criteria = frameworks
        .get("BNV-2640-2017")
        .unwrap()
        .criterion_ids()
        .map(|c| (c.to_owned(), RawAnswer::Integer(score)))
        .collect();
    let at = sipas_stream::domain::time::format_vietnam(unix);
    bnv_survey(id, province, agency, channel, at, criteria)
}

/// Runs `program args…` to completion; panics (with its output) if it outlives `PATIENCE`.
/// Runs in the temporary directory so that tools' caches stay out of the working tree.
/// Output goes through files: a child writing more than a pipe holds would otherwise
/// block until the deadline.
pub fn run_to_end(program: &str, args: &[String]) -> std::process::Output {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = std::path::Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = log_path(&format!("{name}-{}-{n}.stdout", std::process::id()));
    let err = log_path(&format!("{name}-{}-{n}.stderr", std::process::id()));
    let mut child = Command::new(program)
        .args(args)
        .current_dir(std::env::temp_dir())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} does not start ({e}); ./scripts/test.sh installs it")
        });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!(
                "{program} did not finish within {PATIENCE:?}:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::process::Output {
        status,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    };
    let _ = (std::fs::remove_file(&out), std::fs::remove_file(&err));
    output
}

/// Runs schemathesis (`SIPAS_TEST_SCHEMATHESIS`, installed by `scripts/test-tools.sh`)
/// against the OpenAPI document at `document`: every check, deterministic generation, the
/// examples, coverage and fuzzing phases, then `extra` (e.g. `-H`, `--exclude-path`).
/// Panics with its report unless it found no problem.
pub fn schemathesis(config: Option<&std::path::Path>, document: &str, extra: &[String]) {
    let st = std::env::var("SIPAS_TEST_SCHEMATHESIS")
        .expect("SIPAS_TEST_SCHEMATHESIS: run ./scripts/test.sh, which installs schemathesis");
    let mut args: Vec<String> = Vec::new();
    if let Some(config) = config {
        args.extend(["--config-file".into(), config.display().to_string()]);
    }
    args.extend(
        [
            "run",
            document,
            "--checks",
            "all",
            "--max-examples",
            "30",
            "--generation-deterministic",
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "2",
            "--no-color",
        ]
        .map(String::from),
    );
    args.extend(extra.iter().cloned());
    let output = run_to_end(&st, &args);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
    assert!(report.contains("passed"), "{report}");
}
