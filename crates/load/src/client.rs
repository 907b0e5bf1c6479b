//! One simulated client: its own party on its home shard, its own token and connection,
//! the Ious it knows it holds, and an inbox of swap proposals addressed to it. It does
//! one thing at a time, as a user's application would.
//!
//! **Ious.** A client's pool holds only Ious it owns and its own shard already shows: it
//! is filled from its own active contracts (gRPC) or the gateway's query (HTTP), never
//! from what another client committed, because a cross-shard transfer commits on the
//! receiver's shard a moment after the sender's answer. A client whose pool is short polls
//! its holdings (with backoff) until enough show up.
//!
//! **Swaps.** The proposer offers one of its Ious to a random client on another shard,
//! asking for any Iou of the run (they are all worth the same), and hands the offered
//! contract over (the counterparty's shard does not store it: explicit disclosure) through
//! that client's inbox, as one application would send another a message. The counterparty
//! accepts once its shard shows the proposal. Accepting is a reaction, not a slot: it
//! comes before the client's next own command, and a client that has run out of slots
//! keeps accepting until every client has (so no proposal is left waiting on a client that
//! stopped). A client keeps one Iou back when swaps are in the mix, so that it can always
//! answer a proposal.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ordo_ledger_client::DisclosedContract;
use rand::Rng;
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::driver::{Pace, Slot};
use crate::options::{Kind, Mix};
use crate::route::{Conn, Failure};
use crate::stats::{Op, Outcome, Recorder};

/// The kind of a command abandoned because the Ious it needs did not show on the
/// client's shard within `--timeout` (counted as timed out).
pub const IOU_NOT_VISIBLE: &str = "IOU_NOT_VISIBLE";
/// How often a client that waits for an Iou or a proposal looks again, at most.
const MAX_POLL: Duration = Duration::from_millis(200);
const FIRST_POLL: Duration = Duration::from_millis(10);

/// A swap proposal handed to its counterparty.
#[derive(Debug)]
pub(crate) struct Offer {
    pub proposal: String,
    pub offered: DisclosedContract,
    /// When it was handed over: an open loop's accept counts its latency from here.
    pub at: Instant,
}

/// A client as the others know it.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub party: String,
    pub shard: String,
}

/// What every client of a run shares.
pub(crate) struct Shared {
    pub peers: Vec<Peer>,
    pub inboxes: Vec<mpsc::UnboundedSender<Offer>>,
    /// The clients an issuer's Iou may go to: those not on the issuer's shard.
    pub holders: Vec<usize>,
    pub issuer: String,
    pub mix: Mix,
    /// Measured command ids are `{prefix}-c{client}-{n}`.
    pub prefix: String,
    pub timeout: Duration,
    pub open_loop: bool,
    pub recorder: Arc<Recorder>,
    /// Clients still sending their own commands.
    pub running: AtomicUsize,
    /// Offers handed over and not yet answered.
    pub offers: AtomicUsize,
}

pub(crate) struct Client {
    pub index: usize,
    /// Acting as the client's party on its home shard. Connections are opened on first
    /// use, so a client that only issues never opens this one.
    pub conn: Conn,
    /// Acting as the run's issuer on the first shard.
    pub issuer: Conn,
    pub pool: Vec<DisclosedContract>,
    /// Ious not to use again though the client's shard may still show them: offered in a
    /// proposal, or used by a command whose outcome is unknown (it may still commit).
    pub withheld: HashSet<String>,
    pub inbox: mpsc::UnboundedReceiver<Offer>,
    pub rng: StdRng,
    /// Clients on another shard than this one's.
    pub others: Vec<usize>,
    pub shared: Arc<Shared>,
    seq: u64,
}

/// How a wait for Ious ended.
enum Wait {
    Ready,
    /// An offer came in first (only when the caller serves offers).
    Offer(Offer),
    TimedOut,
    /// Nothing will come of waiting: the run is over.
    Over,
}

/// When a command started, for its latency, and when it stops waiting.
#[derive(Clone, Copy)]
struct Clock {
    /// The open loop's due time (latency counts from it); `None`: from when it is sent.
    due: Option<Instant>,
    /// When waiting gives up.
    deadline: Instant,
}

fn op_of(kind: Kind) -> Op {
    match kind {
        Kind::Issue => Op::Issue,
        Kind::Transfer => Op::Transfer,
        Kind::Swap => Op::Propose,
    }
}

impl Client {
    pub(crate) fn new(
        index: usize,
        conn: Conn,
        issuer: Conn,
        inbox: mpsc::UnboundedReceiver<Offer>,
        rng: StdRng,
        shared: Arc<Shared>,
    ) -> Self {
        let home = &shared.peers[index].shard;
        let others = (0..shared.peers.len())
            .filter(|j| shared.peers[*j].shard != *home)
            .collect();
        Self {
            index,
            conn,
            issuer,
            pool: Vec::new(),
            withheld: HashSet::new(),
            inbox,
            rng,
            others,
            shared,
            seq: 0,
        }
    }

    fn next_id(&mut self) -> String {
        self.seq += 1;
        format!("{}-c{}-{}", self.shared.prefix, self.index, self.seq)
    }

    /// How many Ious to keep back for answering proposals.
    fn keep(&self) -> usize {
        usize::from(self.shared.mix.swap > 0)
    }

    /// Refills the pool from the client's holdings on its shard.
    pub(crate) async fn refresh(&mut self) -> Result<(), Failure> {
        let held = self.conn.holdings().await?;
        self.pool = held
            .into_iter()
            .filter(|c| !self.withheld.contains(&c.contract_id))
            .collect();
        Ok(())
    }

    /// The Ious a command of `kind` needs in the pool.
    fn need(&self, kind: Kind) -> usize {
        match kind {
            Kind::Issue => 0,
            Kind::Transfer => self.keep() + 1,
            Kind::Swap => 2,
        }
    }

    /// Waits until the pool holds `need` Ious, polling the client's holdings; gives up at
    /// `deadline`, or when `over` says nothing will come of waiting.
    async fn wait_for_ious(
        &mut self,
        need: usize,
        deadline: Instant,
        serve_offers: bool,
        over: impl Fn() -> bool,
    ) -> Wait {
        let mut pause = FIRST_POLL;
        loop {
            if self.pool.len() >= need {
                return Wait::Ready;
            }
            if serve_offers && let Ok(offer) = self.inbox.try_recv() {
                return Wait::Offer(offer);
            }
            if over() {
                return Wait::Over;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wait::TimedOut;
            }
            if let Err(e) = self.refresh().await {
                tracing::debug!(client = self.index, error = %e.message, "reading holdings failed");
            }
            if self.pool.len() < need {
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(now))).await;
                pause = (pause * 2).min(MAX_POLL);
            }
        }
    }

    /// Sends the client's own commands, as `pace` lets it, until the run is over: each
    /// of a kind drawn from the mix, taken once the client holds the Ious it needs (a
    /// client without Ious does not hold up a command another client could send).
    /// Proposals that come in meanwhile are accepted first.
    pub(crate) async fn run(&mut self, pace: &Pace) {
        loop {
            self.serve_inbox().await;
            if pace.over() {
                return;
            }
            let kind = self.shared.mix.pick(&mut self.rng);
            let need = self.need(kind);
            let mut since = Instant::now();
            loop {
                let deadline = since + self.shared.timeout;
                match self
                    .wait_for_ious(need, deadline, true, || pace.over())
                    .await
                {
                    Wait::Ready => break,
                    Wait::Offer(offer) => self.accept(offer).await,
                    Wait::Over => return,
                    // No Iou for a whole timeout: the command due meanwhile fails for it.
                    Wait::TimedOut => {
                        let Some(Slot(due)) = pace.take().await else {
                            return;
                        };
                        self.not_visible(op_of(kind), due);
                        since = Instant::now();
                    }
                }
            }
            let slot = loop {
                tokio::select! {
                    biased;
                    Some(offer) = self.inbox.recv() => self.accept(offer).await,
                    slot = pace.take() => break slot,
                }
            };
            let Some(Slot(due)) = slot else { return };
            self.slot(kind, due, pace.stop()).await;
        }
    }

    /// A command that could not be sent: the Ious it needs did not show in time.
    fn not_visible(&mut self, op: Op, due: Option<Instant>) {
        let id = self.next_id();
        if due.is_none() {
            self.shared.recorder.submitted();
        }
        let start = due.unwrap_or_else(Instant::now);
        let outcome = Outcome::TimedOut(IOU_NOT_VISIBLE);
        self.shared.recorder.answer(op, id, start, outcome);
    }

    /// Sends one command of `kind`. `due`: an open loop's due time. Usually the Ious are
    /// in the pool already; an accepted proposal may have cost one, and then it waits
    /// (closed loop: until `stop`, dropping the command uncounted).
    async fn slot(&mut self, kind: Kind, due: Option<Instant>, stop: Option<Instant>) {
        let start = due.unwrap_or_else(Instant::now);
        let clock = Clock {
            due,
            deadline: start + self.shared.timeout,
        };
        let stopped = || stop.is_some_and(|s| Instant::now() >= s);
        match self
            .wait_for_ious(self.need(kind), clock.deadline, false, stopped)
            .await
        {
            Wait::Ready => {}
            Wait::Over | Wait::Offer(_) => return,
            Wait::TimedOut => return self.not_visible(op_of(kind), due),
        }
        match kind {
            Kind::Issue => self.issue(clock).await,
            Kind::Transfer => self.transfer(clock).await,
            Kind::Swap => self.propose(clock).await,
        }
    }

    fn random_other(&mut self) -> usize {
        self.others[self.rng.random_range(0..self.others.len())]
    }

    async fn issue(&mut self, clock: Clock) {
        let holders = &self.shared.holders;
        let owner = self.shared.peers[holders[self.rng.random_range(0..holders.len())]]
            .party
            .clone();
        let id = self.next_id();
        let work = self.issuer.create_iou(&owner, &id);
        measure(&self.shared, Op::Issue, &id, clock, work).await;
    }

    async fn transfer(&mut self, clock: Clock) {
        let iou = self
            .pool
            .swap_remove(self.rng.random_range(0..self.pool.len()));
        let other = self.random_other();
        let to = self.shared.peers[other].party.clone();
        let id = self.next_id();
        // Whatever the answer, the Iou leaves the pool: gone when committed, and after a
        // rejection the next refresh tells whether it is still there.
        let work = self.conn.transfer(&iou.contract_id, &to, &id);
        let result = measure(&self.shared, Op::Transfer, &id, clock, work).await;
        self.withhold_unless_settled(&iou.contract_id, &result);
    }

    async fn propose(&mut self, clock: Clock) {
        let offered = self
            .pool
            .swap_remove(self.rng.random_range(0..self.pool.len()));
        let counterparty = self.random_other();
        let to = self.shared.peers[counterparty].party.clone();
        let id = self.next_id();
        let work = self
            .conn
            .propose(&offered.contract_id, &to, &self.shared.issuer, &id);
        match measure(&self.shared, Op::Propose, &id, clock, work).await {
            Some(Ok(proposal)) => {
                self.withheld.insert(offered.contract_id.clone());
                self.shared.offers.fetch_add(1, Ordering::SeqCst);
                let offer = Offer {
                    proposal,
                    offered,
                    at: Instant::now(),
                };
                if self.shared.inboxes[counterparty].send(offer).is_err() {
                    // Receivers live until no offer is outstanding; this cannot happen.
                    self.shared.offers.fetch_sub(1, Ordering::SeqCst);
                }
            }
            // The proposal was certainly not created: the Iou is still free.
            Some(Err(f)) if f.definite => self.pool.push(offered),
            _ => {
                self.withheld.insert(offered.contract_id);
            }
        }
    }

    /// After a command that used the Iou `cid`: unless its outcome is known, the Iou may
    /// still go, so it is not used again.
    fn withhold_unless_settled<T>(&mut self, cid: &str, result: &Option<Result<T, Failure>>) {
        let settled = match result {
            Some(Ok(_)) => true,
            Some(Err(f)) => f.definite,
            None => false,
        };
        if !settled {
            self.withheld.insert(cid.to_owned());
        }
    }

    /// Accepts an offer with one of the client's Ious, once its shard shows the proposal.
    pub(crate) async fn accept(&mut self, offer: Offer) {
        self.answer_offer(offer).await;
        self.shared.offers.fetch_sub(1, Ordering::SeqCst);
    }

    async fn answer_offer(&mut self, offer: Offer) {
        let start = if self.shared.open_loop {
            offer.at
        } else {
            Instant::now()
        };
        let clock = Clock {
            due: self.shared.open_loop.then_some(offer.at),
            deadline: start + self.shared.timeout,
        };
        let visible = self
            .wait_for_proposal(&offer.proposal, clock.deadline)
            .await;
        let ready = visible
            && matches!(
                self.wait_for_ious(1, clock.deadline, false, || false).await,
                Wait::Ready
            );
        if !ready {
            let id = self.next_id();
            self.shared.recorder.submitted();
            let outcome = Outcome::TimedOut(IOU_NOT_VISIBLE);
            self.shared.recorder.answer(Op::Accept, id, start, outcome);
            return;
        }
        let counter = self
            .pool
            .swap_remove(self.rng.random_range(0..self.pool.len()));
        let id = self.next_id();
        let work = self
            .conn
            .accept(&offer.proposal, &counter.contract_id, &offer.offered, &id);
        let result = measure(&self.shared, Op::Accept, &id, clock, work).await;
        self.withhold_unless_settled(&counter.contract_id, &result);
        if let Some(Ok(now_mine)) = result {
            // Committed on this client's shard before the answer: usable at once.
            self.pool.push(now_mine);
        }
    }

    /// Waits until the client's shard shows the proposal (it commits there a moment after
    /// the proposer's shard answered).
    async fn wait_for_proposal(&self, proposal: &str, deadline: Instant) -> bool {
        let mut pause = FIRST_POLL;
        loop {
            if self.conn.sees_proposal(proposal).await.unwrap_or(false) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Accepts every offer already in the inbox.
    pub(crate) async fn serve_inbox(&mut self) {
        while let Ok(offer) = self.inbox.try_recv() {
            self.accept(offer).await;
        }
    }

    /// After its own commands: accepts offers until every client has stopped sending and
    /// no offer is outstanding.
    pub(crate) async fn drain(&mut self) {
        loop {
            tokio::select! {
                offer = self.inbox.recv() => match offer {
                    Some(offer) => self.accept(offer).await,
                    None => return,
                },
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    let s = &self.shared;
                    if s.running.load(Ordering::SeqCst) == 0 && s.offers.load(Ordering::SeqCst) == 0 {
                        return;
                    }
                }
            }
        }
    }
}

/// Sends one command and records its outcome: counted as submitted when sent (closed
/// loop; an open loop's commands were counted when due), timed out at the clock's
/// deadline. `None` when it timed out.
async fn measure<T>(
    shared: &Shared,
    op: Op,
    command_id: &str,
    clock: Clock,
    work: impl Future<Output = Result<T, Failure>>,
) -> Option<Result<T, Failure>> {
    let sent = Instant::now();
    let started = clock.due.unwrap_or(sent);
    if clock.due.is_none() || op == Op::Accept {
        shared.recorder.submitted();
    }
    if let Some(due) = clock.due {
        shared.recorder.waited(sent.saturating_duration_since(due));
    }
    let deadline = started + shared.timeout;
    let result = tokio::time::timeout_at(deadline, work).await.ok();
    let outcome = match &result {
        None => Outcome::TimedOut(crate::stats::TIMEOUT),
        Some(Ok(_)) => Outcome::Committed,
        Some(Err(f)) => Outcome::Rejected(f.clone()),
    };
    shared
        .recorder
        .answer(op, command_id.to_owned(), started, outcome);
    result
}
