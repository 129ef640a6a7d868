//! State snapshots as Arweave transactions of the coordinator's wallet, tagged
//! `Snapshot-Of-Batch` (not `Batch-Number`, so batch lookups never see them). Data larger than
//! 256 KiB goes up in chunks (`Gateway::upload`) and comes back checked against its `data_root`.
//! A snapshot is never trusted here: only its transaction (signature, owner, tags) is checked.

use super::{APP_VERSION, ArweaveDa, CONTENT_TYPE, DaError, GatewayError};
use crate::arweave::{Tag, Transaction};
use crate::da::SNAPSHOT_CODEC;

/// The most postings for one batch's snapshot looked at: only the coordinator's wallet posts
/// them, and a reader needs one that checks.
const MAX_SNAPSHOT_POSTINGS: usize = 16;

impl ArweaveDa {
    fn snapshot_tags(&self, number: u64) -> Vec<(&'static str, String)> {
        let config = &self.inner.config;
        vec![
            ("Snapshot-Of-Batch", number.to_string()),
            ("App-Name", config.app_name.clone()),
            ("Network", config.network.clone()),
        ]
    }

    /// Posts the snapshot of batch `number` unless the wallet already posted one with this root.
    pub(super) async fn post_snapshot(&self, number: u64, root: [u8; 32], bytes: &[u8]) -> Result<String, DaError> {
        let Some(publisher) = &self.inner.publisher else {
            return Err(DaError::Journal { path: String::new(), reason: "this ArweaveDa only follows".into() });
        };
        let config = &self.inner.config;
        let gateway = &self.inner.gateway;
        let root_hex = hex::encode(root);
        let leads =
            gateway.find_owned(&config.coordinator_address, &self.snapshot_tags(number), MAX_SNAPSHOT_POSTINGS).await?;
        if let Some(lead) = leads.iter().find(|l| l.tags.iter().any(|(n, v)| n == "State-Root" && *v == root_hex)) {
            return Ok(lead.id.clone());
        }
        let tags = vec![
            Tag::new("App-Name", &config.app_name),
            Tag::new("App-Version", APP_VERSION),
            Tag::new("Network", &config.network),
            Tag::new("Snapshot-Of-Batch", number.to_string()),
            Tag::new("State-Root", &root_hex),
            Tag::new("Codec", SNAPSHOT_CODEC),
            Tag::new("Content-Type", CONTENT_TYPE),
        ];
        let anchor = gateway.tx_anchor().await?;
        let reward = gateway.price_winston_bounded(bytes.len() as u64, config.max_price_winston_per_mib).await?;
        let mut tx = Transaction::with_data(bytes.to_vec(), tags, anchor, reward, publisher.wallet.owner().to_vec());
        tx.sign(&publisher.wallet).map_err(GatewayError::from)?;
        gateway.upload(&tx).await?;
        tracing::info!(number, arweave_id = %tx.id_b64(), bytes = tx.data_size, "published a state snapshot to Arweave");
        Ok(tx.id_b64())
    }

    /// The snapshots the coordinator's wallet filed for batch `number`, each transaction checked
    /// (signature, owner, tags, data against its root); their contents are the reader's to check.
    pub(super) async fn find_snapshots(&self, number: u64) -> Result<Vec<(String, Vec<u8>)>, DaError> {
        let config = &self.inner.config;
        let gateway = &self.inner.gateway;
        let leads =
            gateway.find_owned(&config.coordinator_address, &self.snapshot_tags(number), MAX_SNAPSHOT_POSTINGS).await?;
        let mut ids: Vec<String> = leads.into_iter().map(|lead| lead.id).collect();
        ids.sort();
        ids.dedup();
        let number_text = number.to_string();
        let mut found = Vec::new();
        for id in ids {
            let tx = match gateway.tx(&id).await {
                Ok(Some(tx)) => tx,
                Ok(None) | Err(GatewayError::Tx(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let genuine = tx.verify().is_ok()
                && tx.id_b64() == id
                && tx.owner_address() == config.coordinator_address
                && tx.tag("App-Name") == Some(config.app_name.as_str())
                && tx.tag("Network") == Some(config.network.as_str())
                && tx.tag("Snapshot-Of-Batch") == Some(number_text.as_str())
                && tx.tag("Codec") == Some(SNAPSHOT_CODEC);
            if !genuine {
                tracing::warn!(id, number, "ignoring a snapshot posting that is not the coordinator's");
                continue;
            }
            match gateway.data(&tx).await {
                Ok(bytes) => found.push((id, bytes)),
                Err(GatewayError::Malformed { reason, .. }) => {
                    tracing::warn!(id, number, %reason, "ignoring a snapshot whose data does not match its root");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(found)
    }
}
