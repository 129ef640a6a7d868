//! Ethereum's vault in process: the committed `Vault` bytecode (`contracts/artifacts`, the bytes
//! deployed on anvil and on mainnet) running on revm over an in-memory state. Deposits pay
//! ether into it with `depositETH`; a range the watchmen signed goes in with
//! `submitAndWithdraw`, which checks the BIP-340 signature in Solidity, refuses a gap or an
//! overlap, and pays each leaf once (its bitmap). What the simulator checks against it is in
//! signing.rs (`vault-takes-signed-range`) and checks.rs (`paid-once`, `solvency`,
//! `payout-liveness`).

use alloy::primitives::{Address, Bytes, TxKind, U256};
use alloy::sol_types::{SolCall, SolEvent, SolInterface, SolValue};
use bridge::eth_settlement::EvmSchnorrSignature;
use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
use revm::context::TxEnv;
use revm::context_interface::ContextTr;
use revm::context_interface::result::{ExecutionResult, Output};
use revm::database::InMemoryDB;
use revm::database_interface::DatabaseRef;
use revm::handler::{MainnetContext, MainnetEvm};
use revm::state::AccountInfo;
use revm::{Context, ExecuteCommitEvm, MainBuilder, MainContext};

/// Deploys the vault (its first contract, so the vault's address is known before the key
/// ceremony that gives the constructor its key).
const DEPLOYER: Address = Address::repeat_byte(0xd0);
/// Sends the signed ranges (any account may).
const SUBMITTER: Address = Address::repeat_byte(0x5b);
/// Pays the users' deposits in.
const DEPOSITOR: Address = Address::repeat_byte(0xde);
/// The vault's guardian: every watchman holds its key and pauses the vault once its signing
/// halts (duties.rs), as the binary does with a guardian key.
const GUARDIAN: Address = Address::repeat_byte(0x9a);
/// A call's revert by `Paused()`: the guardian stopped the vault.
const PAUSED: &str = "reverted: the vault is paused";
/// Gas for one transaction: just under the per-transaction cap (2^24 since Osaka, EIP-7825).
const GAS_LIMIT: u64 = 16_000_000;

/// What one call that pays leaves (`submitAndWithdraw`, `withdrawMany`) did.
#[derive(Debug, Default)]
pub(crate) struct Settled {
    /// Leaves paid: (batch, index, recipient, wei).
    pub(crate) paid: Vec<(u64, u32, Address, u128)>,
    /// Leaves whose transfer failed (left unpaid): (batch, index).
    pub(crate) failed: Vec<(u64, u32)>,
    pub(crate) gas_used: u64,
    /// Every log the call emitted, for its receipt.
    pub(crate) logs: Vec<alloy::primitives::Log>,
}

pub(crate) struct EthVault {
    evm: MainnetEvm<MainnetContext<InMemoryDB>>,
    address: Address,
}

impl EthVault {
    /// Where the vault is deployed.
    pub(crate) fn address() -> Address {
        DEPLOYER.create(0)
    }

    /// Deploys the committed vault under the group's x-only key on chain `chain_id`.
    pub(crate) fn deploy(group_key: [u8; 32], chain_id: u64) -> Result<Self, String> {
        let mut db = InMemoryDB::default();
        for account in [DEPLOYER, SUBMITTER, DEPOSITOR, GUARDIAN] {
            db.insert_account_info(account, AccountInfo::from_balance(U256::from(u128::MAX)));
        }
        let evm = Context::mainnet()
            .with_db(db)
            // The block's base fee is zero, so transactions at a gas price of zero pay nothing.
            .modify_cfg_chained(|cfg| cfg.chain_id = chain_id)
            .modify_block_chained(|block| block.basefee = 0)
            .build_mainnet();
        let mut vault = EthVault { evm, address: Self::address() };
        let mut code = contracts::Vault::BYTECODE.to_vec();
        code.extend((U256::from_be_bytes(group_key), GUARDIAN).abi_encode_params());
        match vault.transact(DEPLOYER, TxKind::Create, U256::ZERO, code.into())? {
            ExecutionResult::Success { output: Output::Create(_, Some(created)), .. } if created == vault.address => {
                Ok(vault)
            }
            other => Err(format!("the vault's deployment did not create it at {}: {other:?}", vault.address)),
        }
    }

    fn tx(&self, caller: Address, kind: TxKind, value: U256, data: Bytes) -> Result<TxEnv, String> {
        let nonce = self.evm.ctx.db().basic_ref(caller).ok().flatten().map_or(0, |a| a.nonce);
        TxEnv::builder()
            .caller(caller)
            .kind(kind)
            .value(value)
            .data(data)
            .nonce(nonce)
            .gas_limit(GAS_LIMIT)
            .gas_price(0)
            .chain_id(Some(self.evm.ctx.cfg.chain_id))
            .build()
            .map_err(|e| format!("a transaction: {e:?}"))
    }

    fn transact(&mut self, caller: Address, kind: TxKind, value: U256, data: Bytes) -> Result<ExecutionResult, String> {
        let tx = self.tx(caller, kind, value, data)?;
        self.evm.transact_commit(tx).map_err(|e| format!("the EVM failed: {e:?}"))
    }

    /// A user's deposit of `wei` to `account` through `depositETH`.
    pub(crate) fn deposit(&mut self, account: bridge::Address, wei: u128) -> Result<(), String> {
        let call = contracts::Vault::depositETHCall { account: Address::from(account.0) };
        match self.transact(DEPOSITOR, TxKind::Call(self.address), U256::from(wei), call.abi_encode().into())? {
            ExecutionResult::Success { .. } => Ok(()),
            ExecutionResult::Revert { output, .. } => Err(revert_reason(&output)),
            other => Err(format!("depositETH failed: {other:?}")),
        }
    }

    /// The guardian's `pause()`: deposits and payouts stop until the group signs an unpause.
    pub(crate) fn pause(&mut self) -> Result<(), String> {
        let call = contracts::Vault::pauseCall {};
        match self.transact(GUARDIAN, TxKind::Call(self.address), U256::ZERO, call.abi_encode().into())? {
            ExecutionResult::Success { .. } => Ok(()),
            other => Err(format!("pause() failed: {other:?}")),
        }
    }

    /// `paused()`, read as a node's `eth_call` reads it: executed, nothing committed.
    pub(crate) fn paused(&mut self) -> Result<bool, String> {
        let call = contracts::Vault::pausedCall {};
        let tx = self.tx(DEPLOYER, TxKind::Call(self.address), U256::ZERO, call.abi_encode().into())?;
        let result = revm::ExecuteEvm::transact(&mut self.evm, tx).map_err(|e| format!("the EVM failed: {e:?}"))?;
        match result.result {
            ExecutionResult::Success { output: Output::Call(bytes), .. } => {
                contracts::Vault::pausedCall::abi_decode_returns(&bytes).map_err(|e| format!("paused(): {e}"))
            }
            other => Err(format!("paused() failed: {other:?}")),
        }
    }

    /// Submits the range `first..=last` with its root and the group's BIP-340 signature, paying
    /// every leaf of `withdrawals` (the range's, in order): a hostile requester's send.
    pub(crate) fn submit_and_withdraw(
        &mut self,
        (first, last, root): (u64, u64, [u8; 32]),
        signature: &[u8; 64],
        withdrawals: Vec<EthWithdrawal>,
    ) -> Result<Settled, String> {
        let sig = EvmSchnorrSignature::from_bip340(signature).ok_or("the signature's r is not a curve point")?;
        let tree = EthWithdrawalTree::new(withdrawals);
        let count = u32::try_from(tree.withdrawals().len()).map_err(|_| "too many leaves")?;
        self.submit_and_pay((first, last, root), &sig, contracts::payouts(&tree, 0..count))
    }

    /// `submitAndWithdraw`: the range `first..=last` with its root and signature, and `payouts`
    /// (leaves of it with their proofs). `Err` carries the revert.
    pub(crate) fn submit_and_pay(
        &mut self,
        (first, last, root): (u64, u64, [u8; 32]),
        sig: &EvmSchnorrSignature,
        payouts: Vec<contracts::Vault::Payout>,
    ) -> Result<Settled, String> {
        let call = contracts::Vault::submitAndWithdrawCall {
            first,
            last,
            root: root.into(),
            sig: contracts::vault_signature(sig),
            payouts,
        };
        self.pay_call(call.abi_encode().into())
    }

    /// `withdrawMany`: `payouts` (leaves of range `range` with their proofs). `Err` carries the
    /// revert.
    pub(crate) fn withdraw_many(
        &mut self,
        range: u64,
        payouts: Vec<contracts::Vault::Payout>,
    ) -> Result<Settled, String> {
        let call = contracts::Vault::withdrawManyCall { range, payouts };
        self.pay_call(call.abi_encode().into())
    }

    /// A call that pays leaves, from the submitting account, and what its logs say it did.
    fn pay_call(&mut self, data: Bytes) -> Result<Settled, String> {
        match self.transact(SUBMITTER, TxKind::Call(self.address), U256::ZERO, data)? {
            ExecutionResult::Success { logs, gas, .. } => {
                let mut settled = Settled { gas_used: gas.tx_gas_used(), ..Settled::default() };
                for log in &logs {
                    if let Ok(paid) = contracts::Vault::Withdrawn::decode_log(log) {
                        let wei = u128::try_from(paid.amount).unwrap_or(u128::MAX);
                        settled.paid.push((paid.batch, paid.index, paid.recipient, wei));
                    } else if let Ok(failed) = contracts::Vault::WithdrawalFailed::decode_log(log) {
                        settled.failed.push((failed.batch, failed.index));
                    }
                }
                settled.logs = logs;
                Ok(settled)
            }
            ExecutionResult::Revert { output, .. } => Err(revert_reason(&output)),
            other => Err(format!("halted: {other:?}")),
        }
    }

    /// The chain's state as it stands (a block's end), for a reorg to return to.
    pub(crate) fn snapshot(&self) -> InMemoryDB {
        self.evm.ctx.db().clone()
    }

    /// Back to a state `snapshot` took: an Ethereum reorg dropped what came after.
    pub(crate) fn restore(&mut self, snapshot: InMemoryDB) {
        *self.evm.ctx.db_mut() = snapshot;
    }

    /// The vault's ether, in wei.
    pub(crate) fn balance(&self) -> u128 {
        let balance = self.evm.ctx.db().basic_ref(self.address).ok().flatten().map_or(U256::ZERO, |a| a.balance);
        u128::try_from(balance).unwrap_or(u128::MAX)
    }
}

/// A vault call's revert, as the simulator reports it: the pause's as [`PAUSED`], any other of
/// the vault's errors by name.
fn revert_reason(output: &Bytes) -> String {
    match contracts::Vault::VaultErrors::abi_decode(output) {
        Ok(contracts::Vault::VaultErrors::Paused(_)) => PAUSED.into(),
        Ok(error) => format!("reverted {error:?}"),
        Err(_) => format!("reverted with 0x{}", hex::encode(output)),
    }
}

/// Whether a vault call's revert is the pause's (`Paused()`): a range refused so was no less
/// the vault's next, and a deposit refused so brought nothing in.
pub(crate) fn paused_refusal(why: &str) -> bool {
    why == PAUSED
}
