//! Hotline KPIs from summed day counts (`index::ticket` defines what each count means).
//! These are hotline KPIs, a live proxy for SIPAS factor 5, never the official SIPAS.
use serde::Serialize;

use crate::index::ticket::HotlineDayCounts;

fn bin_midpoint_hours(bin: usize) -> f64 {
    let low = (bin as f64 / 8.0).exp() - 1.0;
    let high = ((bin + 1) as f64 / 8.0).exp() - 1.0;
    // Geometric midpoint in the (minutes + 1) space the bins are built on.
    (((low + 1.0) * (high + 1.0)).sqrt() - 1.0) / 60.0
}

/// The hotline KPI set. Its fields, in this order, are the KPI part of a unit of
/// `/api/v1/hotline/kpis` (embedded whole in `serve::views::HotlineUnit`) and of the
/// `hotline_kpi_*` columns (`index::rows::HotlineKpiRow`, flat as ClickHouse rows are).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HotlineKpi {
    pub received: u32,
    pub responded: u32,
    pub responded_on_time: u32,
    pub on_time_rate: Option<f64>,
    pub median_response_hours: Option<f64>,
    pub rated: u32,
    pub satisfaction_rate: Option<f64>,
    pub reopened: u32,
    pub reopen_rate: Option<f64>,
    pub rejected: u32,
    pub open_past_due: u32,
}

fn rate(part: u32, whole: u32) -> Option<f64> {
    (whole > 0).then(|| 100.0 * f64::from(part) / f64::from(whole))
}

/// Summed counts are never negative once every source is in; a partial sum read while a
/// move is half-written could be, and shows as 0.
fn count(value: i64) -> u32 {
    value.clamp(0, i64::from(u32::MAX)) as u32
}

/// KPIs of summed day counts. `open_past_due` is the running sum of `past_due_delta`
/// up to the window's `as_of`.
pub fn kpi(counts: &HotlineDayCounts, open_past_due: i64) -> HotlineKpi {
    let bins: Vec<(u8, u32)> = counts
        .response_bins
        .iter()
        .filter(|(_, c)| *c > 0)
        .map(|(b, c)| (*b, *c as u32))
        .collect();
    let total: u32 = bins.iter().map(|(_, c)| c).sum();
    let median_response_hours = (total > 0).then(|| {
        let half = total.div_ceil(2);
        let mut seen = 0;
        let bin = bins.iter().find(|(_, c)| {
            seen += *c;
            seen >= half
        });
        bin_midpoint_hours(bin.map_or(0, |(b, _)| usize::from(*b)))
    });
    let responded = count(counts.responded.into());
    let rated = count(counts.rated.into());
    let reopened = count(counts.reopened.into());
    let on_time = count(counts.responded_on_time.into());
    HotlineKpi {
        received: count(counts.received.into()),
        responded,
        responded_on_time: on_time,
        on_time_rate: rate(on_time, responded),
        median_response_hours,
        rated,
        satisfaction_rate: rate(count(counts.rated_satisfied.into()), rated),
        reopened,
        reopen_rate: rate(reopened, responded),
        rejected: count(counts.rejected.into()),
        open_past_due: count(open_past_due),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ticket::response_bin;

    #[test]
    fn kpi_rates_and_median() {
        let mut c = HotlineDayCounts {
            received: 10,
            responded: 4,
            responded_on_time: 3,
            rated: 2,
            rated_satisfied: 1,
            reopened: 1,
            rejected: 0,
            ..Default::default()
        };
        let mut bins = std::collections::BTreeMap::new();
        for minutes in [60.0, 120.0, 24.0 * 60.0, 48.0 * 60.0, 49.0 * 60.0] {
            *bins.entry(response_bin(minutes) as u8).or_insert(0) += 1;
        }
        c.response_bins = bins.into_iter().collect();
        let k = kpi(&c, 2);
        assert_eq!(k.on_time_rate, Some(75.0));
        assert_eq!(k.satisfaction_rate, Some(50.0));
        assert_eq!(k.reopen_rate, Some(25.0));
        assert_eq!(k.open_past_due, 2);
        let median = k.median_response_hours.unwrap();
        assert!(
            (median - 24.0).abs() / 24.0 < 0.15,
            "median {median} within one bin of 24 h"
        );
        assert_eq!(
            kpi(&HotlineDayCounts::default(), 0).median_response_hours,
            None
        );
        assert_eq!(kpi(&HotlineDayCounts::default(), -1).open_past_due, 0);
    }
}
