//! The counters every confirmer and watchman exports from its start, at zero until something
//! happens. A Prometheus exporter shows a series only once it is touched, so without this an
//! alert or a dashboard panel on an alarm or a rejection would read "no data" on a healthy node
//! (and `increase()` would miss the first event). `deploy_checks` in ops/tests scrapes every role
//! and checks that each metric the alert rules and the dashboard name is exported.

use chains::da::Rejection;

use crate::alarm::AlarmKind;

const ALARMS: [AlarmKind; 9] = [
    AlarmKind::RootMismatch,
    AlarmKind::BrokenLink,
    AlarmKind::InvalidTx,
    AlarmKind::InvalidBatch,
    AlarmKind::Equivocation,
    AlarmKind::DepositNotOnL1,
    AlarmKind::MissingBatch,
    AlarmKind::PayoutNotOnL1,
    AlarmKind::Censorship,
];

const REJECTIONS: [Rejection; 9] = [
    Rejection::WrongOwner,
    Rejection::BadTransaction,
    Rejection::BadTags,
    Rejection::BadData,
    Rejection::BadBatch,
    Rejection::Misfiled,
    Rejection::BrokenLink,
    Rejection::Duplicate,
    Rejection::Equivocation,
];

/// Touches each counter (adds 0) under the recorder installed: call once after installing it.
pub fn export_zeroes() {
    for kind in ALARMS {
        metrics::counter!("bridge_confirmer_alarms_total", "kind" => kind.as_str()).increment(0);
    }
    for kind in REJECTIONS {
        metrics::counter!("bridge_da_rejected_total", "kind" => kind.as_str()).increment(0);
    }
    metrics::counter!("bridge_confirmer_foreign_entries_total").increment(0);
    metrics::counter!("bridge_da_foreign_rows_total").increment(0);
}
