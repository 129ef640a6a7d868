//! The byzantine coordinator: what a coordinator holding its signing key can do to the history,
//! chosen by the seed. Its honest parts (sequencing, sealing, the ledger) keep running the real
//! code; the attack takes over publication from the batch it targets on. Every attack but
//! `Reorder` is bad history: every honest confirmer must alarm, and none may call it
//! hard-final. `Reorder` (a batch posted a little after its successor) is within what Arweave
//! can show anyway, and must *not* be alarmed.

use bridge::tx::{UserTx, Withdraw};
use bridge::{Amount, AssetId, BatchTx, Chain, Deposit, L1Ref, SignedBatch, SystemTx, Tx};
use chains::da::DataAvailability;

use crate::arweave::Owner;
use crate::l1::L1;
use crate::rng::SimRng;
use crate::world::World;
use crate::{SimConfig, SimError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttackKind {
    /// A withdrawal in a user's name that the user never signed.
    ForgedWithdrawal,
    /// A withdrawals root that pays what the body does not.
    ForgedWithdrawalsRoot,
    /// Two different batches signed with one number, posted together.
    Equivocation,
    /// A batch never posted while later ones are.
    Withholding,
    /// A deposit credited that L1 never saw.
    ForgedDeposit,
    /// A batch posted after its successor, within the confirmers' wait.
    Reorder,
    /// A second batch under a number the running confirmers have already replayed.
    LateEquivocation,
    /// A forced transaction left out of the section that had to take it (forced.rs).
    CensorsForced,
}

impl AttackKind {
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::ForgedWithdrawal => "forged withdrawal",
            AttackKind::ForgedWithdrawalsRoot => "forged withdrawals root",
            AttackKind::Equivocation => "equivocation",
            AttackKind::Withholding => "withholding",
            AttackKind::ForgedDeposit => "forged deposit",
            AttackKind::Reorder => "reorder",
            AttackKind::LateEquivocation => "late equivocation",
            AttackKind::CensorsForced => "censorship of a forced transaction",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attack {
    pub kind: AttackKind,
    pub at_ms: u64,
    /// The batch targeted, once the attack started.
    target: Option<u64>,
    /// Reorder: when the held batch is posted.
    release_at_ms: Option<u64>,
    done: bool,
}

impl Attack {
    /// About one run in three has a byzantine coordinator.
    pub(crate) fn choose(rng: &mut SimRng, config: &SimConfig) -> Option<Attack> {
        let byzantine = rng.chance(350_000);
        if config.attack.is_none() && !byzantine {
            return None;
        }
        let kinds = [
            AttackKind::ForgedWithdrawal,
            AttackKind::ForgedWithdrawalsRoot,
            AttackKind::Equivocation,
            AttackKind::Withholding,
            AttackKind::ForgedDeposit,
            AttackKind::Reorder,
            AttackKind::LateEquivocation,
        ];
        let picked = kinds[rng.below(kinds.len() as u64) as usize];
        let kind = config.attack.unwrap_or(picked);
        let at_ms = rng.between(10 * 60_000, config.fault_ms.saturating_sub(20 * 60_000).max(10 * 60_000));
        Some(Attack { kind, at_ms, target: None, release_at_ms: None, done: false })
    }

    pub fn describe(&self) -> String {
        format!("{} at {} s", self.kind.name(), self.at_ms / 1000)
    }

    /// Whether the attack has taken publication over from the real publisher.
    pub(crate) fn controls_publishing(&self) -> bool {
        self.target.is_some()
            && !matches!(
                self.kind,
                AttackKind::ForgedDeposit | AttackKind::LateEquivocation | AttackKind::CensorsForced
            )
            && !self.done
    }

    pub fn is_bad_history(&self) -> bool {
        self.kind != AttackKind::Reorder
    }
}

impl World {
    /// Starts the attack when its time comes.
    pub(crate) async fn attack_turn(&mut self) -> Result<(), SimError> {
        let now = self.now();
        let Some(attack) = &self.attack else { return Ok(()) };
        if attack.target.is_some() || now < attack.at_ms {
            return Ok(());
        }
        let kind = attack.kind;
        // The forced task censors (forced.rs): publication stays honest.
        if kind == AttackKind::CensorsForced {
            return Ok(());
        }
        if kind == AttackKind::LateEquivocation {
            return self.equivocate_late().await;
        }
        let Some(sequencer) = &self.coordinator.sequencer else { return Ok(()) };
        let next = sequencer.state().head().next_number;
        let target = match kind {
            AttackKind::ForgedDeposit => {
                let deposit = Deposit {
                    chain: Chain::Ethereum,
                    l1_ref: L1Ref::Ethereum { tx_hash: self.rng.bytes32(), log_in_tx: 0 },
                    account: self.users[0].address(),
                    asset: AssetId::Eth,
                    amount: Amount(1_000_000_000_000_000_000_000),
                    l1_height: L1::tip(now),
                };
                self.submit(Tx::System(SystemTx::Deposit(deposit)), "FORGED deposit").await?;
                self.bad_from = Some((next, kind.name()));
                next
            }
            // The first batch not yet published (the open one, if every sealed one is).
            _ => match self.coordinator.store.as_ref() {
                Some(store) => match store.unpublished_batches().await.map_err(SimError::role("ledger"))?.first() {
                    Some(batch) => batch.header.number,
                    None => next,
                },
                None => return Ok(()),
            },
        };
        if let Some(attack) = self.attack.as_mut() {
            attack.target = Some(target);
        }
        self.log(format!("BYZANTINE coordinator starts a {} at batch {target}", kind.name()));
        Ok(())
    }

    /// Publication under the attack: honest before the target, the attack at it.
    pub(crate) async fn publish_byzantine(&mut self) -> Result<(), SimError> {
        let (Some(attack), Some(store)) = (self.attack.clone(), self.coordinator.store.clone()) else { return Ok(()) };
        let Some(target) = attack.target else { return Ok(()) };
        // Its gateway is down (tasks.rs): nothing it posts goes out this tick.
        if self.arweave.lock().map_or(true, |arweave| arweave.gateway_down_until().is_some()) {
            return Ok(());
        }
        let pending = store.unpublished_batches().await.map_err(SimError::role("ledger"))?;
        for batch in pending {
            let number = batch.header.number;
            if number < target {
                self.post_honestly(&store, &batch).await?;
                continue;
            }
            match attack.kind {
                AttackKind::ForgedWithdrawal | AttackKind::ForgedWithdrawalsRoot | AttackKind::Equivocation
                    if number == target =>
                {
                    let forged = self.forge(&batch, attack.kind)?;
                    let mut bundle = vec![(number, bridge::codec::encode_batch(&forged))];
                    if attack.kind == AttackKind::Equivocation {
                        bundle.push((number, bridge::codec::encode_batch(&batch)));
                    }
                    let id = match self.arweave.lock() {
                        Ok(mut arweave) => arweave.post(Owner::Coordinator, bundle).remove(0),
                        Err(_) => return Err(SimError::Setup("the simulated Arweave's lock".into())),
                    };
                    store.set_published(number, &id).await.map_err(SimError::role("ledger"))?;
                    self.bad_from = Some((number, attack.kind.name()));
                    self.log(format!("BYZANTINE posted {} of batch {number} as {id}", attack.kind.name()));
                }
                AttackKind::Withholding if number == target && self.bad_from.is_none() => {
                    self.bad_from = Some((number, attack.kind.name()));
                    self.log(format!("BYZANTINE withholds batch {number}"));
                }
                AttackKind::Withholding if number == target => {}
                AttackKind::Withholding => self.post_honestly(&store, &batch).await?,
                AttackKind::Reorder if number == target && self.now() >= attack.release_at_ms.unwrap_or(u64::MAX) => {
                    self.post_honestly(&store, &batch).await?;
                    if let Some(attack) = self.attack.as_mut() {
                        attack.done = true;
                    }
                    self.log(format!("BYZANTINE releases batch {number} after its successor"));
                }
                AttackKind::Reorder if number == target + 1 && attack.release_at_ms.is_none() => {
                    // The successor first (not marked published, so the ledger order holds);
                    // the target a little later, well within the confirmers' wait.
                    let posted = self.da.publish(&batch).await.map_err(SimError::role("DA"))?;
                    let delay = self.rng.between(1, 12) * 5_000;
                    let release = self.now() + delay;
                    if let Some(attack) = self.attack.as_mut() {
                        attack.release_at_ms = Some(release);
                    }
                    self.log(format!(
                        "BYZANTINE posts batch {number} first as {}, holds {target} for {} s",
                        posted.locator,
                        delay / 1000
                    ));
                }
                _ => {}
            }
            // Later batches wait for the target's fate, except under withholding and for the
            // successor a reorder posts first.
            let goes_on =
                attack.kind == AttackKind::Withholding || (attack.kind == AttackKind::Reorder && number == target);
            if !goes_on {
                break;
            }
        }
        Ok(())
    }

    /// Late equivocation: once every running confirmer has replayed some batch n, a second
    /// batch n signed by the coordinator is posted on its own (docs/PROTOCOL.md, "Equivocation
    /// found late"). Publication goes on honestly.
    async fn equivocate_late(&mut self) -> Result<(), SimError> {
        let passed =
            self.confirmers.iter().filter_map(|role| role.follower.as_ref()).map(|f| f.status().replayed).min();
        let (Some(target @ 1..), Some(store)) = (passed, self.coordinator.store.clone()) else { return Ok(()) };
        let sealed = store.batches_after(target - 1, 1).await.map_err(SimError::role("ledger"))?;
        let Some(batch) = sealed.into_iter().next() else { return Ok(()) };
        let forged = self.forge(&batch, AttackKind::LateEquivocation)?;
        let id = match self.arweave.lock() {
            Ok(mut arweave) => arweave.post(Owner::Coordinator, vec![(target, bridge::codec::encode_batch(&forged))]),
            Err(_) => return Err(SimError::Setup("the simulated Arweave's lock".into())),
        };
        if let Some(attack) = self.attack.as_mut() {
            attack.target = Some(target);
            attack.done = true;
        }
        self.bad_from = Some((target, AttackKind::LateEquivocation.name()));
        self.log(format!(
            "BYZANTINE posts a second batch {target} as {}, after the confirmers replayed it",
            id.join(",")
        ));
        Ok(())
    }

    async fn post_honestly(&mut self, store: &coordinator::store::Store, batch: &SignedBatch) -> Result<(), SimError> {
        let published = self.da.publish(batch).await.map_err(SimError::role("DA"))?;
        store.set_published(published.number, &published.locator).await.map_err(SimError::role("ledger"))?;
        self.log(format!("published batch {} as {}", published.number, published.locator));
        Ok(())
    }

    /// A validly signed batch numbered like `batch` that differs from it as `kind` says.
    fn forge(&mut self, batch: &SignedBatch, kind: AttackKind) -> Result<SignedBatch, SimError> {
        let mut forged = batch.clone();
        match kind {
            AttackKind::ForgedWithdrawal => {
                // Signed by user 1 in user 0's name: only the coordinator could put it in a batch.
                let domain = bridge::eip712::Domain::new(&self.params);
                let withdraw = Withdraw {
                    from: self.users[0].address(),
                    asset: AssetId::Eth,
                    amount: Amount(1),
                    fee: Amount(0),
                    recipient: format!("0x{}", hex::encode([0x5a; 20])),
                    nonce: 0,
                };
                forged.body.push(BatchTx::User(self.users[1].sign(UserTx::Withdraw(withdraw), &domain)));
                forged.header.tx_count = u32::try_from(forged.body.len()).unwrap_or(u32::MAX);
                forged.header.txs_root = bridge::batch::txs_root(&forged.body);
            }
            AttackKind::ForgedWithdrawalsRoot => forged.header.eth_withdrawals_root = self.rng.bytes32(),
            _ => forged.header.timestamp += 1,
        }
        forged.signature = self.key()?.sign(&forged.header.hash());
        Ok(forged)
    }
}
