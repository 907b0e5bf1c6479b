//! One sequenced event at a time: decode and verify each envelope, fold topology, feed
//! informee trees and responses to the deciding core, and let the event's timestamp (the
//! domain clock) time out due requests. The result is the [`Changes`] the runtime commits
//! with the cursor in one transaction.
//!
//! Nothing a member sends can stop the mediator: a message that does not decode, verify or
//! fit is ignored (a malformed informee tree is rejected at once), and what no honest member
//! sends raises an alarm (`ordo_mediator_alarms_total{kind}`). Every message must be signed
//! by the member that sent its event, so nobody can pass off another member's response.

use std::sync::Arc;

use ordo_core::{KeyPair, MemberId, PublicKey, SequencedEvent, Timestamp};
use ordo_protocol::{
    MemberRole, Message, SignedMessage, TopologyChange, TopologyState, TopologyTransaction,
};

use crate::error::MediatorError;
use crate::metrics;
use crate::store::{Changes, OutboxMessage, Resumed};
use crate::verdict::{Aggregator, Answered, Decision, Ignored, Opened};

/// An alarm of an event: its kind (the metric's label) and what was wrong.
pub type Alarm = (&'static str, String);

/// The deterministic message id of a request's verdict: a resend after a crash is
/// deduplicated by the sequencer.
pub fn verdict_message_id(d: &Decision) -> String {
    format!("verdict-{}", d.request.micros())
}

/// A message the core ignored: counted, and the alarm it raises when no honest member
/// sends it.
fn ignore(ignored: &Ignored, at: Timestamp, what: &str) -> Option<Alarm> {
    metrics::ignored(ignored.label());
    if ignored.is_alarm() {
        Some((ignored.label(), ignored.to_string()))
    } else {
        tracing::info!(reason = %ignored, %at, "{what} ignored");
        None
    }
}

pub struct Processor {
    me: MemberId,
    key: Arc<KeyPair>,
    topology_manager: MemberId,
    /// The last processed (committed or about to be) event.
    pub cursor: Timestamp,
    /// Shared with the checks of the next batch, copied only when a topology transaction
    /// changes it.
    pub topology: Arc<TopologyState>,
    pub core: Aggregator,
}

/// An event with its messages decoded and their signatures checked: each message, or the
/// alarm it raises instead.
pub struct CheckedEvent {
    pub event: SequencedEvent,
    messages: Vec<Result<SignedMessage, Alarm>>,
}

impl CheckedEvent {
    /// Whether the event carries a topology transaction: a batch ends after it, since the
    /// events after it must be checked against the topology it makes.
    pub fn has_topology(&self) -> bool {
        self.messages.iter().any(|m| {
            matches!(
                m,
                Ok(SignedMessage {
                    message: Message::Topology(_),
                    ..
                })
            )
        })
    }
}

impl Processor {
    pub fn resume(
        me: MemberId,
        key: Arc<KeyPair>,
        topology_manager: MemberId,
        resumed: Resumed,
    ) -> Self {
        Self {
            me,
            key,
            topology_manager,
            cursor: resumed.cursor,
            topology: Arc::new(resumed.topology),
            core: Aggregator::new(resumed.pending, resumed.cursor),
        }
    }

    /// Decodes every message of `events` and checks its signature against the current
    /// topology, all in one task off the async workers. Events after one that changes the
    /// topology must be checked again once it is applied.
    pub async fn check(
        &self,
        events: Vec<SequencedEvent>,
    ) -> Result<Vec<CheckedEvent>, MediatorError> {
        let me = self.me.clone();
        let key = self.key.clone();
        let topology = self.topology.clone();
        tokio::task::spawn_blocking(move || {
            events
                .into_iter()
                .map(|event| {
                    let messages = event
                        .envelopes
                        .iter()
                        .map(|e| verified(&me, &key, &topology, &e.content, &event.sender))
                        .collect();
                    CheckedEvent { event, messages }
                })
                .collect()
        })
        .await
        .map_err(|e| MediatorError::Internal(format!("checking signatures: {e}")))
    }

    /// What the checked event changes. The in-memory state moves along; if the commit
    /// fails the runtime discards this processor and resumes from the database.
    pub async fn handle(&mut self, checked: &CheckedEvent) -> Result<Changes, MediatorError> {
        let at = checked.event.timestamp;
        let mut changes = Changes::default();
        let mut decisions = Vec::new();
        let mut topology_changed = false;
        let mut alarms: Vec<Alarm> = Vec::new();
        let mut alarm = |kind: &'static str, details: &str| {
            metrics::ignored(kind);
            alarms.push((kind, details.to_owned()));
        };
        for message in &checked.messages {
            let signed = match message {
                Ok(signed) => signed,
                Err((kind, details)) => {
                    alarm(kind, details);
                    continue;
                }
            };
            let signer = &signed.signer;
            match &signed.message {
                Message::Topology(tx) => {
                    if *signer != self.topology_manager {
                        alarm(
                            "topology_not_from_manager",
                            &format!("topology transaction {} signed by {signer}", tx.serial),
                        );
                        continue;
                    }
                    let mut next = (*self.topology).clone();
                    match next.apply(tx, at) {
                        Ok(()) => {
                            self.topology = Arc::new(next);
                            topology_changed = true;
                        }
                        Err(e) => alarm("topology_refused", &e.to_string()),
                    }
                }
                Message::InformeeTree(tree) => {
                    match self.core.on_request(at, tree, signer, &self.topology) {
                        Ok(Opened::Pending(request)) => {
                            tracing::debug!(request = %at, root_hash = %tree.root_hash, "confirmation request pending");
                            changes.opened.push(request);
                        }
                        Ok(Opened::Decided(d)) => {
                            let reasons = match &d.outcome {
                                ordo_protocol::VerdictOutcome::Reject { reasons, .. } => {
                                    reasons.join("; ")
                                }
                                _ => String::new(),
                            };
                            alarm("malformed_informee_tree", &reasons);
                            decisions.push(d);
                        }
                        Err(ignored) => {
                            if let Some((kind, details)) = ignore(&ignored, at, "informee tree") {
                                alarm(kind, &details);
                            }
                        }
                    }
                }
                Message::Response(response) => match self.core.on_response(response, signer, at) {
                    Ok(Answered::Recorded { request, parties }) => {
                        changes.answered.push((request, parties));
                    }
                    Ok(Answered::Decided(d)) => decisions.push(d),
                    Err(ignored) => {
                        if let Some((kind, details)) = ignore(&ignored, at, "response") {
                            alarm(kind, &details);
                        }
                    }
                },
                // Its timestamp is all that matters, and every event's drives the clock.
                Message::TimeProof(_) => {}
                Message::View(_) | Message::Verdict(_) => {
                    alarm(
                        "not_for_mediator",
                        &format!("a view or verdict signed by {signer}"),
                    );
                }
            }
        }
        decisions.extend(self.core.on_time(at));
        changes.alarms = alarms;
        if topology_changed {
            changes.topology = Some(self.topology.clone());
        }
        changes.decided = self.sign(decisions).await?;
        self.cursor = at;
        Ok(changes)
    }

    /// Signs each decision's verdict (off the async workers) for the outbox.
    async fn sign(
        &self,
        decisions: Vec<Decision>,
    ) -> Result<Vec<(Decision, OutboxMessage)>, MediatorError> {
        if decisions.is_empty() {
            return Ok(Vec::new());
        }
        let me = self.me.clone();
        let key = self.key.clone();
        tokio::task::spawn_blocking(move || {
            decisions
                .into_iter()
                .map(|d| {
                    let payload = SignedMessage::encode(&me, &key, &Message::Verdict(d.verdict()));
                    let message = OutboxMessage {
                        message_id: verdict_message_id(&d),
                        recipients: d.recipients.iter().cloned().collect(),
                        payload,
                    };
                    (d, message)
                })
                .collect()
        })
        .await
        .map_err(|e| MediatorError::Internal(format!("signing verdicts: {e}")))
    }
}

/// The decoded message if it is signed by the event's sender and its signature verifies
/// against the signer's key in topology; otherwise the alarm it raises.
fn verified(
    me: &MemberId,
    key: &KeyPair,
    topology: &TopologyState,
    content: &[u8],
    sender: &MemberId,
) -> Result<SignedMessage, Alarm> {
    let signed = SignedMessage::decode(content).map_err(|e| ("malformed", e.to_string()))?;
    if signed.signer != *sender {
        return Err((
            "signer_not_sender",
            format!("a message signed by {}", signed.signer),
        ));
    }
    let Some(public) = key_for(me, key, topology, &signed) else {
        return Err((
            "unknown_signer",
            format!(
                "a message from {}, which topology does not know",
                signed.signer
            ),
        ));
    };
    signed
        .verify(&public)
        .map(|()| signed)
        .map_err(|e| ("bad_signature", e.to_string()))
}

fn key_for(
    me: &MemberId,
    key: &KeyPair,
    topology: &TopologyState,
    signed: &SignedMessage,
) -> Option<PublicKey> {
    if signed.signer == *me {
        return Some(key.public());
    }
    if let Some(key) = topology.key_of(&signed.signer) {
        return Some(key);
    }
    // The topology manager introduces itself: its key comes from its own AddMember,
    // serial 1, which must be bound to the configured id.
    match &signed.message {
        Message::Topology(
            tx @ TopologyTransaction {
                serial: 1,
                change:
                    TopologyChange::AddMember {
                        member,
                        role: MemberRole::TopologyManager,
                        ..
                    },
            },
        ) if *member == signed.signer && topology.serial == 0 => {
            let mut probe = TopologyState::default();
            probe.apply(tx, Timestamp::MIN).ok()?;
            probe.key_of(member)
        }
        _ => None,
    }
}
