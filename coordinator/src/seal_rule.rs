//! When the open batch is sealed: one pure rule, used by the sequencer's task
//! ([`crate::sequencer::SequencerHandle::spawn`]) and by the simulator, so that what the simulator
//! tests is what the coordinator does. It reads no clock: the caller measures the open batch's
//! age on its own clock (monotonic in the binary, simulated in the simulator) and passes it in.

use std::time::Duration;

use bridge::codec::MAX_BATCH_BYTES;

/// The encoded bytes at which a batch is sealed by default: half of what a decoder accepts, so
/// that one group commit landing on top of an almost full batch still leaves it decodable.
pub const DEFAULT_MAX_BATCH_BYTES: u64 = MAX_BATCH_BYTES / 2;

// A batch sealed at the default must decode everywhere, with room to spare.
const _: () = assert!(DEFAULT_MAX_BATCH_BYTES > 0 && DEFAULT_MAX_BATCH_BYTES <= MAX_BATCH_BYTES / 2);

/// The open batch, as the rule needs to see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenBatch {
    /// Transactions in it.
    pub txs: usize,
    /// Their encoded (uncompressed borsh) bytes: what `bridge::codec::MAX_BATCH_BYTES` bounds.
    pub encoded_bytes: u64,
    /// How long since its first transaction was acknowledged, on the caller's clock; `None` when
    /// it is empty.
    pub age_ms: Option<u64>,
    /// Forced entries are due and must go into a batch now.
    pub forced_due: bool,
}

/// Why the open batch is sealed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealReason {
    Count,
    Bytes,
    Age,
    Forced,
}

impl SealReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SealReason::Count => "count",
            SealReason::Bytes => "bytes",
            SealReason::Age => "age",
            SealReason::Forced => "forced",
        }
    }
}

/// Seal at `max_txs` transactions, at `max_bytes` encoded bytes, `max_age_ms` after the first
/// transaction, or at once when forced entries are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealRule {
    pub max_txs: usize,
    pub max_bytes: u64,
    pub max_age_ms: u64,
}

impl SealRule {
    /// The rule with the default byte bound ([`DEFAULT_MAX_BATCH_BYTES`]).
    pub fn new(max_txs: usize, max_age: Duration) -> Self {
        let max_age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        SealRule { max_txs, max_bytes: DEFAULT_MAX_BATCH_BYTES, max_age_ms }
    }

    /// Whether `open` is sealed now, and why. An empty batch is sealed only for forced entries.
    pub fn due(&self, open: &OpenBatch) -> Option<SealReason> {
        if open.forced_due {
            return Some(SealReason::Forced);
        }
        if open.txs == 0 {
            return None;
        }
        if open.txs >= self.max_txs {
            Some(SealReason::Count)
        } else if open.encoded_bytes >= self.max_bytes {
            Some(SealReason::Bytes)
        } else if open.age_ms.is_some_and(|age| age >= self.max_age_ms) {
            Some(SealReason::Age)
        } else {
            None
        }
    }

    /// How long until `open` is due by age if nothing else happens: zero when it is due now,
    /// `None` when only a new transaction (or forced entry) can make it due.
    pub fn wait(&self, open: &OpenBatch) -> Option<Duration> {
        if self.due(open).is_some() {
            return Some(Duration::ZERO);
        }
        if open.txs == 0 {
            return None;
        }
        // A non-empty batch with no age yet is as young as can be.
        let age = open.age_ms.unwrap_or(0);
        Some(Duration::from_millis(self.max_age_ms.saturating_sub(age)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: SealRule = SealRule { max_txs: 10, max_bytes: 1_000, max_age_ms: 500 };

    fn open(txs: usize, encoded_bytes: u64, age_ms: u64) -> OpenBatch {
        OpenBatch { txs, encoded_bytes, age_ms: Some(age_ms), forced_due: false }
    }

    #[test]
    fn an_empty_batch_is_never_due_and_waits_for_a_transaction() {
        let empty = OpenBatch::default();
        assert_eq!(RULE.due(&empty), None);
        assert_eq!(RULE.wait(&empty), None);
    }

    #[test]
    fn a_batch_is_sealed_at_its_count() {
        assert_eq!(RULE.due(&open(9, 10, 0)), None);
        assert_eq!(RULE.due(&open(10, 10, 0)), Some(SealReason::Count));
        assert_eq!(RULE.wait(&open(10, 10, 0)), Some(Duration::ZERO));
    }

    #[test]
    fn a_batch_is_sealed_at_its_encoded_bytes() {
        assert_eq!(RULE.due(&open(2, 999, 0)), None);
        assert_eq!(RULE.due(&open(2, 1_000, 0)), Some(SealReason::Bytes));
    }

    #[test]
    fn a_batch_is_sealed_at_its_age_and_the_wait_counts_down_to_it() {
        assert_eq!(RULE.due(&open(1, 10, 499)), None);
        assert_eq!(RULE.wait(&open(1, 10, 200)), Some(Duration::from_millis(300)));
        assert_eq!(RULE.due(&open(1, 10, 500)), Some(SealReason::Age));
        // A batch just opened waits the whole age.
        let fresh = OpenBatch { txs: 1, encoded_bytes: 10, age_ms: None, forced_due: false };
        assert_eq!(RULE.wait(&fresh), Some(Duration::from_millis(500)));
    }

    #[test]
    fn forced_entries_due_seal_even_an_empty_batch() {
        let forced = OpenBatch { forced_due: true, ..OpenBatch::default() };
        assert_eq!(RULE.due(&forced), Some(SealReason::Forced));
        assert_eq!(RULE.due(&OpenBatch { forced_due: true, ..open(10, 5_000, 900) }), Some(SealReason::Forced));
    }

    #[test]
    fn the_default_byte_bound_is_half_of_what_a_decoder_accepts() {
        let rule = SealRule::new(10, Duration::from_secs(1));
        assert_eq!(rule.max_bytes * 2, MAX_BATCH_BYTES);
        assert_eq!(rule.max_age_ms, 1_000);
    }
}
