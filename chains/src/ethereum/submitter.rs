//! The vault written: `submitWithdrawals`, `withdrawMany` and `submitAndWithdraw` sent from
//! one account, idempotent and fee-bounded, with what each payment did.

use super::*;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the Ethereum node: {0}")]
    Rpc(String),
    #[error(
        "the vault's ranges end at batch {settled_through}, so a range starting at batch {first} {}: re-read the vault and propose again",
        if *first <= *settled_through { "overlaps one it holds" } else { "leaves a gap" }
    )]
    RangeConflict { first: u64, settled_through: u64 },
    #[error("the vault refused the call: {0:?}")]
    Refused(Box<Vault::VaultErrors>),
    #[error("the call reverted: {0}")]
    Reverted(String),
    /// Mined, and reverted: its gas was spent.
    #[error("{0} reverted on chain")]
    RevertedOnChain(String),
    #[error("transaction with nonce {nonce} not mined after {attempts} fee bumps")]
    Stuck { nonce: u64, attempts: u32 },
    #[error("the vault is paused by its guardian: nothing is sent until the watchmen unpause it (docs/OPERATIONS.md)")]
    Paused,
    #[error(
        "the call needs {needed} gas and a block holds {block_limit}: send fewer leaves per transaction (`max_per_tx`)"
    )]
    AboveBlockGasLimit { needed: u64, block_limit: u64 },
    #[error(
        "fees are above the ceiling: {} gwei per gas now, at most {} gwei configured (max_fee_per_gas_gwei); nothing was sent, it is retried when fees fall",
        gwei(*fee_per_gas),
        gwei(*ceiling)
    )]
    FeeAboveCeiling { fee_per_gas: u128, ceiling: u128 },
    #[error(transparent)]
    Fees(#[from] FeeError),
}

/// Wei per gas as gwei, for people.
pub fn gwei(wei: u128) -> f64 {
    // Display only: a fee is far below f64's exact range.
    wei as f64 / fees::GWEI as f64
}

impl From<alloy::contract::Error> for SubmitError {
    fn from(e: alloy::contract::Error) -> Self {
        match e.as_decoded_interface_error::<Vault::VaultErrors>() {
            Some(error) => SubmitError::Refused(Box::new(error)),
            None => SubmitError::Rpc(e.to_string()),
        }
    }
}

impl From<alloy::transports::TransportError> for SubmitError {
    fn from(e: alloy::transports::TransportError) -> Self {
        match e.as_error_resp().and_then(|r| r.as_revert_data()) {
            Some(data) => match <Vault::VaultErrors as alloy::sol_types::SolInterface>::abi_decode(&data) {
                Ok(error) => SubmitError::Refused(Box::new(error)),
                Err(_) => SubmitError::Reverted(format!("0x{}", hex::encode(&data))),
            },
            None => SubmitError::Rpc(e.to_string()),
        }
    }
}

/// A leaf by its batch and its index in that batch, as the vault names it.
pub type LeafKey = (u64, u32);

/// What [`Submitter::pay`] did.
#[derive(Debug, Default)]
pub struct Payment {
    /// One per `withdrawMany` transaction mined.
    pub receipts: Vec<TransactionReceipt>,
    /// Leaves the vault could not pay (`WithdrawalFailed`: the recipient refused ether or burnt
    /// its gas, or the token refused the transfer). They stay unpaid and payable by anyone with
    /// `withdraw`; the rest of their transaction was paid.
    pub failed: Vec<LeafKey>,
    /// Leaves left for later because their token's cap has no room for them now (the cap
    /// refills with time; paying them now would only revert).
    pub deferred: Vec<LeafKey>,
}

/// What one more attempt at a leaf the vault could not pay did.
#[derive(Debug)]
pub enum Retry {
    /// Paid now, by this transaction.
    Paid(Box<TransactionReceipt>),
    /// Paid meanwhile (someone claimed it).
    AlreadyPaid,
    /// The recipient or the token still refuses; nothing was spent if the simulation said so.
    StillRefused,
}

/// Gas a `withdrawMany` leaf costs besides its transfer's `PAYOUT_GAS`, rounded well up: its
/// calldata and proof (a few thousand), the paid bit and the cap (cold stores, about 30,000),
/// and the call itself to a new account with value (about 37,000).
const LEAF_OVERHEAD_GAS: u64 = 100_000;

/// The leaves a `withdrawMany` receipt reports unpaid: `WithdrawalFailed` logs of the vault
/// only, since a recipient contract called during the payout can emit a look-alike event.
pub fn failed_leaves(receipt: &TransactionReceipt, vault: Address) -> Vec<LeafKey> {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|log| log.address() == vault)
        .filter_map(|log| log.log_decode::<Vault::WithdrawalFailed>().ok())
        .map(|log| (log.inner.data.batch, log.inner.data.index))
        .collect()
}

/// The vault function a call's input names, for metrics, logs and the devnet's tallies.
pub fn call_name(input: &[u8]) -> &'static str {
    match input.get(..4) {
        Some(selector) if selector == Vault::submitWithdrawalsCall::SELECTOR => "submitWithdrawals",
        Some(selector) if selector == Vault::withdrawManyCall::SELECTOR => "withdrawMany",
        Some(selector) if selector == Vault::submitAndWithdrawCall::SELECTOR => "submitAndWithdraw",
        Some(selector) if selector == Vault::withdrawCall::SELECTOR => "withdraw",
        _ => "other",
    }
}

/// Sends `submitWithdrawals` and `withdrawMany`. Idempotent: it reads the vault's roots and
/// bitmap first and sends only what is missing, so it can be rerun after a crash. Nonces come
/// from the account's confirmed transaction count, so a restart replaces (at a higher fee) a
/// transaction left pending rather than queueing behind it; a transaction not mined within
/// `confirm_timeout` is re-sent with the same nonce and 25% higher fees, up to `max_bumps` times.
/// Fees come from `eth_feeHistory` under the [`FeePolicy`]'s ceiling ([`fees`]): above it a call
/// is not sent ([`SubmitError::FeeAboveCeiling`]), and bumps stop at it.
#[derive(Debug, Clone)]
pub struct Submitter {
    /// A provider with a wallet for `from`.
    provider: DynProvider,
    vault: Vault::VaultInstance<DynProvider>,
    from: Address,
    pub confirm_timeout: Duration,
    pub max_bumps: u32,
    /// Leaves paid per `withdrawMany` transaction (fewer when the block's gas limit says so).
    pub max_per_tx: usize,
    fees: FeePolicy,
    fee_bumps: Arc<AtomicU64>,
    /// The fee per gas (wei) of the pending block when last read, shared by clones.
    fee_per_gas: Arc<AtomicU64>,
    /// Held for a whole send, from reading the nonce until the transaction is mined or given
    /// up, and shared by clones: one account has one nonce sequence, so two sends from it
    /// (a watchman's settlement and its operator's admin call) must not read the same nonce
    /// and replace each other. A waiting send waits at most one send's bound:
    /// `confirm_timeout × (max_bumps + 1)`.
    sending: Arc<tokio::sync::Mutex<()>>,
}

impl Submitter {
    /// A submitter paying gas from the account of `key` (hex) through the node at `url`.
    pub fn connect(url: &str, tls: &Tls, key: &str, vault: bridge::Address) -> Result<Self, String> {
        let (provider, from) = signing_provider(url, tls, key)?;
        Ok(Submitter::new(provider, contracts::to_alloy(vault), from))
    }

    pub fn new(provider: DynProvider, vault: Address, from: Address) -> Self {
        Submitter {
            vault: Vault::new(vault, provider.clone()),
            provider,
            from,
            confirm_timeout: Duration::from_secs(60),
            max_bumps: 5,
            max_per_tx: 100,
            fees: FeePolicy::default(),
            fee_bumps: Arc::new(AtomicU64::new(0)),
            fee_per_gas: Arc::new(AtomicU64::new(0)),
            sending: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Prices transactions with `fees` instead of [`FeePolicy::default`].
    pub fn with_fees(mut self, fees: FeePolicy) -> Self {
        self.fees = fees;
        self
    }

    pub fn fee_policy(&self) -> &FeePolicy {
        &self.fees
    }

    /// What the network asks now under this submitter's policy, read with `eth_feeHistory`.
    pub async fn fee_decision(&self) -> Result<FeeDecision, SubmitError> {
        let history = fee_history(&self.provider, &self.fees).await?;
        let decision = fees::decide(&history, &self.fees)?;
        let fee_per_gas = match decision {
            FeeDecision::Send(fees) => fees.fee_per_gas,
            FeeDecision::Defer { fee_per_gas, .. } => fee_per_gas,
        };
        self.fee_per_gas.store(u64::try_from(fee_per_gas).unwrap_or(u64::MAX), Ordering::Relaxed);
        Ok(decision)
    }

    /// The pending block's fee per gas (wei) when this submitter last read it; 0 before.
    pub fn last_fee_per_gas(&self) -> u64 {
        self.fee_per_gas.load(Ordering::Relaxed)
    }

    /// Whether the vault has paid leaf `index` of batch `batch`.
    pub async fn is_paid(&self, batch: u64, index: u32) -> Result<bool, SubmitError> {
        Ok(self.vault.isPaid(batch, index).call().await?)
    }

    /// The node's latest block number: turns between submitters are counted in blocks.
    pub async fn block_number(&self) -> Result<u64, SubmitError> {
        Ok(self.provider.get_block_number().await?)
    }

    /// How many ranges the vault holds and the last batch they cover.
    pub async fn progress(&self) -> Result<VaultProgress, SubmitError> {
        VaultReader(self.vault.clone()).progress().await
    }

    /// Range `number` as the vault holds it; `None` if it holds no such range yet.
    pub async fn range(&self, number: u64) -> Result<Option<OnchainRange>, SubmitError> {
        VaultReader(self.vault.clone()).range(number).await
    }

    /// Whether every leaf of `tree` is paid (read-only).
    pub async fn all_paid(&self, tree: &EthWithdrawalTree) -> Result<bool, SubmitError> {
        for w in tree.withdrawals() {
            if !self.vault.isPaid(w.batch, w.index).call().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Submits the root of batches `first..=last` with the group signature. `None` if the vault
    /// holds that very range already (another watchman submitted it); an error, with nothing
    /// sent, if the vault's ranges moved so that this one would overlap or leave a gap.
    pub async fn submit_range(
        &self,
        first: u64,
        last: u64,
        root: [u8; 32],
        sig: &EvmSchnorrSignature,
    ) -> Result<Option<TransactionReceipt>, SubmitError> {
        if self.vault_holds_range(None, (first, last), root).await? {
            return Ok(None);
        }
        let call = Vault::submitWithdrawalsCall { first, last, root: B256::from(root), sig: vault_signature(sig) };
        self.send(call.abi_encode()).await.map(Some)
    }

    /// Submits the root of batches `first..=last` (range `range`, whose tree is `tree`) and pays
    /// its leaves in the same transaction (`submitAndWithdraw`), so a withdrawal is paid in its
    /// root's block; leaves beyond one transaction's worth follow in `withdrawMany`, and leaves
    /// over a token's cap wait (`payment.deferred`). `None`, with nothing sent, if the vault
    /// holds that very range already; an error, with nothing sent, if its ranges moved so that
    /// this one would overlap or leave a gap.
    pub async fn submit_and_pay(
        &self,
        range: u64,
        (first, last): (u64, u64),
        tree: &EthWithdrawalTree,
        sig: &EvmSchnorrSignature,
    ) -> Result<Option<Payment>, SubmitError> {
        let root = tree.root();
        if self.vault_holds_range(Some(range), (first, last), root).await? {
            return Ok(None);
        }
        let mut payment = Payment::default();
        let unpaid = self.payable(range, tree, &mut payment).await?;
        let per_tx = self.leaves_per_tx().await?;
        let (now, later) = unpaid.split_at(per_tx.min(unpaid.len()));
        let call = Vault::submitAndWithdrawCall {
            first,
            last,
            root: B256::from(root),
            sig: vault_signature(sig),
            payouts: contracts::payouts(tree, now.iter().copied()),
        };
        let receipt = self.send(call.abi_encode()).await?;
        self.note_paid(range, receipt, &mut payment);
        self.pay_positions(range, tree, later, per_tx, &mut payment).await?;
        Ok(Some(payment))
    }

    /// Pays every leaf of `tree` (range `range`'s tree) not yet paid, `max_per_tx` per
    /// transaction and never more than a block's gas limit can hold. A leaf the vault cannot pay
    /// does not revert its transaction: the vault reports it (`WithdrawalFailed`), it is listed
    /// in `failed`, and the rest are paid.
    pub async fn pay(&self, range: u64, tree: &EthWithdrawalTree) -> Result<Payment, SubmitError> {
        let mut payment = Payment::default();
        if tree.withdrawals().is_empty() {
            return Ok(payment);
        }
        // A paused vault refuses every payout; sending would only burn gas.
        if self.vault.paused().call().await? {
            return Err(SubmitError::Paused);
        }
        let unpaid = self.payable(range, tree, &mut payment).await?;
        if unpaid.is_empty() {
            return Ok(payment);
        }
        let per_tx = self.leaves_per_tx().await?;
        self.pay_positions(range, tree, &unpaid, per_tx, &mut payment).await?;
        Ok(payment)
    }

    /// Whether the vault holds the root of batches `first..=last` already (then nothing is to
    /// be sent); an error if its ranges moved so that this one (as range `range`, when given)
    /// would overlap or leave a gap, or if it is paused; `false` if it is to be submitted.
    async fn vault_holds_range(
        &self,
        range: Option<u64>,
        (first, last): (u64, u64),
        root: [u8; 32],
    ) -> Result<bool, SubmitError> {
        let progress = self.progress().await?;
        // The last range is read only when it may be this one: one call fewer on every send.
        let last_held = match progress.range_count.checked_sub(1) {
            Some(number) if progress.settled_through >= last => self.range(number).await?,
            _ => None,
        };
        if range_on_vault(progress, last_held, range, (first, last), root)? == RangeOnVault::Held {
            return Ok(true);
        }
        if self.vault.paused().call().await? {
            return Err(SubmitError::Paused);
        }
        Ok(false)
    }

    /// Leaves per payout transaction: `max_per_tx`, and never more than a block can hold.
    async fn leaves_per_tx(&self) -> Result<usize, SubmitError> {
        Ok(self.max_per_tx.max(1).min(self.leaves_per_block().await?))
    }

    /// Pays the leaves at `positions` in `tree` with `withdrawMany`, `per_tx` per transaction.
    async fn pay_positions(
        &self,
        range: u64,
        tree: &EthWithdrawalTree,
        positions: &[u32],
        per_tx: usize,
        payment: &mut Payment,
    ) -> Result<(), SubmitError> {
        for chunk in positions.chunks(per_tx.max(1)) {
            let call = Vault::withdrawManyCall { range, payouts: contracts::payouts(tree, chunk.iter().copied()) };
            let receipt = self.send(call.abi_encode()).await?;
            self.note_paid(range, receipt, payment);
        }
        Ok(())
    }

    /// Adds a mined payout transaction, and the leaves it could not pay, to `payment`.
    fn note_paid(&self, range: u64, receipt: TransactionReceipt, payment: &mut Payment) {
        let failed = failed_leaves(&receipt, *self.vault.address());
        if !failed.is_empty() {
            tracing::warn!(range, ?failed, "the vault could not pay these leaves; the others are paid");
        }
        payment.failed.extend(failed);
        payment.receipts.push(receipt);
    }

    /// The positions in `tree` of the leaves not paid yet whose tokens' caps have room for them
    /// now; the others go to `payment.deferred`.
    async fn payable(
        &self,
        range: u64,
        tree: &EthWithdrawalTree,
        payment: &mut Payment,
    ) -> Result<Vec<u32>, SubmitError> {
        // Each token's room under its cap now; leaves that do not fit wait for it to refill.
        let mut room: BTreeMap<Address, U256> = BTreeMap::new();
        let mut unpaid = Vec::new();
        for (position, w) in (0u32..).zip(tree.withdrawals()) {
            if self.vault.isPaid(w.batch, w.index).call().await? {
                continue;
            }
            let token = contracts::to_alloy(w.token);
            let available = match room.get_mut(&token) {
                Some(available) => available,
                None => room.entry(token).or_insert(self.vault.availableUnderCap(token).call().await?),
            };
            let amount = U256::from(w.amount.0);
            if amount <= *available {
                *available -= amount;
                unpaid.push(position);
            } else {
                payment.deferred.push((w.batch, w.index));
            }
        }
        if !payment.deferred.is_empty() {
            tracing::warn!(range, deferred = ?payment.deferred, "leaves over their token's cap wait for it to refill");
        }
        Ok(unpaid)
    }

    /// How many leaves one `withdrawMany` may carry so that even if every recipient burns all
    /// its `PAYOUT_GAS`, the transaction fits in three quarters of a block (the rest is margin
    /// for the estimate's 20% and the block's other users).
    async fn leaves_per_block(&self) -> Result<usize, SubmitError> {
        let stipend = u64::try_from(self.vault.PAYOUT_GAS().call().await?).unwrap_or(u64::MAX);
        let worst_leaf = stipend.saturating_add(LEAF_OVERHEAD_GAS);
        let block_limit = self.block_gas_limit().await?;
        let fits = (block_limit / 4 * 3) / worst_leaf.max(1);
        Ok(usize::try_from(fits).unwrap_or(usize::MAX).max(1))
    }

    async fn block_gas_limit(&self) -> Result<u64, SubmitError> {
        let block = self.provider.get_block_by_number(BlockNumberOrTag::Latest).await?;
        block.map(|b| b.header.gas_limit).ok_or_else(|| SubmitError::Rpc("the node has no latest block".into()))
    }

    /// Tries once more to pay leaf `index` of batch `batch` (held by range `range`, whose tree
    /// is `tree`), a leaf the vault could not pay before. `withdraw` is simulated first (free):
    /// if the recipient or the token still refuses, nothing is sent. Otherwise the leaf goes
    /// through `withdrawMany`, whose transfer is bounded by `PAYOUT_GAS`, so a retry never
    /// costs more than the first attempt did.
    pub async fn retry(
        &self,
        range: u64,
        tree: &EthWithdrawalTree,
        (batch, index): LeafKey,
    ) -> Result<Retry, SubmitError> {
        let Some(position) = tree.position(batch, index) else {
            return Err(SubmitError::Reverted(format!("range {range}'s tree has no leaf {index} of batch {batch}")));
        };
        let (Some(leaf), Some(proof)) = (tree.withdrawals().get(position as usize), tree.proof(position)) else {
            return Err(SubmitError::Reverted(format!("no proof for leaf {index} of batch {batch}")));
        };
        self.retry_proven(range, leaf, &proof).await
    }

    /// [`Submitter::retry`] with the leaf and its proof in range `range`'s tree, kept by the
    /// caller (the tree itself may be long gone from memory).
    pub async fn retry_proven(
        &self,
        range: u64,
        leaf: &bridge::withdrawals::EthWithdrawal,
        proof: &[[u8; 32]],
    ) -> Result<Retry, SubmitError> {
        let (batch, index) = (leaf.batch, leaf.index);
        if self.vault.isPaid(batch, index).call().await? {
            return Ok(Retry::AlreadyPaid);
        }
        if self.vault.paused().call().await? {
            return Err(SubmitError::Paused);
        }
        let p = Vault::Payout {
            batch,
            index,
            token: contracts::to_alloy(leaf.token),
            recipient: contracts::to_alloy(leaf.recipient),
            amount: U256::from(leaf.amount.0),
            proof: proof.iter().map(|node| contracts::b256(*node)).collect(),
        };
        let simulated = self
            .vault
            .withdraw(range, batch, index, p.token, p.recipient, p.amount, p.proof.clone())
            .from(self.from)
            .call()
            .await;
        match simulated.map_err(SubmitError::from) {
            Ok(_) => {}
            Err(SubmitError::Refused(error)) if matches!(*error, Vault::VaultErrors::WithdrawalRefused(_)) => {
                return Ok(Retry::StillRefused);
            }
            Err(SubmitError::Refused(error)) if matches!(*error, Vault::VaultErrors::AlreadyPaid(_)) => {
                return Ok(Retry::AlreadyPaid);
            }
            Err(other) => return Err(other),
        }
        let call = Vault::withdrawManyCall { range, payouts: vec![p] };
        let receipt = self.send(call.abi_encode()).await?;
        if failed_leaves(&receipt, *self.vault.address()).contains(&(batch, index)) {
            // It takes more than `PAYOUT_GAS` (the simulation forwarded all gas): only a
            // `withdraw` with more gas, sent by whoever wants it paid, can pay it.
            return Ok(Retry::StillRefused);
        }
        Ok(Retry::Paid(Box::new(receipt)))
    }

    /// Sends a call to the vault, managing the nonce and bumping the fee while it is not mined.
    /// One send at a time per submitter and its clones (see `sending`).
    pub(crate) async fn send(&self, input: Vec<u8>) -> Result<TransactionReceipt, SubmitError> {
        let call = call_name(&input);
        let _one_at_a_time = self.sending.lock().await;
        let sent = self.send_once(input).await;
        if let Err(SubmitError::RevertedOnChain(why)) = &sent {
            // Mined and reverted: its gas is spent for nothing (another submitter's transaction
            // got there first, or the vault's state moved between the simulation and the block).
            metrics::counter!("watchman_eth_submission_reverted_total", "call" => call).increment(1);
            tracing::warn!(call, %why, "a vault transaction reverted on chain");
        }
        sent
    }

    async fn send_once(&self, input: Vec<u8>) -> Result<TransactionReceipt, SubmitError> {
        let nonce = self.provider.get_transaction_count(self.from).latest().await?;
        let base = TransactionRequest::default().with_from(self.from).with_to(*self.vault.address()).with_input(input);
        // Simulating first turns a revert into its custom error instead of a spent fee.
        let gas = self.provider.estimate_gas(base.clone()).await?;
        // The limit never exceeds what a block can hold: a transaction above it would never be
        // mined, and its nonce would hold back every later payout.
        let block_limit = self.block_gas_limit().await?;
        if gas > block_limit {
            return Err(SubmitError::AboveBlockGasLimit { needed: gas, block_limit });
        }
        let gas_limit = (gas + gas / 5).min(block_limit);
        let mut fees = match self.fee_decision().await? {
            FeeDecision::Send(fees) => fees,
            FeeDecision::Defer { fee_per_gas, ceiling } => {
                return Err(SubmitError::FeeAboveCeiling { fee_per_gas, ceiling });
            }
        };
        // Every version of this transaction sent: any of them may be the one mined.
        let mut sent: Vec<B256> = Vec::new();
        for attempt in 0..=self.max_bumps {
            let tx = base
                .clone()
                .with_nonce(nonce)
                .with_gas_limit(gas_limit)
                .with_max_fee_per_gas(fees.max_fee_per_gas)
                .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
            match self.provider.send_transaction(tx).await {
                Ok(pending) => {
                    sent.push(*pending.tx_hash());
                    match pending.with_timeout(Some(self.confirm_timeout)).get_receipt().await {
                        Ok(receipt) => return Self::succeeded(receipt),
                        Err(error) => tracing::warn!(nonce, attempt, %error, "not mined in time; bumping the fee"),
                    }
                }
                Err(error) => {
                    let text = error.to_string();
                    if !(text.contains("underpriced")
                        || text.contains("already known")
                        || text.contains("nonce too low"))
                    {
                        return Err(error.into());
                    }
                    tracing::warn!(nonce, attempt, %text, "the node refused this version");
                }
            }
            if let Some(receipt) = self.mined(&sent).await? {
                return Self::succeeded(receipt);
            }
            if self.provider.get_transaction_count(self.from).latest().await? > nonce {
                // The nonce went to a transaction not sent here: the caller re-reads the vault.
                return Err(SubmitError::Rpc(format!("nonce {nonce} was used by another transaction")));
            }
            match fees::bumped(fees, self.fees.max_fee_per_gas) {
                Some(more) => {
                    fees = more;
                    self.fee_bumps.fetch_add(1, Ordering::Relaxed);
                }
                // At the ceiling already: if fees rose past it, stop and say so (the pending
                // version may still be mined; the caller re-reads the vault next turn).
                None => {
                    if let FeeDecision::Defer { fee_per_gas, ceiling } = self.fee_decision().await? {
                        return Err(SubmitError::FeeAboveCeiling { fee_per_gas, ceiling });
                    }
                    tracing::warn!(nonce, attempt, "not mined at the fee ceiling; waiting for it as it is");
                }
            }
        }
        Err(SubmitError::Stuck { nonce, attempts: self.max_bumps })
    }

    async fn mined(&self, sent: &[B256]) -> Result<Option<TransactionReceipt>, SubmitError> {
        for hash in sent {
            if let Some(receipt) = self.provider.get_transaction_receipt(*hash).await? {
                return Ok(Some(receipt));
            }
        }
        Ok(None)
    }

    fn succeeded(receipt: TransactionReceipt) -> Result<TransactionReceipt, SubmitError> {
        if receipt.status() {
            Ok(receipt)
        } else {
            Err(SubmitError::RevertedOnChain(format!("transaction {}", receipt.transaction_hash)))
        }
    }

    /// How many times a fee was bumped since this submitter was made (shared by its clones).
    pub fn fee_bumps(&self) -> u64 {
        self.fee_bumps.load(Ordering::Relaxed)
    }

    pub fn vault(&self) -> Address {
        *self.vault.address()
    }

    /// The vault's contract instance, for the admin calls (`crate::vault_admin`).
    pub(crate) fn vault_contract(&self) -> &Vault::VaultInstance<DynProvider> {
        &self.vault
    }
}
