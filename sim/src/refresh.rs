//! A refresh of the watchmen's shares in the middle of a run, as OPERATIONS.md ("Refresh and
//! rotation") has operators do it: every operator runs `bridgectl refresh` beside its running
//! watchman (`tss`'s own [`tss::dkg::DkgRun`] with `Ceremony::Refresh`, on the ceremony
//! nodes' own mesh, so the watchmen's signing goes on meanwhile), then restarts its watchman
//! on the new share at a time of its own. Until the last operator has switched, shares of two
//! generations sign side by side. They do not combine: a session's leader verifies each share
//! against its own generation's verifying shares and excludes a signer of the other one, so a
//! signature needs `t` watchmen of the leader's generation. Payouts may wait out the switch;
//! once the faults stop they must be made (the run's liveness checks).
//!
//! About one run in two refreshes, on its own stream of chances: a run without a refresh is
//! the run it was before refreshes existed, and one with it is the same run until the refresh.
//!
//! `refresh-keeps-key`: every new share is of the group key the vaults hold.
//! `refresh-renews-shares`: no watchman's new share is its old one (a refresh that renewed
//! nothing would leave a stolen share as good as before, while the operators destroy their
//! backups of the old one believing otherwise).

use std::collections::BTreeMap;

use tss::KeyShare;

use crate::ceremony::{CeremonyKind, CeremonyNet};
use crate::mesh::SimMesh;
use crate::rng::SimRng;
use crate::world::World;
use crate::{SimConfig, SimError};

/// The refresh's stream of chances: the seed, xor this.
const REFRESH_STREAM: u64 = 0x7e_f7e5;
/// How long an operator's restart onto its new share keeps its watchman down, at most.
const SWITCH_DOWN_MAX_S: u64 = 60;

/// This run's refresh, if it has one, and the switches still to come.
pub(crate) struct Refresh {
    rng: SimRng,
    /// When the operators run the ceremony (done once it is `None`).
    at_ms: Option<u64>,
    /// Each watchman's new share and when its operator switches to it.
    switches: BTreeMap<usize, (u64, KeyShare)>,
}

impl Refresh {
    /// About one run in two refreshes, a sixth to a half into its fault phase, so that every
    /// operator has switched before the faults stop.
    pub(crate) fn new(config: &SimConfig) -> Self {
        let mut rng = SimRng::new(config.seed ^ REFRESH_STREAM);
        let refreshes = rng.below(2) == 0 && config.refresh;
        let at = rng.between(config.fault_ms / 6, config.fault_ms / 2);
        Refresh { rng, at_ms: refreshes.then_some(at), switches: BTreeMap::new() }
    }
}

impl World {
    /// The operators' turn: the ceremony when it is due, then each switch when it is due.
    pub(crate) fn refresh_turn(&mut self) -> Result<(), SimError> {
        let now = self.now();
        if self.refresh.at_ms.is_some_and(|at| now >= at) {
            self.refresh.at_ms = None;
            self.refresh_shares()?;
        }
        let due: Vec<usize> = self.refresh.switches.iter().filter(|(_, (at, _))| now >= *at).map(|(i, _)| *i).collect();
        for index in due {
            if let Some((_, share)) = self.refresh.switches.remove(&index) {
                self.switch_share(index, share);
            }
        }
        Ok(())
    }

    /// Every operator's `bridgectl refresh`, on a mesh of their ceremony nodes beside the
    /// watchmen's; its checks, and the switches it schedules.
    fn refresh_shares(&mut self) -> Result<(), SimError> {
        let old: Vec<KeyShare> = self.keys.shares.clone();
        let Some(group) = old.first().map(|s| *s.public.verifying_key()) else { return Ok(()) };
        self.log("the operators refresh the watchmen's shares (bridgectl refresh)");
        let mut net = CeremonyNet { mesh: SimMesh::default(), rng: SimRng::new(self.refresh.rng.below(u64::MAX)) };
        let Some((attempt, shares)) = self.ceremonies(&mut net, CeremonyKind::Refresh)? else { return Ok(()) };
        for (index, (new, old)) in shares.iter().zip(&old).enumerate() {
            if *new.public.verifying_key() != group {
                self.violate("refresh-keeps-key", format!("watchman {index}'s new share is of another group key"));
                return Ok(());
            }
            if new.key_package.signing_share() == old.key_package.signing_share() {
                self.violate("refresh-renews-shares", format!("watchman {index}'s new share is its old one"));
                return Ok(());
            }
        }
        self.log(format!("share refresh {attempt} done: every operator holds a new share of the same key"));
        // Each operator switches in the time left before the faults stop, halved.
        let now = self.now();
        let room = self.config.fault_ms.saturating_sub(now) / 2;
        for (index, share) in shares.into_iter().enumerate() {
            let at = now + self.refresh.rng.below(room + 1);
            self.refresh.switches.insert(index, (at, share));
        }
        Ok(())
    }

    /// Watchman `index`'s operator restarts it on its new share. One that is down starts on
    /// it; one that stopped for good stays stopped.
    fn switch_share(&mut self, index: usize, share: KeyShare) {
        let Some(slot) = self.keys.shares.get_mut(index) else { return };
        *slot = share;
        let down = self.refresh.rng.between(1, SWITCH_DOWN_MAX_S) * 1000;
        if self.confirmers.get(index).is_some_and(|role| role.follower.is_some()) {
            // What it had in memory goes with the process, as in a crash.
            self.stop_confirmer(index, down);
            self.log(format!("watchman {index}'s operator restarts it on its new share ({} s down)", down / 1000));
        } else {
            self.log(format!("watchman {index} is down: it will start on its new share"));
        }
    }
}
