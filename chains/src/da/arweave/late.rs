//! A second batch under a number a reader has passed (docs/PROTOCOL.md, "Equivocation found
//! late"). `fetch` keeps each batch it accepted and never asks for that number again, so a batch
//! posted under it later would go unseen until a restart. A late posting is among the
//! coordinator's newest, so each call reads one page of them (newest first) and looks up the
//! numbers of the postings it has not judged yet, a few numbers per call.

use std::collections::BTreeSet;

use bridge::batch::Equivocation;

use super::{ArweaveDa, DaError, Lookup, lock};

/// Numbers looked up per call: each lookup downloads the postings filed under one number.
const LOOKUPS_PER_CALL: usize = 4;
/// Judged posting ids kept; past this they are forgotten at once and judged again (downloads,
/// not correctness, is what forgetting costs).
const MAX_JUDGED: usize = 4_096;

impl ArweaveDa {
    pub(super) async fn late_equivocation(&self, through: u64) -> Result<Option<Equivocation>, DaError> {
        let config = &self.inner.config;
        let leads = self
            .inner
            .gateway
            .newest_owned(
                &config.coordinator_address,
                &[("App-Name", config.app_name.clone()), ("Network", config.network.clone())],
            )
            .await?;
        let unjudged: Vec<(u64, String)> = {
            let accepted = lock(&self.inner.accepted);
            let judged = lock(&self.inner.judged);
            leads
                .into_iter()
                .filter_map(|lead| {
                    let (_, value) = lead.tags.iter().find(|(name, _)| name == "Batch-Number")?;
                    let filed: u64 = value.parse().ok()?;
                    let known = judged.contains(&lead.id)
                        || accepted.get(&filed).is_some_and(|batch| batch.ids.contains(&lead.id));
                    (filed >= 1 && filed <= through && !known).then_some((filed, lead.id))
                })
                .collect()
        };
        let numbers: BTreeSet<u64> = unjudged.iter().map(|(number, _)| *number).collect();
        let depth = config.confirmations;
        for number in numbers.into_iter().take(LOOKUPS_PER_CALL) {
            let (mut valid, shallow) = self.candidates(number, depth).await?;
            self.drop_known_superseded(&mut valid);
            let settled = match valid.len() {
                // `single` judges the pair as `fetch` would: superseded after censorship, or an
                // equivocation.
                2.. => match self.single(number, depth).await {
                    Err(DaError::Equivocation(evidence)) => return Ok(Some(*evidence)),
                    Err(error) => return Err(error),
                    Ok(Lookup::NotDeepEnough) => false,
                    Ok(_) => !shallow,
                },
                _ => !shallow,
            };
            // A posting not yet at depth is judged again at a later call.
            if settled {
                let mut judged = lock(&self.inner.judged);
                if judged.len() >= MAX_JUDGED {
                    judged.clear();
                }
                judged.extend(unjudged.iter().filter(|(n, _)| *n == number).map(|(_, id)| id.clone()));
            }
        }
        Ok(None)
    }
}
