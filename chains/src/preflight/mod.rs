//! Preflight: before a role runs against real networks, check that every endpoint it is
//! configured with is the one the network's parameters describe. `probe` gathers facts from
//! the endpoints (the only I/O here); the functions below decide on those facts, purely, one
//! [`Row`] each, so that every decision is unit tested without a network. `coordinator check`,
//! `confirmer check` and `watchman check` gather what their configuration names and print the
//! [`Report`].

pub mod chains;
pub mod probe;

use bridge::BtcNetwork;

/// One check's outcome: its name, whether it passed, and what was found or what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Row {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Row { name, ok: true, detail: detail.into() }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Row { name, ok: false, detail: detail.into() }
    }
}

/// Every check of one role, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn push(&mut self, row: Row) {
        if row.ok {
            tracing::info!(check = row.name, detail = %row.detail, "preflight passed");
        } else {
            tracing::warn!(check = row.name, detail = %row.detail, "preflight FAILED");
        }
        self.rows.push(row);
    }

    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.ok)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| !r.ok)
    }

    /// The row named `name`, if that check ran.
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// A plain-text table: check, ok/FAIL, detail.
    pub fn table(&self) -> String {
        let width = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max("check".len());
        let mut out = format!("{:width$}  {:4}  detail\n", "check", "");
        for row in &self.rows {
            let verdict = if row.ok { "ok" } else { "FAIL" };
            out.push_str(&format!("{:width$}  {verdict:4}  {}\n", row.name, row.detail));
        }
        out
    }

    /// One line naming each failed check and what to fix, for the exit message.
    pub fn summary(&self) -> String {
        let failed: Vec<String> = self.failures().map(|r| format!("{}: {}", r.name, r.detail)).collect();
        match failed.len() {
            0 => format!("all {} checks passed", self.rows.len()),
            n => format!("{n} of {} checks failed; fix: {}", self.rows.len(), failed.join("; ")),
        }
    }
}

pub const ETH_CHAIN: &str = "ethereum chain id";
pub const VAULT_CODE: &str = "vault code";
pub const VAULT_GROUP_KEY: &str = "vault group key";
pub const VAULT_KEY_EPOCH: &str = "vault key epoch";
pub const BTC_NETWORK: &str = "bitcoin network";
pub const BTC_RPCS: &str = "bitcoin rpcs";
pub const BTC_TXINDEX: &str = "bitcoin txindex";
pub const COORDINATOR_KEY: &str = "coordinator key";
pub const ARWEAVE_FUNDS: &str = "arweave wallet funds";
pub const ARWEAVE_GATEWAY: &str = "arweave gateway";
pub const WATCHMAN_SHARE: &str = "watchman share";
pub const COORDINATOR_NETWORK: &str = "coordinator network";
pub const TLS_CA_FILE: &str = "tls ca file";

/// An endpoint that did not answer: the check it was needed for fails, naming it.
pub fn unreachable(name: &'static str, endpoint: &str, error: &str) -> Row {
    Row::fail(name, format!("{endpoint} did not answer ({error}): is the URL right and the node up?"))
}

/// The Ethereum node's chain: the network's `chain_id` (the vault's chain, which is also the
/// EIP-712 domain's `chainId` users sign for) and the configured one, when it is.
pub fn eth_chain(expected: Option<u64>, network_chain_id: u64, actual: u64) -> Row {
    if actual != network_chain_id {
        return Row::fail(
            ETH_CHAIN,
            format!(
                "the node is on chain {actual}, the network's chain_id (the vault's chain) is {network_chain_id}: wrong RPC URL or wrong network parameters"
            ),
        );
    }
    match expected {
        Some(expected) if expected != actual => Row::fail(
            ETH_CHAIN,
            format!(
                "the node is on chain {actual}, the configuration says {expected}: wrong RPC URL or wrong chain_id"
            ),
        ),
        Some(_) => Row::pass(ETH_CHAIN, format!("{actual}, as configured")),
        None => Row::pass(ETH_CHAIN, format!("{actual} (set the expected chain id in the configuration to pin it)")),
    }
}

/// The code at the vault address against the committed artifact.
pub fn vault_code(vault: &str, verdict: Result<(), contracts::code::CodeMismatch>) -> Row {
    match verdict {
        Ok(()) => Row::pass(VAULT_CODE, format!("{vault} is the committed Vault.json")),
        Err(mismatch) => Row::fail(
            VAULT_CODE,
            format!("{vault}: {mismatch}; deploy with `contracts`' deploy command or fix network.eth_vault"),
        ),
    }
}

/// The Ethereum vault's key `x(Q)` for the group's internal key `x(P)`: the key-path-only
/// Taproot tweak (see `tss::group`), what `bridgectl keygen` prints as `px`. `None` if `internal`
/// is no x-only key.
pub fn vault_key_of(internal: [u8; 32]) -> Option<[u8; 32]> {
    use bitcoin::key::TapTweak;
    let key = bitcoin::key::XOnlyPublicKey::from_slice(&internal).ok()?;
    let (tweaked, _) = key.tap_tweak(bitcoin::secp256k1::SECP256K1, None);
    Some(tweaked.to_x_only_public_key().serialize())
}

/// The vault's `groupKey` against every key the role knows (the network's Bitcoin vault key,
/// the watchman's share), each named by where it came from.
pub fn vault_group_key(on_chain: [u8; 32], known: &[(&str, [u8; 32])]) -> Row {
    let wrong: Vec<String> = known
        .iter()
        .filter(|(_, key)| *key != on_chain)
        .map(|(source, key)| format!("{source} makes 0x{}", hex::encode(key)))
        .collect();
    if !wrong.is_empty() {
        return Row::fail(
            VAULT_GROUP_KEY,
            format!(
                "the vault holds 0x{} but {}: wrong vault address, share or parameters (or a rotation not yet accepted)",
                hex::encode(on_chain),
                wrong.join(", ")
            ),
        );
    }
    let sources: Vec<&str> = known.iter().map(|(s, _)| *s).collect();
    let against = if sources.is_empty() { "nothing to compare with".into() } else { sources.join(", ") };
    Row::pass(VAULT_GROUP_KEY, format!("0x{} ({against})", hex::encode(on_chain)))
}

/// The vault's `keyEpoch` against the epoch the watchman signs for.
pub fn vault_key_epoch(configured: u64, on_chain: u64) -> Row {
    if configured == on_chain {
        Row::pass(VAULT_KEY_EPOCH, format!("{on_chain}"))
    } else {
        Row::fail(
            VAULT_KEY_EPOCH,
            format!(
                "the vault is at epoch {on_chain}, ethereum.epoch is {configured}: every root it signs would be refused"
            ),
        )
    }
}

/// `getblockchaininfo`'s `chain` against the network's Bitcoin network. Core names testnet3
/// `test` and testnet4 `testnet4`; both are `testnet` to the bridge (same addresses).
pub fn btc_network(expected: BtcNetwork, chain: &str) -> Row {
    let matches = match expected {
        BtcNetwork::Mainnet => chain == "main",
        BtcNetwork::Testnet => chain == "test" || chain == "testnet4",
        BtcNetwork::Signet => chain == "signet",
        BtcNetwork::Regtest => chain == "regtest",
    };
    let want = match expected {
        BtcNetwork::Mainnet => "main",
        BtcNetwork::Testnet => "test or testnet4",
        BtcNetwork::Signet => "signet",
        BtcNetwork::Regtest => "regtest",
    };
    if matches {
        Row::pass(BTC_NETWORK, chain.to_owned())
    } else {
        Row::fail(
            BTC_NETWORK,
            format!("the node is on {chain:?}, the network parameters need {want}: wrong node or port"),
        )
    }
}

/// Whether the node serves every RPC method the role calls.
pub fn btc_rpcs(needed: &[&str], missing: &[String]) -> Row {
    if missing.is_empty() {
        Row::pass(BTC_RPCS, format!("{} methods answer", needed.len()))
    } else {
        Row::fail(BTC_RPCS, format!("the node does not serve {}: use Bitcoin Core 25 or later", missing.join(", ")))
    }
}

/// What asking for a confirmed transaction outside any wallet showed about `-txindex`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxIndex {
    /// `getindexinfo` says it is synced, or the lookup found the transaction.
    Serves(String),
    /// The node has no transaction index (Core's answer names `-txindex`).
    Missing(String),
    /// Still building it.
    Syncing { height: u64 },
}

pub fn btc_txindex(probe: &TxIndex) -> Row {
    match probe {
        TxIndex::Serves(how) => Row::pass(BTC_TXINDEX, how.clone()),
        TxIndex::Missing(why) => {
            Row::fail(BTC_TXINDEX, format!("{why}: restart bitcoind with -txindex=1 (deposits are looked up by txid)"))
        }
        TxIndex::Syncing { height } => Row::fail(
            BTC_TXINDEX,
            format!(
                "the transaction index is still being built (at height {height}): wait until getindexinfo says synced"
            ),
        ),
    }
}

/// The coordinator's key file against `network.coordinator_key` (what confirmers check every
/// batch signature with). `configured` is `None` when the option is unset, which only a devnet,
/// test or bench network may leave (the same names `dev.deposits` is allowed on).
pub fn coordinator_key(configured: Option<[u8; 32]>, key_file: [u8; 32], source: &str, network: &str) -> Row {
    match configured {
        Some(configured) if configured == key_file => {
            Row::pass(COORDINATOR_KEY, format!("0x{}", hex::encode(key_file)))
        }
        Some(configured) => Row::fail(
            COORDINATOR_KEY,
            format!(
                "{source} holds 0x{}, the network parameters name 0x{}: wrong key file or parameters",
                hex::encode(key_file),
                hex::encode(configured)
            ),
        ),
        None if ["devnet", "test", "bench"].iter().any(|p| network.starts_with(p)) => Row::pass(
            COORDINATOR_KEY,
            format!("0x{} from {source} (network.coordinator_key unset, as a {network} may)", hex::encode(key_file)),
        ),
        None => Row::fail(
            COORDINATOR_KEY,
            format!(
                "network.coordinator_key is unset: set it to 0x{} so that a wrong key file is refused at start",
                hex::encode(key_file)
            ),
        ),
    }
}

/// The coordinator's `/info` against the parameters this confirmer replays with: the same
/// network (genesis hash) and the same batch-signing key.
pub fn coordinator_network(params: &bridge::NetworkParams, info_genesis: &str, info_key: &str) -> Row {
    let same =
        |hex_text: &str, bytes: &[u8; 32]| hex_text.trim_start_matches("0x").eq_ignore_ascii_case(&hex::encode(bytes));
    if !same(info_key, &params.coordinator_key) {
        return Row::fail(
            COORDINATOR_NETWORK,
            format!(
                "the coordinator signs with {info_key}, the parameters name 0x{}: wrong parameters file or coordinator",
                hex::encode(params.coordinator_key)
            ),
        );
    }
    if !same(info_genesis, &params.genesis_hash()) {
        return Row::fail(
            COORDINATOR_NETWORK,
            format!(
                "the coordinator's network is {info_genesis}, the parameters make 0x{}: take them from `coordinator params`",
                hex::encode(params.genesis_hash())
            ),
        );
    }
    Row::pass(COORDINATOR_NETWORK, format!("same network {info_genesis} and key"))
}

/// The watchman's share against the network's Bitcoin vault key (when the network has one).
pub fn watchman_share(share_key: [u8; 32], network_key: Option<[u8; 32]>) -> Row {
    match network_key {
        Some(network_key) if network_key != share_key => Row::fail(
            WATCHMAN_SHARE,
            format!(
                "the share's group key is 0x{}, network.btc_vault.group_key is 0x{}: wrong share or parameters",
                hex::encode(share_key),
                hex::encode(network_key)
            ),
        ),
        _ => Row::pass(WATCHMAN_SHARE, format!("opens; group key 0x{}", hex::encode(share_key))),
    }
}

/// Milliseconds in the day a funded wallet must cover.
pub const DAY_MS: u64 = 86_400_000;

/// Whether the Arweave wallet pays for a day of batches: `batches_per_day` publications at
/// `price_per_batch_winston` each (the gateway's `/price` for one batch's bytes).
pub fn arweave_funds(address: &str, balance_winston: u128, price_per_batch_winston: u128, batches_per_day: u64) -> Row {
    let day = price_per_batch_winston.saturating_mul(u128::from(batches_per_day));
    let detail = format!(
        "{address} holds {balance_winston} winston; a day of {batches_per_day} batches at {price_per_batch_winston} each costs {day}"
    );
    if balance_winston >= day && balance_winston > 0 {
        let days = balance_winston.checked_div(day).unwrap_or(u128::MAX);
        Row::pass(ARWEAVE_FUNDS, format!("{detail} ({days} days)"))
    } else {
        Row::fail(ARWEAVE_FUNDS, format!("{detail}: fund the wallet before starting"))
    }
}

/// Batches a day at most when traffic never stops: one per `batch.max_age_ms` (a full batch
/// seals sooner, but then it carries more per byte posted).
pub fn batches_per_day(max_age_ms: u64) -> u64 {
    DAY_MS / max_age_ms.max(1)
}

#[cfg(test)]
mod tests;
