//! Users and the chain watcher: deposits on the simulated Ethereum, the coordinator crediting
//! them once deep, and users' transactions (honest, overdrawn, replayed, gapped, forged, of
//! another domain) through the API's path into the real sequencer.

use bridge::batch::ApplyError;
use bridge::tx::{SystemTx, Transfer, UserTx, Withdraw};
use bridge::{Amount, AssetId, Chain, Deposit, L1Ref, SignedUserTx, Tx};

use crate::SimError;
use crate::l1::L1;
use crate::world::{Acked, ETHER, World};

impl World {
    /// The API's path for one user transaction: its signature checked, then the sequencer.
    pub(crate) async fn submit_user(&mut self, signed: SignedUserTx, expect_refusal: &str) -> Result<(), SimError> {
        let domain = bridge::eip712::Domain::new(&self.params);
        let verified = match signed.verify(&domain) {
            Ok(verified) => verified,
            Err(error) => {
                self.log(format!("api refuses ({expect_refusal}): {}", error.code()));
                return Ok(());
            }
        };
        if expect_refusal == "forged signature" || expect_refusal == "wrong domain" {
            self.violate("signatures", format!("a transaction with a {expect_refusal} passed verification"));
            return Ok(());
        }
        self.sent.push(signed);
        self.submit(Tx::User(verified), expect_refusal).await
    }

    pub(crate) async fn submit(&mut self, tx: Tx, what: &str) -> Result<(), SimError> {
        self.submit_for_outcome(tx, what).await.map(|_| ())
    }

    /// [`World::submit`], and what the ledger said: `None` when the coordinator is down or its
    /// disk failed.
    pub(crate) async fn submit_for_outcome(
        &mut self,
        tx: Tx,
        what: &str,
    ) -> Result<Option<Result<(), ApplyError>>, SimError> {
        let Some(sequencer) = self.coordinator.sequencer.as_mut() else { return Ok(None) };
        let account = match &tx {
            Tx::User(user) => Some(user.tx().from()),
            Tx::System(_) => None,
        };
        let mut outcomes = match sequencer.submit(vec![tx]).await {
            Ok(outcomes) => outcomes,
            Err(error) => return self.sequencer_failed("a submission", error).map(|()| None),
        };
        let Some(outcome) = outcomes.pop() else { return Ok(None) };
        self.note_outcome(what, account, &outcome);
        Ok(Some(outcome.map(|_| ())))
    }

    /// What the coordinator answered a submission: acknowledged (kept for `at-most-once`, for a
    /// user's transaction) or refused.
    pub(crate) fn note_outcome(
        &mut self,
        what: &str,
        account: Option<bridge::Address>,
        outcome: &coordinator::sequencer::Outcome,
    ) {
        match outcome {
            Ok(receipt) => {
                if self.coordinator.opened_ms.is_none() {
                    self.coordinator.opened_ms = Some(self.now());
                }
                let hash = hex::encode(&receipt.tx_hash[..4]);
                self.log(format!("acked {what} {hash}"));
                if let Some(account) = account {
                    if self.acked.insert(receipt.tx_hash, Acked { account }).is_some() {
                        self.violate("at-most-once", format!("transaction {hash} ({what}) was acknowledged twice"));
                    }
                    *self.acked_per_account.entry(account).or_default() += 1;
                }
            }
            Err(error) => self.log(format!("refused {what}: {error}")),
        }
    }

    pub(crate) fn deposit_on_l1(&mut self) {
        let user = self.users[self.rng.below(self.users.len() as u64) as usize].address();
        let ethers = self.rng.between(1, 5) as u128;
        let tx_hash = self.rng.bytes32();
        self.deposit_for(user, ethers, tx_hash);
    }

    /// `user` deposits `ethers` in the vault on L1, in the transaction `tx_hash`.
    pub(crate) fn deposit_for(&mut self, user: bridge::Address, ethers: u128, tx_hash: [u8; 32]) {
        let tip = L1::tip(self.now());
        let deposit = Deposit {
            chain: Chain::Ethereum,
            l1_ref: L1Ref::Ethereum { tx_hash, log_in_tx: 0 },
            account: user,
            asset: AssetId::Eth,
            amount: Amount(ethers * ETHER),
            l1_height: tip,
        };
        let deposited = self.evm.as_mut().map(|vault| vault.deposit(user, ethers * ETHER));
        match deposited {
            // The guardian paused the vault: the user's transaction reverts, nothing came in.
            Some(Err(error)) if crate::evm::paused_refusal(&error) => {
                self.log(format!("the paused vault refuses a deposit of {ethers} ETH"));
                return;
            }
            Some(Err(error)) => self.violate("vault-deposit", format!("the vault refused a deposit: {error}")),
            _ => {}
        }
        self.l1_deposited += ethers * ETHER;
        self.eth_history.record_deposit(user, ethers * ETHER);
        if let Ok(mut l1) = self.l1.lock() {
            l1.add(deposit);
        }
        self.log(format!("L1 deposit of {ethers} ETH at block {tip}"));
    }

    /// The coordinator's chain watcher: every deposit at depth not yet credited.
    pub(crate) async fn watch_deposits(&mut self) -> Result<(), SimError> {
        let tip = L1::tip(self.now());
        let deep: Vec<Deposit> = match (self.l1.lock(), &self.coordinator.sequencer) {
            (Ok(l1), Some(sequencer)) => {
                l1.deep(tip).filter(|d| !sequencer.state().is_credited(&d.l1_ref)).cloned().collect()
            }
            _ => Vec::new(),
        };
        for deposit in deep {
            self.submit(Tx::System(SystemTx::Deposit(deposit)), "deposit").await?;
        }
        Ok(())
    }

    /// `deposit-liveness` on Ethereum, after healing: the honest coordinator credited every
    /// deposit at depth.
    pub(crate) fn check_eth_deposits_end(&mut self) {
        let (None, None, Some(sequencer)) = (&self.attack, self.bad_from, &self.coordinator.sequencer) else { return };
        let tip = L1::tip(self.now());
        let missed = match self.l1.lock() {
            Ok(l1) => l1.deep(tip).find(|d| !sequencer.state().is_credited(&d.l1_ref)).map(|d| d.l1_height),
            Err(_) => return,
        };
        if let Some(height) = missed {
            self.violate(
                "deposit-liveness",
                format!("an Ethereum deposit of block {height} is deep and not credited after healing"),
            );
        }
    }

    pub(crate) async fn user_acts(&mut self) -> Result<(), SimError> {
        let Some(sequencer) = &self.coordinator.sequencer else { return Ok(()) };
        let domain = bridge::eip712::Domain::new(&self.params);
        let n = self.users.len() as u64;
        let from = self.rng.below(n) as usize;
        let to = (from + 1 + self.rng.below(n - 1) as usize) % self.users.len();
        let (wallet, recipient) = (&self.users[from], self.users[to].address());
        let nonce = sequencer.state().nonce(&wallet.address());
        let balance = sequencer.state().balance(&wallet.address(), &AssetId::Eth).0;
        // Now and then more than the balance: an overdraft the STF must refuse.
        let amount = Amount(1 + (self.rng.below(u64::MAX) as u128) % (balance + balance / 4 + 1));
        let fee = Amount(self.rng.below(3) as u128);
        let kind = self.rng.below(100);
        let transfer = |nonce| {
            UserTx::Transfer(Transfer {
                from: wallet.address(),
                to: recipient,
                asset: AssetId::Eth,
                amount,
                fee,
                nonce,
            })
        };
        let (signed, what) = match kind {
            0..50 => (wallet.sign(transfer(nonce), &domain), "transfer"),
            50..68 => {
                let mut address = [0u8; 20];
                address.copy_from_slice(&self.rng.bytes32()[..20]);
                address[0] |= 1;
                let withdraw = Withdraw {
                    from: wallet.address(),
                    asset: AssetId::Eth,
                    amount,
                    fee,
                    recipient: format!("0x{}", hex::encode(address)),
                    nonce,
                };
                (wallet.sign(UserTx::Withdraw(withdraw), &domain), "withdrawal")
            }
            68..80 if !self.sent.is_empty() => {
                let old = self.sent[self.rng.below(self.sent.len() as u64) as usize].clone();
                (old, "replayed transaction")
            }
            80..88 => (wallet.sign(transfer(nonce + 1 + self.rng.below(3)), &domain), "nonce gap"),
            88..95 => {
                // Signed by someone else in the sender's name.
                let forger = &self.users[to];
                (forger.sign(transfer(nonce), &domain), "forged signature")
            }
            _ => {
                let mut other = self.params.clone();
                other.chain_id += 1;
                (wallet.sign(transfer(nonce), &bridge::eip712::Domain::new(&other)), "wrong domain")
            }
        };
        self.submit_user(signed, what).await
    }
}
