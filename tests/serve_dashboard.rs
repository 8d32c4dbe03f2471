//! The dashboard in a real headless Chromium (Debian's `chromium`) against a running stack
//! with simulated data: the ranking rows and the nation it renders equal the API's, the
//! province page (with its agency ranking) and hotline panel are filled, the English toggle
//! works, and a screenshot is saved as a test artefact (target/test-artifacts/dashboard.png).
mod support;

use std::collections::BTreeMap;

use support::serve::*;
use support::*;

/// Flags for a headless, offline-friendly, throw-away Chromium.
fn chromium_args(profile: &std::path::Path, extra: &[String], url: String) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        // Virtual time runs the page's timers and fetches, then the DOM is taken.
        "--virtual-time-budget=15000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.extend_from_slice(extra);
    args.push(url);
    args
}

/// Attributes of every `<tag …>` start tag that has `required` among its attributes.
fn elements(html: &str, tag: &str, required: &str) -> Vec<BTreeMap<String, String>> {
    let mut found = Vec::new();
    for chunk in html.split(&format!("<{tag} ")).skip(1) {
        let Some(end) = chunk.find('>') else { continue };
        let mut attributes = BTreeMap::new();
        let mut rest = &chunk[..end];
        while let Some(eq) = rest.find("=\"") {
            let name = rest[..eq].trim().to_owned();
            let after = &rest[eq + 2..];
            let Some(close) = after.find('"') else { break };
            attributes.insert(
                name,
                after[..close].replace("&amp;", "&").replace("&quot;", "\""),
            );
            rest = &after[close + 1..];
        }
        if attributes.contains_key(required) {
            found.push(attributes);
        }
    }
    found
}

fn same(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        (None, None) => true,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn dashboard_in_headless_chromium_shows_the_api_ranking() {
    let chromium = std::env::var("SIPAS_TEST_CHROMIUM")
        .expect("SIPAS_TEST_CHROMIUM: run ./scripts/test.sh, which installs chromium");
    let env = TestEnv::new("dashboard").await;
    let pipeline = fill_with_simulation(&env, 3_000, 40.0, 5).await;
    let serve = Serve::start(&env, 1_000).await;
    let profile = std::env::temp_dir().join(format!(
        "sipas-chromium-{}-{}",
        std::process::id(),
        serve.port
    ));

    let url = serve.url("/?window=30d&province=79");
    let output = run_to_end(
        &chromium,
        &chromium_args(&profile, &["--dump-dom".into()], url.clone()),
    );
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        dom.contains("data-ready=\"true\""),
        "the page loaded its data:\n{dom}"
    );

    // Ranking rows: same provinces, order, ranks and values as the API.
    let api = serve.json("/api/v1/rankings?window=30d").await;
    let expected = api["provinces"].as_array().unwrap();
    let rows = elements(&dom, "tr", "data-province");
    assert!(expected.len() >= 30, "{}", expected.len());
    assert_eq!(rows.len(), expected.len(), "one table row per province");
    for (row, want) in rows.iter().zip(expected) {
        let code = want["province_code"].as_str().unwrap();
        assert_eq!(row["data-province"], code);
        let rank = want["rank"]
            .as_u64()
            .map(|r| r.to_string())
            .unwrap_or_default();
        assert_eq!(row["data-rank"], rank, "{code}");
        assert!(
            same(row["data-sipas"].parse().ok(), want["sipas"].as_f64()),
            "{code}: {} vs {}",
            row["data-sipas"],
            want["sipas"]
        );
        assert_eq!(
            row["data-respondents"],
            want["respondents"].to_string(),
            "{code}"
        );
        assert_eq!(row["data-ranked"], want["ranked"].to_string(), "{code}");
        assert!(
            dom.contains(want["province_name"].as_str().unwrap()),
            "{code}'s name is shown"
        );
    }
    // The nation: the API's mean and interval, above the ranking.
    let nation = elements(&dom, "p", "data-sipas");
    assert_eq!(nation.len(), 1, "one nation line");
    let want = &api["nation"];
    assert!(
        same(nation[0]["data-sipas"].parse().ok(), want["sipas"].as_f64()),
        "{} vs {}",
        nation[0]["data-sipas"],
        want["sipas"]
    );
    assert!(same(
        nation[0]["data-ci-low"].parse().ok(),
        want["ci_low"].as_f64()
    ));
    assert!(same(
        nation[0]["data-ci-high"].parse().ok(),
        want["ci_high"].as_f64()
    ));
    assert_eq!(nation[0]["data-provinces"], want["provinces"].to_string());
    assert!(dom.contains("Cả nước"), "the nation is labelled");

    // The province page: 22 criteria, the name, and a hotline row per category.
    assert!(
        dom.contains("Thành phố Hồ Chí Minh — SIPAS"),
        "the province page is open"
    );
    assert_eq!(elements(&dom, "tr", "data-criterion").len(), 22);
    let kpis = serve
        .json("/api/v1/hotline/kpis?province=79&by=category&window=30d")
        .await;
    assert_eq!(
        elements(&dom, "tr", "data-unit").len(),
        kpis["units"].as_array().unwrap().len()
    );
    // The province's agencies, as the agency ranking lists them.
    let agencies = serve.json("/api/v1/provinces/79/agencies?window=30d").await;
    let listed = agencies["agencies"].as_array().unwrap();
    let rows = elements(&dom, "tr", "data-agency");
    assert!(!listed.is_empty());
    assert_eq!(rows.len(), listed.len(), "one row per agency");
    for (row, want) in rows.iter().zip(listed) {
        assert_eq!(row["data-agency"], want["agency_id"].as_str().unwrap());
        let rank = want["rank"]
            .as_u64()
            .map(|r| r.to_string())
            .unwrap_or_default();
        assert_eq!(row["data-rank"], rank);
    }
    assert!(
        dom.contains("Xếp hạng các tỉnh, thành phố"),
        "Vietnamese labels by default"
    );

    // English labels on request.
    let english = run_to_end(
        &chromium,
        &chromium_args(
            &profile,
            &["--dump-dom".into()],
            serve.url("/?window=30d&lang=en"),
        ),
    );
    let english = String::from_utf8_lossy(&english.stdout);
    assert!(
        english.contains("Province ranking")
            && english.contains("Data as of")
            && english.contains("Nation"),
        "{english}"
    );

    // The screenshot artefact.
    let artefact = root().join("target/test-artifacts/dashboard.png");
    std::fs::create_dir_all(artefact.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&artefact);
    let shot = run_to_end(
        &chromium,
        &chromium_args(
            &profile,
            &[
                format!("--screenshot={}", artefact.display()),
                "--window-size=1400,2400".into(),
                "--hide-scrollbars".into(),
            ],
            url,
        ),
    );
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = std::fs::read(&artefact).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");
    println!("dashboard screenshot: {}", artefact.display());
    let _ = std::fs::remove_dir_all(&profile);
    drop(serve);
    drop(pipeline);
}
