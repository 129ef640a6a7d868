//! The forced-inclusion check (docs/PROTOCOL.md, Forced transactions), shared by the confirmer
//! (before it replays a batch), a coordinator recovering from the DA (which stops before the
//! first batch that fails it) and the Arweave DA (which, of two batches signed with one number,
//! follows the one that passes): before a version-2 batch is replayed, the forced entries in its range `(from, to]` are listed on the
//! gateway (owner-independent, bounded by the cap) and fetched, and the batch's records must be
//! exactly them with what their data says; once the batch's own Arweave height is known, the
//! deadline is checked. What fails is a `censorship` alarm naming the entry and the batch.
//!
//! "Not seen yet" is told apart from "absent": a gateway below the range's top, an entry it
//! lists but does not serve yet, or a batch not yet in a block, is a wait, never an alarm.

use std::sync::Arc;

use crate::arweave::{ForcedStream, GatewayError, MAX_TXS_PER_BLOCK, PAGE, TxStatus};
use bridge::SignedBatch;
use bridge::forced::{FORCED_TX_TYPE, Finding, ForcedCursor, ForcedParams, check_deadline, check_records, expected};
use serde::{Deserialize, Serialize};

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForcedVerdict {
    /// Nothing wrong (or nothing to check: a version-1 batch).
    Kept,
    /// The gateway cannot tell yet; check again at the next step.
    Wait(String),
    /// Censorship, with what proves it.
    Censored(Box<CensorshipEvidence>),
}

/// What a `censorship` alarm's evidence file carries besides the batch: the finding, the
/// previous batch's cursor, the batch's Arweave id and height, and the listing of the heights
/// concerned, so that `confirmer check-evidence` can check it against any gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CensorshipEvidence {
    pub finding: Finding,
    /// The previous batch's `to` (the network's start for the first batch).
    pub previous_to: ForcedCursor,
    /// The batch's Arweave transaction id (its locator) and the height it was confirmed at.
    pub batch_tx: String,
    pub confirmed_at: Option<u64>,
    /// The entries the gateway listed in the batch's range, in stream order.
    pub listed: Vec<bridge::forced::ForcedListing>,
}

impl CensorshipEvidence {
    /// One line for the alarm's detail.
    pub fn describe(&self, number: u64) -> String {
        match &self.finding {
            Finding::Skipped { arweave_id, height } => format!(
                "batch {number} skipped forced transaction {} (Arweave height {height}) inside its range",
                crate::arweave::to_b64(arweave_id)
            ),
            Finding::Phantom { arweave_id, height } => format!(
                "batch {number} records forced transaction {} (height {height}) that its range does not hold",
                crate::arweave::to_b64(arweave_id)
            ),
            Finding::Misread { arweave_id, height } => format!(
                "batch {number} records forced transaction {} (height {height}) as something its data is not",
                crate::arweave::to_b64(arweave_id)
            ),
            Finding::CursorGap { expected, got } => {
                format!(
                    "batch {number}'s forced cursor starts at {got}, not where the previous batch left it ({expected})"
                )
            }
            Finding::Late { cursor, confirmed_at, deadline_blocks } => format!(
                "batch {number} was confirmed at Arweave height {confirmed_at} with its forced cursor at {cursor}, more than {deadline_blocks} blocks behind, and was not full"
            ),
        }
    }
}

/// The check over a forced stream: a gateway in the binaries, the simulated Arweave in `sim`.
#[derive(Debug, Clone)]
pub struct ForcedChecker {
    gateway: Arc<dyn ForcedStream>,
    app_name: String,
    network: String,
    rules: ForcedParams,
}

impl ForcedChecker {
    /// The check of `network`'s batches under `rules`, reading the forced stream from `gateway`
    /// (a [`crate::arweave::Gateway`], or anything else that serves the stream).
    pub fn new(gateway: impl ForcedStream + 'static, network: &str, rules: ForcedParams) -> Self {
        Self::over(Arc::new(gateway), network, rules)
    }

    /// [`ForcedChecker::new`] over a stream already shared.
    pub fn over(gateway: Arc<dyn ForcedStream>, network: &str, rules: ForcedParams) -> Self {
        ForcedChecker { gateway, app_name: crate::da::APP_NAME.into(), network: network.into(), rules }
    }

    pub fn gateway(&self) -> &dyn ForcedStream {
        self.gateway.as_ref()
    }

    pub fn rules(&self) -> ForcedParams {
        self.rules
    }

    /// Checks `batch` (published at `locator`) whose predecessor left the cursor at
    /// `previous_to`.
    pub async fn check(
        &self,
        previous_to: ForcedCursor,
        batch: &SignedBatch,
        locator: &str,
    ) -> Result<ForcedVerdict, GatewayError> {
        let Some(commit) = &batch.header.forced else { return Ok(ForcedVerdict::Kept) };
        let censored = |finding, listed, confirmed_at| {
            ForcedVerdict::Censored(Box::new(CensorshipEvidence {
                finding,
                previous_to,
                batch_tx: locator.to_owned(),
                confirmed_at,
                listed,
            }))
        };
        if commit.from != previous_to {
            return Ok(censored(Finding::CursorGap { expected: previous_to, got: commit.from }, Vec::new(), None));
        }
        let listed = match self.listed(commit.from, commit.to).await? {
            Ok(listed) => listed,
            Err(wait) => return Ok(ForcedVerdict::Wait(wait)),
        };
        let due = expected(commit.from, commit.to, &listed);
        let entries = match self.gateway.fetch_forced_all(&due).await {
            Ok(entries) => entries,
            // Listed but not served yet: wait for it (the next step asks again), never judge
            // the batch without it.
            Err(error @ GatewayError::NotServedYet { .. }) => return Ok(ForcedVerdict::Wait(error.to_string())),
            Err(error) => return Err(error),
        };
        #[cfg(feature = "planted-bugs")]
        let unchecked = bridge::planted::active(bridge::planted::PlantedBug::ForcedRecordsUnchecked);
        #[cfg(not(feature = "planted-bugs"))]
        let unchecked = false;
        if !unchecked && let Err(finding) = check_records(&batch.forced, &entries) {
            return Ok(censored(finding, listed, None));
        }
        let confirmed_at = match self.gateway.status(locator).await? {
            TxStatus::Confirmed { height, .. } => height,
            TxStatus::Pending | TxStatus::NotFound => {
                return Ok(ForcedVerdict::Wait(format!(
                    "batch {} is not in an Arweave block yet",
                    batch.header.number
                )));
            }
        };
        if let Err(finding) = check_deadline(&self.rules, commit, confirmed_at) {
            return Ok(censored(finding, listed, Some(confirmed_at)));
        }
        Ok(ForcedVerdict::Kept)
    }

    /// Every entry at the heights `(from, to]` touches, or why the gateway cannot say yet.
    pub async fn listed(
        &self,
        from: ForcedCursor,
        to: ForcedCursor,
    ) -> Result<Result<Vec<bridge::forced::ForcedListing>, String>, GatewayError> {
        // The last height the range reaches into.
        let top = if to.taken > 0 { to.height } else { to.height.saturating_sub(1) };
        if top < from.height {
            return Ok(Ok(Vec::new()));
        }
        let tip = self.gateway.height().await?;
        if tip < top {
            return Ok(Err(format!("the gateway is at height {tip}, below the forced range's top {top}")));
        }
        // At most `cap` entries are consumed; the heights at both ends hold at most a block each
        // besides: a complete listing never needs more rows than this.
        let max_rows = self.rules.cap as usize + 2 * MAX_TXS_PER_BLOCK + PAGE;
        let page = self.gateway.list_forced(&self.app_name, &self.network, from.height, top, max_rows).await?;
        if page.complete_to != Some(top) {
            return Ok(Err(format!("the gateway listed the forced range only up to {:?} of {top}", page.complete_to)));
        }
        Ok(Ok(page.listings))
    }
}

/// Checks a `censorship` finding against the signed batch and the listing the file carries,
/// with nothing else: the batch is the coordinator's (signature, records root), and the finding
/// follows from the records and the listing by the protocol's rules. Whether the listing is
/// Arweave's is [`CensorshipEvidence::check_on_arweave`]'s part.
pub fn check_censorship(
    network: &bridge::NetworkParams,
    batch: &SignedBatch,
    found: &CensorshipEvidence,
) -> Result<String, String> {
    let rules = network.forced.ok_or("the network takes no forced transactions")?;
    let number = batch.header.number;
    let signer = format!("0x{}", hex::encode(network.coordinator_key));
    batch.signed_header().verify(&network.coordinator_key).map_err(|_| "the batch's signature does not check")?;
    let commit = batch.header.forced.as_ref().ok_or("the batch has no forced commit")?;
    bridge::forced::check_shape(commit, &batch.forced, rules.cap)
        .map_err(|e| format!("the batch's forced records are not the ones it signs: {e}"))?;
    let due = expected(commit.from, commit.to, &found.listed);
    let recorded = |id: &[u8; 32]| batch.forced.iter().any(|r| &r.arweave_id == id);
    let proven = match &found.finding {
        Finding::Skipped { arweave_id, height } => {
            due.iter().any(|l| &l.arweave_id == arweave_id && l.height == *height) && !recorded(arweave_id)
        }
        Finding::Phantom { arweave_id, .. } => recorded(arweave_id) && !due.iter().any(|l| &l.arweave_id == arweave_id),
        // What the data says is for the Arweave check; here: the entry is due and recorded.
        Finding::Misread { arweave_id, .. } => recorded(arweave_id) && due.iter().any(|l| &l.arweave_id == arweave_id),
        Finding::CursorGap { expected, got } => commit.from == *got && got != expected,
        Finding::Late { confirmed_at, .. } => {
            Some(*confirmed_at) == found.confirmed_at && check_deadline(&rules, commit, *confirmed_at).is_err()
        }
    };
    if !proven {
        return Err(format!("the finding does not follow from batch {number} and the listing: {:?}", found.finding));
    }
    Ok(format!(
        "Batch {number} is signed by the coordinator (key {signer}); its forced range is {} to {} with {} records. {}. \
         The listing in this file is the gateway's view of that range; `confirmer check-evidence --arweave URL` \
         checks it against any Arweave gateway. A coordinator must process every forced transaction of its range \
         in order and keep the cursor within {} blocks of Arweave: this one did not, so nothing from batch {number} \
         on is final and the watchmen halt; a new coordinator can take over from the DA.",
        commit.from,
        commit.to,
        commit.count,
        found.describe(number),
        rules.deadline_blocks
    ))
}

impl CensorshipEvidence {
    /// The part of a `censorship` finding only Arweave can confirm: the range's listing is the
    /// gateway's, a misread entry's data is what the file says it is not, and a late batch was
    /// confirmed where the file says.
    pub async fn check_on_arweave(&self, checker: &ForcedChecker, batch: &SignedBatch) -> Result<String, String> {
        let commit = batch.header.forced.as_ref().ok_or("the batch has no forced commit")?;
        let listed = checker
            .listed(commit.from, commit.to)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|why| format!("the gateway cannot say yet: {why}"))?;
        if listed != self.listed {
            return Err(format!(
                "the gateway lists {} forced entries in the range, the file {}: the file's listing is not Arweave's",
                listed.len(),
                self.listed.len()
            ));
        }
        match &self.finding {
            Finding::Misread { .. } => {
                let due = expected(commit.from, commit.to, &listed);
                let entries = checker.gateway().fetch_forced_all(&due).await.map_err(|e| e.to_string())?;
                match check_records(&batch.forced, &entries) {
                    Err(Finding::Misread { .. }) => {}
                    other => return Err(format!("the entries' data does not show a misreading: {other:?}")),
                }
            }
            Finding::Late { confirmed_at, .. } => match checker.gateway().status(&self.batch_tx).await {
                Ok(TxStatus::Confirmed { height, .. }) if height == *confirmed_at => {}
                other => {
                    return Err(format!("the batch's Arweave status is {other:?}, not confirmed at {confirmed_at}"));
                }
            },
            _ => {}
        }
        Ok(format!(
            "The gateway at {} lists the same {} forced entries in the range (tags App-Name, Network, Type = {FORCED_TX_TYPE}).",
            checker.gateway().base(),
            listed.len()
        ))
    }
}
