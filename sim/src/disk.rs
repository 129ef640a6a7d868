//! Disk write failures: for a while, a role's database refuses every write, as a full or failing
//! disk does. The refusal is SQLite's own (`query_only` on every connection of the role's pool,
//! chains::db::refuse_writes), so the role's real store code meets a real SQLite error in the
//! middle of its work, and whatever it does next is what its binary would do:
//!
//! - the coordinator's sequencer stops at its first failed write (its ledger is the truth, and
//!   an acknowledgement is given only after its commit), and the process exits; it is started
//!   again once its disk takes writes, from what it committed;
//! - a confirmer's step fails and is tried again next tick, as its task does;
//! - the publisher's failed record of a posting is posted again later.
//!
//! A role started while its disk refuses (after a crash) gets the refusal on its new pool.

use crate::SimError;
use crate::world::World;

/// Which role's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Disk {
    Coordinator,
    Confirmer(usize),
}

impl World {
    /// Chosen by the seed during the fault phase: a disk starts refusing writes for 10 s to
    /// 10 min. The coordinator's only when the coordinator is honest: a byzantine one's
    /// publishing is the simulator's own code, not the role's.
    pub(crate) async fn fail_disks(&mut self) -> Result<(), SimError> {
        let honest = self.attack.is_none().then_some(Disk::Coordinator);
        let disks: Vec<Disk> = honest.into_iter().chain((0..self.confirmers.len()).map(Disk::Confirmer)).collect();
        for disk in disks {
            if !self.refuses(disk) && self.rng.chance(2_000) {
                let lasting = self.rng.between(10, 600) * 1000;
                self.refuse(disk, lasting).await?;
            }
        }
        Ok(())
    }

    async fn refuse(&mut self, disk: Disk, lasting: u64) -> Result<(), SimError> {
        self.disk_refusals.insert(disk, self.now() + lasting);
        self.set_refusal(disk, true).await?;
        self.faults += 1;
        self.log(format!("FAULT {disk}'s disk refuses writes for {} s", lasting / 1000));
        Ok(())
    }

    /// Disks whose fault is over take writes again; at the healing, every one.
    pub(crate) async fn disks_back(&mut self) -> Result<(), SimError> {
        let (now, healed) = (self.now(), self.healed);
        let back: Vec<Disk> =
            self.disk_refusals.iter().filter(|(_, until)| now >= **until || healed).map(|(disk, _)| *disk).collect();
        for disk in back {
            self.disk_refusals.remove(&disk);
            self.set_refusal(disk, false).await?;
            self.log(format!("{disk}'s disk takes writes again"));
        }
        Ok(())
    }

    /// Whether `disk` refuses writes now.
    pub(crate) fn refuses(&self, disk: Disk) -> bool {
        self.disk_refusals.contains_key(&disk)
    }

    /// Until when `disk` refuses writes, if it does.
    pub(crate) fn refused_until(&self, disk: Disk) -> Option<u64> {
        self.disk_refusals.get(&disk).copied()
    }

    /// Sets the refusal on the running role's pool, if the role is up (a role started later
    /// gets it at its start).
    pub(crate) async fn set_refusal(&mut self, disk: Disk, refuse: bool) -> Result<(), SimError> {
        let result = match disk {
            Disk::Coordinator => match &self.coordinator.store {
                Some(store) => store.refuse_writes(refuse).await.map_err(|e| e.to_string()),
                None => Ok(()),
            },
            Disk::Confirmer(index) => match &self.confirmers[index].store {
                Some(store) => store.refuse_writes(refuse).await.map_err(|e| e.to_string()),
                None => Ok(()),
            },
        };
        result.map_err(|reason| SimError::Role { what: "disk fault", reason })
    }

    /// The coordinator's sequencer failed: while its disk refuses writes that is the fault at
    /// work, and the process exits (its sequencer is an essential task) to be started again
    /// once the disk takes writes; otherwise it is a bug.
    pub(crate) fn sequencer_failed(
        &mut self,
        what: &'static str,
        error: impl std::fmt::Display,
    ) -> Result<(), SimError> {
        let Some(until) = self.refused_until(Disk::Coordinator) else {
            return Err(SimError::Role { what, reason: error.to_string() });
        };
        self.log(format!("coordinator stops: {what} failed on its disk: {error}"));
        let down = until.saturating_sub(self.now()) + self.rng.between(1, 30) * 1000;
        self.stop_coordinator(down);
        Ok(())
    }
}

impl std::fmt::Display for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Disk::Coordinator => write!(f, "the coordinator"),
            Disk::Confirmer(index) => write!(f, "confirmer {index}"),
        }
    }
}
