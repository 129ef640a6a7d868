//! The state-transition function: `apply(&mut State, &Tx) -> Result<Receipt, TxError>`.
//! Every check runs before any write, so a rejected transaction leaves the state byte for byte
//! as it was.

use crate::address::Address;
use crate::amount::Amount;
use crate::asset::{AssetId, Chain};
use crate::btc_payout::{
    CONSOLIDATION_BUDGET_FACTOR, CONSOLIDATION_FEE_RATE_FACTOR, MAX_PAYOUT_INPUTS, MAX_PAYOUT_OUTPUTS, MAX_QUEUE_SCAN,
    MIN_CHANGE_SAT, MIN_CONSOLIDATION_INPUTS, PayoutError, PayoutPlan, funding_capacity, select_consolidation,
    select_inputs,
};
use crate::btc_vault::{BtcVaultParams, OutPoint, QueuedWithdrawal, VaultOwner, VaultUtxo};
use crate::passkey::PasskeyError;
use crate::recipient::{Recipient, RecipientError};
use crate::rotation::{
    KeyedDepositError, RotationError, check_rotation, deposit_owner_at, is_current_at, keyed_deposit_owner, vault_keys,
};
use crate::signature::SignatureError;
use crate::state::{Changes, State};
use crate::tx::{Deposit, L1Ref, SystemTx, Transfer, Tx, TxPlace, UserTx, Withdraw};
use crate::withdrawals::BtcPayout;

/// Why a transaction was refused. Each has a stable `code()` for APIs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("bad signature: {0}")]
    Signature(SignatureError),
    #[error(
        "the signature is by {signer}, not by the `from` account {from}: check the signing key and the EIP-712 domain (chainId and vault)"
    )]
    SignerMismatch { signer: Address, from: Address },
    #[error("the EIP-712 domain is not this network's: {0}")]
    WrongDomain(String),
    #[error("asset {0} is not accepted by this network")]
    UnknownAsset(AssetId),
    #[error("the amount must be greater than zero")]
    ZeroAmount,
    #[error("the fee {fee} is below this network's minimum of {min_fee} for {asset}")]
    FeeTooLow { asset: AssetId, fee: Amount, min_fee: Amount },
    #[error("a transfer to the sending account itself is refused")]
    SelfTransfer,
    #[error("nonce {got} was already used; the account's next nonce is {expected}")]
    NonceReplayed { expected: u64, got: u64 },
    #[error("nonce {got} skips ahead; the account's next nonce is {expected}")]
    NonceGap { expected: u64, got: u64 },
    #[error("insufficient {asset}: the account holds {available} and this needs {needed}")]
    Overdraft { asset: AssetId, available: Amount, needed: Amount },
    #[error("the amounts overflow 128 bits")]
    Overflow,
    #[error("invalid recipient: {0}")]
    InvalidRecipient(RecipientError),
    #[error("the deposit {0:?} has already been credited")]
    DepositAlreadyCredited(L1Ref),
    #[error("the deposit's chain {chain}, its L1 reference and its asset {asset} do not agree")]
    DepositChainMismatch { chain: Chain, asset: AssetId },
    #[error("this network has no Bitcoin vault configured, so it takes no Bitcoin withdrawals")]
    NoBitcoinVault,
    #[error("the fee rate {got} sat/vB is outside this network's bounds {min}..={max}")]
    FeeRateOutOfBounds { got: u64, min: u64, max: u64 },
    #[error("no Bitcoin withdrawal is waiting for a payout")]
    NothingToPay,
    #[error(
        "the vault's unplanned outputs hold {available} sat in all, and this payout needs {needed} sat within {max_inputs} inputs: wait for an earlier payout's change to confirm"
    )]
    VaultLiquidity { needed: u64, available: u64, max_inputs: usize },
    #[error(
        "the withdrawals' fees ({budget} sat) do not cover the payout at {fee_rate} sat/vB ({needed} sat): plan at a lower rate or wait for more withdrawals"
    )]
    PayoutFeeBudget { budget: u64, fee_rate: u64, needed: u64 },
    #[error(
        "a consolidation is made only when fees are low: {got} sat/vB is above this network's consolidation ceiling of {max} sat/vB"
    )]
    ConsolidationFeeRate { got: u64, max: u64 },
    #[error(
        "only {found} of the vault's unplanned outputs are worth merging at this rate; a consolidation needs {min}"
    )]
    NothingToConsolidate { found: usize, min: usize },
    #[error(
        "the vault's surplus ({surplus} sat) does not cover a consolidation's fee budget of {needed} sat: wait for payouts to leave more surplus"
    )]
    ConsolidationSurplus { surplus: u64, needed: u64 },
    #[error("consolidation plan {0} is still pending: one at a time")]
    ConsolidationPending(u64),
    #[error("payout plan {0} is not pending: it was never made or has already confirmed")]
    UnknownPayoutPlan(u64),
    #[error("{0}")]
    Payout(PayoutError),
    #[error("key rotation refused: {0}")]
    KeyRotation(RotationError),
    #[error("the passkey assertion does not authorize this transaction: {0}")]
    Passkey(PasskeyError),
    #[error("bitcoin deposit refused: {0}")]
    DepositKey(KeyedDepositError),
    #[error("no vault output is held under an earlier group key: there is nothing to sweep")]
    NothingToSweep,
    #[error(
        "the {inputs} outputs under the old key hold {total_in} sat, less than the sweep's fee budget of {budget} sat plus the smallest change: sweep at a lower rate"
    )]
    SweepTooSmall { inputs: usize, total_in: u64, budget: u64 },
    #[error(
        "neither the vault's surplus ({surplus} sat) nor the fee account's bitcoin balance ({fee_account} sat) covers the rest of the sweep's fee budget of {needed} sat: wait for fees to accrue"
    )]
    SweepFunding { surplus: u64, fee_account: u64, needed: u64 },
}

impl TxError {
    /// A stable machine-readable name, used as the API's error `code`.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::Signature(SignatureError::HighS) => "high_s_signature",
            TxError::Signature(_) => "bad_signature",
            TxError::SignerMismatch { .. } => "signer_mismatch",
            TxError::WrongDomain(_) => "wrong_domain",
            TxError::UnknownAsset(_) => "unknown_asset",
            TxError::ZeroAmount => "zero_amount",
            TxError::FeeTooLow { .. } => "fee_too_low",
            TxError::SelfTransfer => "self_transfer",
            TxError::NonceReplayed { .. } => "nonce_replayed",
            TxError::NonceGap { .. } => "nonce_gap",
            TxError::Overdraft { .. } => "overdraft",
            TxError::Overflow => "overflow",
            TxError::InvalidRecipient(RecipientError::Unpayable { .. }) => "unpayable_recipient",
            TxError::InvalidRecipient(_) => "invalid_recipient",
            TxError::DepositAlreadyCredited(_) => "deposit_already_credited",
            TxError::DepositChainMismatch { .. } => "deposit_chain_mismatch",
            TxError::NoBitcoinVault => "no_bitcoin_vault",
            TxError::FeeRateOutOfBounds { .. } => "fee_rate_out_of_bounds",
            TxError::NothingToPay => "nothing_to_pay",
            TxError::VaultLiquidity { .. } => "vault_liquidity",
            TxError::PayoutFeeBudget { .. } => "payout_fee_budget",
            TxError::ConsolidationFeeRate { .. } => "consolidation_fee_rate",
            TxError::NothingToConsolidate { .. } => "nothing_to_consolidate",
            TxError::ConsolidationSurplus { .. } => "consolidation_surplus",
            TxError::ConsolidationPending(_) => "consolidation_pending",
            TxError::UnknownPayoutPlan(_) => "unknown_payout_plan",
            TxError::Payout(_) => "payout",
            TxError::KeyRotation(e) => e.code(),
            TxError::Passkey(e) => e.code(),
            TxError::DepositKey(e) => e.code(),
            TxError::NothingToSweep => "nothing_to_sweep",
            TxError::SweepTooSmall { .. } => "sweep_too_small",
            TxError::SweepFunding { .. } => "sweep_funding",
        }
    }
}

/// A withdrawal the ledger has debited and L1 must now pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    pub tx_hash: [u8; 32],
    pub account: Address,
    pub asset: AssetId,
    pub amount: Amount,
    pub recipient: Recipient,
}

/// What an accepted transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Transferred,
    Withdrawn(Withdrawal),
    Deposited,
    /// A Bitcoin payout plan was made; the watchmen sign it once its batch is hard-final.
    BtcPayoutPlanned(PayoutPlan),
    /// A payout plan's attempt confirmed; its change (`change`) joined the vault.
    BtcPayoutConfirmed {
        plan: u64,
        attempt: u32,
        change: VaultUtxo,
    },
    /// The group key changes to `epoch`'s from batch `from_batch` on.
    KeyRotated {
        epoch: u64,
        from_batch: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The transaction's id ([`Tx::id`] at its place in the open batch): unique in the history.
    pub tx_hash: [u8; 32],
    pub effect: Effect,
}

/// Applies one verified transaction. On `Err` nothing has changed.
///
/// Outside a batch (tests, simulations) the transaction's place, which a system transaction's
/// id names, is [`State::next_place`]: the next batch and the count of transactions applied since
/// the last one. [`crate::BatchBuilder`] and [`crate::replay`] name the place themselves.
pub fn apply(state: &mut State, tx: &Tx) -> Result<Receipt, TxError> {
    let place = state.next_place();
    apply_at(state, tx, place)
}

/// [`apply`] at `place`: the batch and position the transaction has in the history.
pub(crate) fn apply_at(state: &mut State, tx: &Tx, place: TxPlace) -> Result<Receipt, TxError> {
    let tx_hash = tx.id(place);
    let (changes, effect) = match tx {
        Tx::User(user) => match user.tx() {
            UserTx::Transfer(transfer) => (check_transfer(state, transfer)?, Effect::Transferred),
            UserTx::Withdraw(withdraw) => {
                let (changes, withdrawal) = check_withdraw(state, withdraw, tx_hash)?;
                (changes, Effect::Withdrawn(withdrawal))
            }
        },
        Tx::System(SystemTx::Deposit(deposit)) => {
            let owner = deposit_owner_at(state, place.batch, deposit.account);
            (check_deposit(state, deposit, owner)?, Effect::Deposited)
        }
        Tx::System(SystemTx::BtcKeyedDeposit { deposit, key_epoch }) => {
            if deposit.chain != Chain::Bitcoin {
                return Err(TxError::DepositChainMismatch { chain: deposit.chain, asset: deposit.asset });
            }
            let owner =
                keyed_deposit_owner(state, place.batch, *key_epoch, deposit.account).map_err(TxError::DepositKey)?;
            (check_deposit(state, deposit, owner)?, Effect::Deposited)
        }
        Tx::System(SystemTx::BtcSweepPlan { fee_rate }) => {
            let (changes, plan) = crate::sweep::check_sweep_plan(state, *fee_rate)?;
            (changes, Effect::BtcPayoutPlanned(plan))
        }
        Tx::System(SystemTx::BtcPayoutPlan { fee_rate }) => {
            let (changes, plan) = check_payout_plan(state, *fee_rate)?;
            (changes, Effect::BtcPayoutPlanned(plan))
        }
        Tx::System(SystemTx::BtcConsolidationPlan { fee_rate }) => {
            let (changes, plan) = check_consolidation_plan(state, *fee_rate)?;
            (changes, Effect::BtcPayoutPlanned(plan))
        }
        Tx::System(SystemTx::BtcPayoutConfirmed { plan, attempt, height }) => {
            let (changes, change) = check_payout_confirmed(state, *plan, *attempt, *height)?;
            (changes, Effect::BtcPayoutConfirmed { plan: *plan, attempt: *attempt, change })
        }
        Tx::System(SystemTx::KeyRotation(rotation)) => {
            let changes = check_rotation(state, rotation, place).map_err(TxError::KeyRotation)?;
            let from_batch = changes.key_epoch.map_or(0, |(_, key)| key.from_batch);
            (changes, Effect::KeyRotated { epoch: rotation.epoch, from_batch })
        }
    };
    state.write(changes);
    Ok(Receipt { tx_hash, effect })
}

/// Balance reads and writes of one transaction, seen through its own pending writes so that
/// the same account in two roles (a fee account that pays, say) is counted right.
struct Ledger<'s> {
    state: &'s State,
    changes: Changes,
}

impl<'s> Ledger<'s> {
    fn new(state: &'s State) -> Self {
        Ledger { state, changes: Changes::default() }
    }

    fn balance(&self, account: Address, asset: AssetId) -> Amount {
        self.changes
            .balances
            .iter()
            .rev()
            .find(|(a, s, _)| *a == account && *s == asset)
            .map(|(_, _, amount)| *amount)
            .unwrap_or_else(|| self.state.balance(&account, &asset))
    }

    fn debit(&mut self, account: Address, asset: AssetId, amount: Amount) -> Result<(), TxError> {
        let available = self.balance(account, asset);
        let left = available.checked_sub(amount).ok_or(TxError::Overdraft { asset, available, needed: amount })?;
        self.changes.balances.push((account, asset, left));
        Ok(())
    }

    fn credit(&mut self, account: Address, asset: AssetId, amount: Amount) -> Result<(), TxError> {
        if amount.is_zero() {
            return Ok(()); // a zero fee creates no entry for the fee account
        }
        let total = self.balance(account, asset).checked_add(amount).ok_or(TxError::Overflow)?;
        self.changes.balances.push((account, asset, total));
        Ok(())
    }

    fn advance_nonce(&mut self, account: Address, got: u64) -> Result<(), TxError> {
        let expected = self.state.nonce(&account);
        if got < expected {
            return Err(TxError::NonceReplayed { expected, got });
        }
        if got > expected {
            return Err(TxError::NonceGap { expected, got });
        }
        let next = expected.checked_add(1).ok_or(TxError::Overflow)?;
        #[cfg(feature = "planted-bugs")]
        if crate::planted::active(crate::planted::PlantedBug::NonceNotConsumed) {
            return Ok(());
        }
        self.changes.nonce = Some((account, next));
        Ok(())
    }
}

/// Checks shared by every user transaction: a known asset, a positive amount, the minimum fee,
/// and the next nonce. Returns `amount + fee`.
fn check_common(
    ledger: &mut Ledger<'_>,
    from: Address,
    asset: AssetId,
    amount: Amount,
    fee: Amount,
    nonce: u64,
) -> Result<Amount, TxError> {
    let config = ledger.state.params().asset(&asset).ok_or(TxError::UnknownAsset(asset))?;
    if amount.is_zero() {
        return Err(TxError::ZeroAmount);
    }
    if fee < config.min_fee {
        return Err(TxError::FeeTooLow { asset, fee, min_fee: config.min_fee });
    }
    ledger.advance_nonce(from, nonce)?;
    amount.checked_add(fee).ok_or(TxError::Overflow)
}

fn check_transfer(state: &State, t: &Transfer) -> Result<Changes, TxError> {
    if t.from == t.to {
        return Err(TxError::SelfTransfer);
    }
    let mut ledger = Ledger::new(state);
    let total = check_common(&mut ledger, t.from, t.asset, t.amount, t.fee, t.nonce)?;
    ledger.debit(t.from, t.asset, total)?;
    ledger.credit(t.to, t.asset, t.amount)?;
    ledger.credit(state.params().fee_account, t.asset, t.fee)?;
    Ok(ledger.changes)
}

fn check_withdraw(state: &State, w: &Withdraw, tx_hash: [u8; 32]) -> Result<(Changes, Withdrawal), TxError> {
    let mut ledger = Ledger::new(state);
    let total = check_common(&mut ledger, w.from, w.asset, w.amount, w.fee, w.nonce)?;
    let params = state.params();
    let recipient = Recipient::parse(&w.recipient, &w.asset, w.amount, params.btc_network, &params.eth_vault)
        .map_err(TxError::InvalidRecipient)?;
    ledger.debit(w.from, w.asset, total)?;
    match &recipient {
        Recipient::Ethereum(_) => {
            ledger.credit(state.params().fee_account, w.asset, w.fee)?;
            ledger.changes.withdrawn = Some((w.asset, w.amount));
        }
        // On Bitcoin the fee buys the payout's miner fee: it leaves the ledger with the amount
        // and what the miners do not take stays in the vault as surplus.
        Recipient::Bitcoin(script) => {
            if state.params().btc_vault.is_none() {
                return Err(TxError::NoBitcoinVault);
            }
            let amount_sat = u64::try_from(w.amount.units()).map_err(|_| TxError::Overflow)?;
            let fee_sat = u64::try_from(w.fee.units()).map_err(|_| TxError::Overflow)?;
            ledger.changes.withdrawn = Some((w.asset, total));
            ledger.changes.queued = Some(QueuedWithdrawal {
                payout: BtcPayout { tx_hash, script_pubkey: script.to_bytes(), amount_sat },
                fee_sat,
            });
        }
    }
    let withdrawal = Withdrawal { tx_hash, account: w.from, asset: w.asset, amount: w.amount, recipient };
    Ok((ledger.changes, withdrawal))
}

/// Credits a deposit; a Bitcoin one becomes a vault output of `owner` (the account's address
/// under the key it was paid to).
fn check_deposit(state: &State, d: &Deposit, owner: VaultOwner) -> Result<Changes, TxError> {
    if state.params().asset(&d.asset).is_none() {
        return Err(TxError::UnknownAsset(d.asset));
    }
    if d.amount.is_zero() {
        return Err(TxError::ZeroAmount);
    }
    if d.chain != d.l1_ref.chain() || d.chain != d.asset.chain() {
        return Err(TxError::DepositChainMismatch { chain: d.chain, asset: d.asset });
    }
    if state.is_credited(&d.l1_ref) {
        return Err(TxError::DepositAlreadyCredited(d.l1_ref));
    }
    state.supply(&d.asset).deposited.checked_add(d.amount).ok_or(TxError::Overflow)?;
    let mut ledger = Ledger::new(state);
    ledger.credit(d.account, d.asset, d.amount)?;
    ledger.changes.credited = Some(d.l1_ref);
    ledger.changes.deposited = Some((d.asset, d.amount, d.l1_height));
    if let L1Ref::Bitcoin { txid, vout } = d.l1_ref {
        // A Bitcoin deposit is an output of the vault, spendable by the account's tweaked key.
        let amount_sat = u64::try_from(d.amount.units()).map_err(|_| TxError::Overflow)?;
        ledger.changes.utxos_added.push(VaultUtxo {
            outpoint: OutPoint { txid, vout },
            amount_sat,
            owner,
            height: d.l1_height,
        });
    }
    Ok(ledger.changes)
}

pub(crate) fn btc_vault(state: &State) -> Result<&BtcVaultParams, TxError> {
    let vault = state.params().btc_vault.as_ref().ok_or(TxError::NoBitcoinVault)?;
    // Only a vault whose group key is a curve point can be paid from (and `internal_key` relies on it).
    vault.validate().map_err(|_| TxError::NoBitcoinVault)?;
    Ok(vault)
}

/// Fixes a payout for the oldest queued withdrawals the vault can cover now (at most
/// [`MAX_PAYOUT_OUTPUTS`]): the queue is read oldest first, [`MAX_QUEUE_SCAN`] entries at
/// most, and a withdrawal is taken if the plan with it still fits the vault's funding capacity
/// (its [`MAX_PAYOUT_INPUTS`] largest unplanned outputs); one that does not fit keeps its place
/// and waits, so a withdrawal larger than the vault can cover never holds up the smaller ones
/// behind it. Inputs by [`select_inputs`], enough to pay the taken withdrawals, the whole fee
/// budget and the smallest change, so that every attempt up to the budget is funded.
fn check_payout_plan(state: &State, fee_rate: u64) -> Result<(Changes, PayoutPlan), TxError> {
    let vault = btc_vault(state)?;
    if fee_rate < vault.min_fee_rate || fee_rate > vault.max_fee_rate {
        return Err(TxError::FeeRateOutOfBounds { got: fee_rate, min: vault.min_fee_rate, max: vault.max_fee_rate });
    }
    // Payouts spend only outputs under the key in force: outputs of an earlier key wait for
    // their sweep, so no payout ever needs two groups' signatures.
    let batch = state.head().next_number;
    let spendable = || state.vault_utxos().filter(move |u| is_current_at(state, batch, &u.owner));
    let capacity = funding_capacity(spendable());
    let mut queued: Vec<(u64, &QueuedWithdrawal)> = Vec::new();
    let (mut total_out, mut budget) = (0u64, 0u64);
    let mut head_needs = None;
    for (seq, q) in state.btc_queue().take(MAX_QUEUE_SCAN) {
        if queued.len() == MAX_PAYOUT_OUTPUTS {
            break;
        }
        let out = total_out.checked_add(q.payout.amount_sat).ok_or(TxError::Overflow)?;
        let fees = budget.checked_add(q.fee_sat).ok_or(TxError::Overflow)?;
        let needed = out.checked_add(fees).and_then(|n| n.checked_add(MIN_CHANGE_SAT)).ok_or(TxError::Overflow)?;
        head_needs.get_or_insert(needed);
        if needed <= capacity {
            (total_out, budget) = (out, fees);
            queued.push((seq, q));
        }
    }
    let Some(head_needs) = head_needs else { return Err(TxError::NothingToPay) };
    let liquidity = |needed| TxError::VaultLiquidity {
        needed,
        available: spendable().map(|u| u.amount_sat).sum(),
        max_inputs: MAX_PAYOUT_INPUTS,
    };
    if queued.is_empty() {
        return Err(liquidity(head_needs));
    }
    let needed = total_out.checked_add(budget).and_then(|n| n.checked_add(MIN_CHANGE_SAT)).ok_or(TxError::Overflow)?;
    let inputs = select_inputs(spendable(), needed).ok_or_else(|| liquidity(needed))?;
    let plan = PayoutPlan {
        id: state.btc_counters().next_plan,
        batch: state.head().next_number,
        fee_rate,
        budget_sat: budget,
        inputs,
        payouts: queued.iter().map(|(_, q)| q.payout.clone()).collect(),
    };
    let first_fee = plan.vsize(vault, state.params().btc_network).saturating_mul(fee_rate);
    debug_assert!(plan.inputs.iter().all(|u| is_current_at(state, plan.batch, &u.owner)));
    if budget < first_fee {
        return Err(TxError::PayoutFeeBudget { budget, fee_rate, needed: first_fee });
    }
    let changes = Changes {
        utxos_planned: plan.inputs.iter().map(|u| u.outpoint).collect(),
        dequeued: queued.iter().map(|(seq, _)| *seq).collect(),
        plan_added: Some(plan.clone()),
        ..Changes::default()
    };
    Ok((changes, plan))
}

/// What the vault holds beyond everything it owes: accounts' balances, queued withdrawals with
/// their fees, and each pending plan's payouts with its whole fee budget. It grows when a payout
/// confirms below its budget; only this may pay for a consolidation, so a consolidation can
/// never leave the vault short of what users are owed.
pub fn btc_vault_surplus_sat(state: &State) -> u64 {
    let owed_balances =
        u64::try_from(state.supply(&crate::asset::AssetId::Btc).liabilities.units()).unwrap_or(u64::MAX);
    let queued =
        state.btc_queue().fold(0u64, |t, (_, q)| t.saturating_add(q.payout.amount_sat).saturating_add(q.fee_sat));
    let planned = state.btc_plans().fold(0u64, |t, p| t.saturating_add(p.total_out_sat()).saturating_add(p.budget_sat));
    state.btc_vault_holdings_sat().saturating_sub(owed_balances).saturating_sub(queued).saturating_sub(planned)
}

/// Fixes a consolidation: the vault's smallest unplanned outputs by [`select_consolidation`]
/// merged into one change output, at a low rate, its budget `CONSOLIDATION_BUDGET_FACTOR ×` the
/// first attempt's fee taken from the surplus. One at a time.
fn check_consolidation_plan(state: &State, fee_rate: u64) -> Result<(Changes, PayoutPlan), TxError> {
    let vault = btc_vault(state)?;
    let ceiling = vault.min_fee_rate.saturating_mul(CONSOLIDATION_FEE_RATE_FACTOR).min(vault.max_fee_rate);
    if fee_rate < vault.min_fee_rate {
        return Err(TxError::FeeRateOutOfBounds { got: fee_rate, min: vault.min_fee_rate, max: vault.max_fee_rate });
    }
    if fee_rate > ceiling {
        return Err(TxError::ConsolidationFeeRate { got: fee_rate, max: ceiling });
    }
    if let Some(pending) = state.btc_plans().find(|p| p.is_consolidation()) {
        return Err(TxError::ConsolidationPending(pending.id));
    }
    let batch = state.head().next_number;
    let inputs = select_consolidation(state.vault_utxos().filter(|u| is_current_at(state, batch, &u.owner)), fee_rate);
    if inputs.len() < MIN_CONSOLIDATION_INPUTS {
        return Err(TxError::NothingToConsolidate { found: inputs.len(), min: MIN_CONSOLIDATION_INPUTS });
    }
    let mut plan = PayoutPlan {
        id: state.btc_counters().next_plan,
        batch: state.head().next_number,
        fee_rate,
        budget_sat: 0,
        inputs,
        payouts: Vec::new(),
    };
    let first_fee = plan.vsize(vault, state.params().btc_network).saturating_mul(fee_rate);
    let needed = first_fee.saturating_mul(CONSOLIDATION_BUDGET_FACTOR);
    let surplus = btc_vault_surplus_sat(state);
    if surplus < needed {
        return Err(TxError::ConsolidationSurplus { surplus, needed });
    }
    if plan.total_in_sat() < needed.saturating_add(MIN_CHANGE_SAT) {
        // Outputs this small are not worth merging at this rate (and the change would be dust).
        return Err(TxError::NothingToConsolidate { found: 0, min: MIN_CONSOLIDATION_INPUTS });
    }
    plan.budget_sat = needed;
    let changes = Changes {
        utxos_planned: plan.inputs.iter().map(|u| u.outpoint).collect(),
        plan_added: Some(plan.clone()),
        ..Changes::default()
    };
    Ok((changes, plan))
}

fn check_payout_confirmed(state: &State, id: u64, attempt: u32, height: u64) -> Result<(Changes, VaultUtxo), TxError> {
    btc_vault(state)?;
    let keys = vault_keys(state).ok_or(TxError::NoBitcoinVault)?;
    let plan = state.btc_plan(id).ok_or(TxError::UnknownPayoutPlan(id))?;
    let built = plan.build(&keys, state.params().btc_network, attempt).map_err(TxError::Payout)?;
    let change = VaultUtxo { height, ..built.change };
    let changes = Changes { utxos_added: vec![change], plan_confirmed: Some(id), ..Changes::default() };
    Ok((changes, change))
}
