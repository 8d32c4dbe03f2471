//! Placeholder until the ticket model lands (replaced by the real module).
use serde::{Deserialize, Serialize};

use crate::domain::HotlineEvent;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HotlineCell {
    pub province_code: String,
    pub agency_id: String,
    pub category: String,
    pub channel: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotlineDayCounts {
    pub received: i32,
    pub responded: i32,
    pub responded_on_time: i32,
    pub rated: i32,
    pub rated_satisfied: i32,
    pub reopened: i32,
    pub rejected: i32,
    pub past_due_delta: i32,
    pub response_bins: Vec<(u8, i32)>,
}

impl HotlineDayCounts {
    pub fn add(&mut self, other: &Self, sign: i32) {
        let _ = (other, sign);
        todo!()
    }
    pub fn is_zero(&self) -> bool {
        todo!()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TicketState {}

impl TicketState {
    pub fn fold(&mut self, event: &HotlineEvent) {
        let _ = event;
        todo!()
    }
    pub fn contributions(&self) -> Vec<(HotlineCell, i64, HotlineDayCounts)> {
        todo!()
    }
    pub fn last_event_at(&self) -> i64 {
        todo!()
    }
    pub fn resolved_at(&self) -> Option<i64> {
        todo!()
    }
}

pub fn diff(
    before: &[(HotlineCell, i64, HotlineDayCounts)],
    after: &[(HotlineCell, i64, HotlineDayCounts)],
) -> Vec<(HotlineCell, i64, HotlineDayCounts)> {
    let _ = (before, after);
    todo!()
}
