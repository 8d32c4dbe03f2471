//! Hotline KPIs through the broker, the pipeline and ClickHouse, on hand-computed tickets
//! whose events arrive out of order, across day boundaries: every definition (first
//! response, the deadline in force at it, latest rating, reopen rate ≤ 100 %, rejected,
//! open past due as of each day's end, category from the earliest `received`).
mod support;

use support::*;

/// Day `d` of the scenario (2026-11-02 + d) at `hh:mm`, Vietnam time.
fn at(d: u32, hh: u32, mm: u32) -> String {
    format!("2026-11-{:02}T{hh:02}:{mm:02}:00+07:00", 2 + d)
}

fn event(id: &str, ticket: &str, kind: &str, when: String, extra: &[(&str, String)]) -> Vec<u8> {
    let mut object = serde_json::json!({
        "event_id": id,
        "ticket_id": ticket,
        "type": kind,
        "occurred_at": when,
        "province_code": "79",
    });
    for (key, value) in extra {
        object[*key] = serde_json::Value::String(value.clone());
    }
    serde_json::to_vec(&object).unwrap()
}

#[derive(clickhouse::Row, serde::Deserialize, Debug, PartialEq)]
struct Kpi {
    as_of: u16,
    received: u32,
    responded: u32,
    responded_on_time: u32,
    on_time_rate: Option<f64>,
    rated: u32,
    satisfaction_rate: Option<f64>,
    reopened: u32,
    reopen_rate: Option<f64>,
    rejected: u32,
    open_past_due: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn hotline_definitions_hold_whatever_the_arrival_order() {
    let env = TestEnv::new("hotline").await;
    let s = |v: &str| v.to_owned();
    let events = vec![
        // T1: answered on time (day 1 ≤ due day 2), rated satisfied, closed.
        event(
            "t1-rated",
            "T1",
            "rated",
            at(1, 12, 0),
            &[("rating", s("satisfied"))],
        ),
        event("t1-responded", "T1", "responded", at(1, 10, 0), &[]),
        // T2: the response that counts (day 3 09:00, late for its day-1 deadline) arrives
        // last; a second response, a reopen, and a re-rating (the latest, satisfied, wins).
        event("t2-responded-2", "T2", "responded", at(3, 15, 0), &[]),
        event(
            "t1-received",
            "T1",
            "received",
            at(0, 8, 0),
            &[
                ("category", s("traffic")),
                ("channel", s("phone")),
                ("due_at", at(2, 8, 0)),
            ],
        ),
        event(
            "t1-forwarded",
            "T1",
            "forwarded",
            at(0, 9, 0),
            &[("agency_id", s("79-sgtvt")), ("due_at", at(2, 8, 0))],
        ),
        event(
            "t2-received",
            "T2",
            "received",
            at(0, 10, 0),
            &[
                ("category", s("environment")),
                ("channel", s("app")),
                ("due_at", at(1, 10, 0)),
            ],
        ),
        event("t2-reopened", "T2", "reopened", at(3, 12, 0), &[]),
        event(
            "t2-rated-1",
            "T2",
            "rated",
            at(4, 10, 0),
            &[("rating", s("not_satisfied"))],
        ),
        // T3: the deadline is extended on day 1 to day 5 08:00; never answered.
        event(
            "t3-forwarded",
            "T3",
            "forwarded",
            at(1, 9, 0),
            &[("agency_id", s("79-sxd")), ("due_at", at(5, 8, 0))],
        ),
        event(
            "t2-rated-2",
            "T2",
            "rated",
            at(4, 18, 0),
            &[("rating", s("satisfied"))],
        ),
        event("t1-closed", "T1", "closed", at(2, 9, 0), &[]),
        event(
            "t3-received",
            "T3",
            "received",
            at(1, 8, 0),
            &[
                ("category", s("traffic")),
                ("channel", s("web")),
                ("due_at", at(2, 8, 0)),
            ],
        ),
        // T4: answered before its deadline; a deadline sent after the answer does not count.
        event(
            "t4-forwarded-late",
            "T4",
            "forwarded",
            at(2, 13, 0),
            &[("agency_id", s("79-sgtvt")), ("due_at", at(2, 10, 0))],
        ),
        event(
            "t4-received",
            "T4",
            "received",
            at(1, 12, 0),
            &[
                ("category", s("traffic")),
                ("channel", s("phone")),
                ("due_at", at(2, 12, 0)),
            ],
        ),
        event("t4-responded", "T4", "responded", at(2, 11, 0), &[]),
        // T5: rejected.
        event(
            "t5-rejected",
            "T5",
            "rejected",
            at(2, 15, 0),
            &[("reason", s("duplicate report"))],
        ),
        event(
            "t5-received",
            "T5",
            "received",
            at(2, 14, 0),
            &[
                ("category", s("other")),
                ("channel", s("zalo")),
                ("due_at", at(4, 14, 0)),
            ],
        ),
        // A later `received` of T1 with another category does not change T1's category.
        event(
            "t1-received-again",
            "T1",
            "received",
            at(0, 11, 0),
            &[
                ("category", s("lighting")),
                ("channel", s("email")),
                ("due_at", at(2, 8, 0)),
            ],
        ),
        // T6 on day 6: the newest day.
        event(
            "t6-received",
            "T6",
            "received",
            at(6, 9, 0),
            &[
                ("category", s("other")),
                ("channel", s("zalo")),
                ("due_at", at(7, 9, 0)),
            ],
        ),
        event("t2-responded-1", "T2", "responded", at(3, 9, 0), &[]),
    ];
    let producer = env.producer();
    for payload in &events {
        env.produce(&producer, &env.config.kafka.hotline_topic, "79", payload)
            .await;
    }
    let pipeline = Pipeline::start(&env);
    wait_for("every hotline event folded", || async {
        pipeline.index_position().await == events.len() as f64
    })
    .await;
    // The windows are written after the facts: wait for the newest day's.
    let day = |d: u32| {
        sipas_stream::index::window::from_date(time::macros::date!(2026 - 11 - 02)) as u16
            + d as u16
    };
    let read = |unit_type: &'static str, unit_id: &'static str| {
        let client = env.clickhouse();
        async move {
            client
                .query("SELECT ?fields FROM hotline_kpi_daily FINAL WHERE unit_type = ? AND unit_id = ? AND window = '30d' ORDER BY as_of")
                .bind(unit_type)
                .bind(unit_id)
                .fetch_all::<Kpi>()
                .await
                .unwrap()
        }
    };
    wait_for("the window values of day 6", || async {
        read("province", "79")
            .await
            .last()
            .is_some_and(|k| k.as_of == day(6))
    })
    .await;
    let rows = read("province", "79").await;
    let on = |d: u32| {
        rows.iter()
            .find(|k| k.as_of == day(d))
            .unwrap_or_else(|| panic!("day {d}: {rows:?}"))
    };
    let kpi =
        |as_of, received, responded, on_time, rated, satisfied, reopened, rejected, past_due| {
            let rate = |a: u32, b: u32| (b > 0).then(|| 100.0 * f64::from(a) / f64::from(b));
            Kpi {
                as_of,
                received,
                responded,
                responded_on_time: on_time,
                on_time_rate: rate(on_time, responded),
                rated,
                satisfaction_rate: rate(satisfied, rated),
                reopened,
                reopen_rate: rate(reopened, responded),
                rejected,
                open_past_due: past_due,
            }
        };
    // Day 0: T1, T2 received. Day 1: T3, T4 received, T1 answered on time, T1 rated; at the
    // end of day 1 T2 (due day 1 10:00) is open past due.
    assert_eq!(*on(0), kpi(day(0), 2, 0, 0, 0, 0, 0, 0, 0));
    assert_eq!(*on(1), kpi(day(1), 4, 1, 1, 1, 1, 0, 0, 1));
    // Day 2: T4 answered on time; T5 received and rejected; T2 still past due.
    assert_eq!(*on(2), kpi(day(2), 5, 2, 2, 1, 1, 0, 1, 1));
    // Day 3: T2 first answered at 09:00 (late), reopened (its later response is not counted).
    assert_eq!(*on(3), kpi(day(3), 5, 3, 2, 1, 1, 1, 1, 0));
    // Day 4: T2's latest rating (satisfied) counts once.
    assert_eq!(*on(4), kpi(day(4), 5, 3, 2, 2, 2, 1, 1, 0));
    // Day 5: T3's extended deadline (day 5 08:00) passed unanswered.
    assert_eq!(*on(5), kpi(day(5), 5, 3, 2, 2, 2, 1, 1, 1));
    assert_eq!(*on(6), kpi(day(6), 6, 3, 2, 2, 2, 1, 1, 1));
    assert!(on(6).reopen_rate.unwrap() <= 100.0);

    // Categories come from the earliest `received` (T1 is traffic, not lighting).
    let traffic = read("category", "79/traffic").await;
    let last = traffic.last().unwrap();
    assert_eq!(
        (
            last.as_of,
            last.received,
            last.responded,
            last.responded_on_time,
            last.open_past_due
        ),
        (day(6), 3, 2, 2, 1)
    );
    assert!(
        read("category", "79/lighting").await.is_empty(),
        "no ticket is in lighting"
    );

    // The latest values are those of day 6, the newest day with data.
    let latest: Vec<Kpi> = env
        .clickhouse()
        .query("SELECT ?fields FROM hotline_kpi_latest FINAL WHERE unit_type = 'province' AND unit_id = '79' AND window = '30d'")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(latest, vec![kpi(day(6), 6, 3, 2, 2, 2, 1, 1, 1)]);

    // Channels of received tickets, and agencies from the latest forward, in the day counts.
    #[derive(clickhouse::Row, serde::Deserialize, Debug, PartialEq)]
    struct ByChannel {
        channel: String,
        received: i64,
    }
    let channels: Vec<ByChannel> = env
        .clickhouse()
        .query("SELECT channel, sum(received) AS received FROM hotline_day_totals WHERE province_code = '79' GROUP BY channel HAVING received != 0 ORDER BY channel")
        .fetch_all()
        .await
        .unwrap();
    let want = |c: &str, n: i64| ByChannel {
        channel: c.into(),
        received: n,
    };
    assert_eq!(
        channels,
        vec![
            want("app", 1),
            want("phone", 2),
            want("web", 1),
            want("zalo", 2)
        ]
    );
    drop(pipeline);
}
