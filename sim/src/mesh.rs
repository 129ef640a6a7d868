//! The watchmen's mesh, simulated: every question a signing session puts to a signer and every
//! answer travel as events on simulated time, each delayed by its link, some dropped, duplicated
//! or cut by a partition (the seed's faults). As libp2p's request-response does, every question
//! gets exactly one answer at its asker: the signer's, or a failure at the request timeout (a
//! duplicated question's second answer is one more, which the session ignores).

use std::collections::{BTreeMap, BTreeSet};

use tss::messages::{Request, Response};
use tss::roast::Ticket;

use crate::rng::SimRng;

/// How long an asker waits for an answer before its request fails (the mesh's timeout).
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// A healthy link's delay: a few milliseconds to a few hundred.
const BASE_DELAY_MS: (u64, u64) = (2, 300);

/// One event on the mesh.
#[derive(Debug)]
pub(crate) enum MeshEvent {
    /// A question reaches its signer.
    Deliver { slot: usize, ticket: Ticket, asker: usize, signer: usize, request: Request },
    /// An answer (or a failure) reaches the session in `slot`.
    Answer { slot: usize, ticket: Ticket, response: Response },
    /// A session's wake-up, at the time it asked for.
    Wake { slot: usize },
}

/// A link's faults, one way.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LinkFault {
    pub(crate) drop_per_million: u64,
    pub(crate) duplicate_per_million: u64,
    /// Extra delay, up to this.
    pub(crate) slow_ms: u64,
    pub(crate) until_ms: u64,
}

impl LinkFault {
    /// A random one-way link among `n` watchmen (`n` ≥ 2) and its fault: up to half its
    /// messages lost, up to half duplicated, each slowed by up to `slow_max_ms`, until `until_ms`.
    pub(crate) fn random(rng: &mut SimRng, n: usize, slow_max_ms: u64, until_ms: u64) -> (usize, usize, LinkFault) {
        let n = n as u64;
        let from = rng.below(n) as usize;
        let to = ((from as u64 + 1 + rng.below(n.saturating_sub(1))) % n.max(1)) as usize;
        let fault = LinkFault {
            drop_per_million: rng.below(500_000),
            duplicate_per_million: rng.below(500_000),
            slow_ms: rng.below(slow_max_ms),
            until_ms,
        };
        (from, to, fault)
    }
}

#[derive(Debug, Default)]
pub(crate) struct SimMesh {
    /// Events by (time, sequence): the sequence keeps equal times in the order they were sent.
    queue: BTreeMap<(u64, u64), MeshEvent>,
    next: u64,
    links: BTreeMap<(usize, usize), LinkFault>,
    /// Watchmen cut off from the others, and until when.
    partition: Option<(BTreeSet<usize>, u64)>,
    /// Messages the mesh lost or duplicated: for the run's figures.
    pub(crate) dropped: u64,
    pub(crate) duplicated: u64,
}

impl SimMesh {
    pub(crate) fn schedule(&mut self, at_ms: u64, event: MeshEvent) {
        self.queue.insert((at_ms, self.next), event);
        self.next += 1;
    }

    /// The next event due at or before `now_ms`, with its time.
    pub(crate) fn pop_due(&mut self, now_ms: u64) -> Option<(u64, MeshEvent)> {
        let entry = self.queue.first_entry()?;
        if entry.key().0 > now_ms {
            return None;
        }
        let ((at, _), event) = entry.remove_entry();
        Some((at, event))
    }

    pub(crate) fn degrade(&mut self, from: usize, to: usize, fault: LinkFault) {
        self.links.insert((from, to), fault);
    }

    pub(crate) fn split(&mut self, cut_off: BTreeSet<usize>, until_ms: u64) {
        self.partition = Some((cut_off, until_ms));
    }

    /// Healing: every link whole again.
    pub(crate) fn heal(&mut self) {
        self.links.clear();
        self.partition = None;
    }

    fn cut(&self, a: usize, b: usize, now_ms: u64) -> bool {
        self.partition.as_ref().is_some_and(|(side, until)| now_ms < *until && (side.contains(&a) != side.contains(&b)))
    }

    fn fault(&self, from: usize, to: usize, now_ms: u64) -> LinkFault {
        self.links.get(&(from, to)).copied().filter(|f| now_ms < f.until_ms).unwrap_or_default()
    }

    /// When a message sent now over `from → to` arrives, if it does: `None` when it is lost.
    fn arrival(&mut self, rng: &mut SimRng, from: usize, to: usize, now_ms: u64) -> Option<u64> {
        if from != to && self.cut(from, to, now_ms) {
            self.dropped += 1;
            return None;
        }
        let fault = self.fault(from, to, now_ms);
        if rng.chance(fault.drop_per_million) {
            self.dropped += 1;
            return None;
        }
        let delay = rng.between(BASE_DELAY_MS.0, BASE_DELAY_MS.1) + rng.below(fault.slow_ms + 1);
        Some(now_ms + delay)
    }

    /// A session in `slot` asks `signer`; its answer comes back through [`Self::answer`], or a
    /// failure at the request timeout if the question is lost. A watchman asking itself goes
    /// through no network, but still takes a moment.
    pub(crate) fn ask(&mut self, rng: &mut SimRng, now_ms: u64, question: Question) {
        let Question { slot, ticket, asker, signer, request } = question;
        match self.arrival(rng, asker, signer, now_ms) {
            Some(at) => {
                let fault = self.fault(asker, signer, now_ms);
                if rng.chance(fault.duplicate_per_million) {
                    self.duplicated += 1;
                    let again = at + rng.below(1_000);
                    self.schedule(again, MeshEvent::Deliver { slot, ticket, asker, signer, request: request.clone() });
                }
                self.schedule(at, MeshEvent::Deliver { slot, ticket, asker, signer, request });
            }
            None => self.timeout(now_ms, slot, ticket),
        }
    }

    /// `signer`'s answer to a question of `asker`'s session, sent at `now_ms`.
    pub(crate) fn answer(
        &mut self,
        rng: &mut SimRng,
        now_ms: u64,
        (slot, ticket): (usize, Ticket),
        (signer, asker): (usize, usize),
        response: Response,
    ) {
        match self.arrival(rng, signer, asker, now_ms) {
            Some(at) => self.schedule(at, MeshEvent::Answer { slot, ticket, response }),
            None => self.timeout(now_ms, slot, ticket),
        }
    }

    fn timeout(&mut self, now_ms: u64, slot: usize, ticket: Ticket) {
        let response = Response::Failed { reason: "unreachable: the request timed out".into() };
        self.schedule(now_ms + REQUEST_TIMEOUT_MS, MeshEvent::Answer { slot, ticket, response });
    }
}

/// One question a session puts to a signer.
#[derive(Debug)]
pub(crate) struct Question {
    pub(crate) slot: usize,
    pub(crate) ticket: Ticket,
    pub(crate) asker: usize,
    pub(crate) signer: usize,
    pub(crate) request: Request,
}
