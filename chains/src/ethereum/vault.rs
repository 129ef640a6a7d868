//! The vault read with no key: what it holds of each asset, and where its withdrawal ranges
//! stand (for a watchman's policy and the solvency check).

use super::*;

/// The vault's balance of each asset: ether and the given ERC-20 tokens.
pub async fn vault_holdings(
    provider: &DynProvider,
    vault: Address,
    tokens: &[Address],
) -> Result<BTreeMap<AssetId, U256>, alloy::contract::Error> {
    let mut holdings = BTreeMap::new();
    holdings.insert(AssetId::Eth, provider.get_balance(vault).await?);
    for token in tokens {
        let balance = TestToken::new(*token, provider.clone()).balanceOf(vault).call().await?;
        holdings.insert(AssetId::Erc20(from_alloy(*token)), balance);
    }
    Ok(holdings)
}

/// [`vault_holdings`] by URL in the ledger's types: what the vault at `vault` holds of ether and
/// of each token, in base units.
pub async fn holdings_of(
    url: &str,
    tls: &Tls,
    vault: bridge::Address,
    tokens: &[bridge::Address],
) -> Result<BTreeMap<AssetId, u128>, String> {
    let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
    let tokens: Vec<Address> = tokens.iter().map(|t| contracts::to_alloy(*t)).collect();
    let held = vault_holdings(&provider, contracts::to_alloy(vault), &tokens)
        .await
        .map_err(|e| format!("the Ethereum node at {url}: {e}"))?;
    held.into_iter()
        .map(|(asset, amount)| {
            let amount =
                u128::try_from(amount).map_err(|_| format!("the vault's {asset} balance overflows 128 bits"))?;
            Ok((asset, amount))
        })
        .collect()
}

/// Where the vault's ranges stand: how many it holds, and the last batch they cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VaultProgress {
    /// The next range's number.
    pub range_count: u64,
    /// The last batch covered by a range (0 before the first range): the next starts after it.
    pub settled_through: u64,
}

/// Reads where the vault's ranges stand, with no key: what a watchman that signs but does not
/// submit needs for its policy's gap and overlap checks.
#[derive(Debug, Clone)]
pub struct VaultReader(pub(super) Vault::VaultInstance<DynProvider>);

impl VaultReader {
    pub fn connect(url: &str, tls: &Tls, vault: bridge::Address) -> Result<Self, String> {
        let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
        Ok(VaultReader::new(provider, contracts::to_alloy(vault)))
    }

    pub fn new(provider: DynProvider, vault: Address) -> Self {
        VaultReader(Vault::new(vault, provider))
    }

    pub async fn progress(&self) -> Result<VaultProgress, SubmitError> {
        Ok(VaultProgress {
            range_count: self.0.rangeCount().call().await?,
            settled_through: self.0.settledThrough().call().await?,
        })
    }

    /// The node's latest block number.
    pub async fn block_number(&self) -> Result<u64, SubmitError> {
        Ok(self.0.provider().get_block_number().await?)
    }

    /// Range `number` as the vault holds it; `None` if it holds no such range yet.
    pub async fn range(&self, number: u64) -> Result<Option<OnchainRange>, SubmitError> {
        let range = self.0.ranges(number).call().await?;
        Ok((range.root != B256::ZERO).then_some(OnchainRange {
            number,
            first: range.first,
            last: range.last,
            root: range.root.0,
        }))
    }

    /// Whether the vault has paid leaf `index` of `batch` (its bitmap, `isPaid`).
    pub async fn is_paid(&self, batch: u64, index: u32) -> Result<bool, SubmitError> {
        Ok(self.0.isPaid(batch, index).call().await?)
    }

    /// The node's head block.
    pub async fn head(&self) -> Result<u64, SubmitError> {
        Ok(self.0.provider().get_block_number().await?)
    }

    /// The vault's `Withdrawn` log paying leaf `index` of `batch` in `token` (zero for ether)
    /// within blocks `from..=to`: its transaction and block. The filter names all three indexed
    /// topics, so a window holds at most that one log (or a reorg's removed copy, skipped). A
    /// refusal ([`LogsError::Refused`]) is the caller's cue to ask for fewer blocks; a node that
    /// does not answer is [`LogsError::Unreachable`], and fewer blocks would not help.
    pub async fn withdrawn_log(
        &self,
        batch: u64,
        index: u32,
        token: bridge::Address,
        from: u64,
        to: u64,
    ) -> Result<Option<(B256, u64)>, crate::ethereum_view::LogsError> {
        let filter = Filter::new()
            .address(*self.0.address())
            .event_signature(Vault::Withdrawn::SIGNATURE_HASH)
            .topic1(B256::from(U256::from(batch)))
            .topic2(B256::from(U256::from(index)))
            .topic3(contracts::to_alloy(token).into_word())
            .from_block(from)
            .to_block(to);
        let logs = self.0.provider().get_logs(&filter).await.map_err(crate::ethereum_view::LogsError::from_node)?;
        Ok(logs.iter().filter(|log| !log.removed).find_map(|log| Some((log.transaction_hash?, log.block_number?))))
    }

    /// The range covering `batch` (the vault's `rangeOf`), `None` while no range covers it.
    pub async fn range_of(&self, batch: u64) -> Result<Option<OnchainRange>, SubmitError> {
        let found = self.0.rangeOf(batch).call().await?;
        if !found.found {
            return Ok(None);
        }
        self.range(found.range).await
    }
}

/// One range the vault holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnchainRange {
    pub number: u64,
    pub first: u64,
    pub last: u64,
    pub root: [u8; 32],
}

/// What the vault, as read, makes of a range a watchman is about to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOnVault {
    /// It holds that very range already (another watchman sent it): send nothing.
    Held,
    /// It is the vault's next range: send it.
    Next,
}

/// The decision before a range's root is sent, apart from the reads it needs: `progress` as
/// read, `last_held` the vault's last range (read only when `progress` covers `last`; `None`
/// otherwise), `range` the range number the send names (`None`: not named). A range that would
/// overlap the vault's or leave a gap is a [`SubmitError::RangeConflict`], with nothing sent.
pub fn range_on_vault(
    progress: VaultProgress,
    last_held: Option<OnchainRange>,
    range: Option<u64>,
    (first, last): (u64, u64),
    root: [u8; 32],
) -> Result<RangeOnVault, SubmitError> {
    if progress.settled_through >= last && last_held.is_some_and(|h| (h.first, h.last, h.root) == (first, last, root)) {
        return Ok(RangeOnVault::Held);
    }
    if first != progress.settled_through + 1 || range.is_some_and(|range| range != progress.range_count) {
        return Err(SubmitError::RangeConflict { first, settled_through: progress.settled_through });
    }
    Ok(RangeOnVault::Next)
}

#[cfg(test)]
mod range_tests {
    use super::*;

    const ROOT: [u8; 32] = [7; 32];

    fn progress(range_count: u64, settled_through: u64) -> VaultProgress {
        VaultProgress { range_count, settled_through }
    }

    fn held(first: u64, last: u64, root: [u8; 32]) -> Option<OnchainRange> {
        Some(OnchainRange { number: 1, first, last, root })
    }

    #[test]
    fn the_very_range_held_is_not_sent_again() {
        let decision = range_on_vault(progress(2, 9), held(5, 9, ROOT), Some(1), (5, 9), ROOT);
        assert_eq!(decision.unwrap(), RangeOnVault::Held);
    }

    #[test]
    fn the_next_range_is_sent() {
        assert_eq!(range_on_vault(progress(2, 9), None, Some(2), (10, 12), ROOT).unwrap(), RangeOnVault::Next);
        assert_eq!(range_on_vault(progress(0, 0), None, None, (1, 3), ROOT).unwrap(), RangeOnVault::Next);
    }

    #[test]
    fn an_overlap_a_gap_another_root_or_another_number_is_a_conflict() {
        let conflict = |result: Result<RangeOnVault, SubmitError>| {
            matches!(result, Err(SubmitError::RangeConflict { settled_through: 9, .. }))
        };
        // Covered, but with another root: the vault holds a different range there.
        assert!(conflict(range_on_vault(progress(2, 9), held(5, 9, [8; 32]), Some(1), (5, 9), ROOT)));
        assert!(conflict(range_on_vault(progress(2, 9), None, Some(2), (8, 12), ROOT)));
        assert!(conflict(range_on_vault(progress(2, 9), None, Some(2), (11, 12), ROOT)));
        assert!(conflict(range_on_vault(progress(2, 9), None, Some(3), (10, 12), ROOT)));
    }
}
