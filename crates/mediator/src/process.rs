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
    pub topology: TopologyState,
    pub core: Aggregator,
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
            topology: resumed.topology,
            core: Aggregator::new(resumed.pending, resumed.cursor),
        }
    }

    /// What `event` changes. The in-memory state moves along; if the commit fails the
    /// runtime discards this processor and resumes from the database.
    pub async fn handle(&mut self, event: SequencedEvent) -> Result<Changes, MediatorError> {
        let at = event.timestamp;
        let mut changes = Changes::default();
        let mut decisions = Vec::new();
        let mut topology_changed = false;
        let sender = event.sender;
        let mut alarms: Vec<Alarm> = Vec::new();
        let mut alarm = |kind: &'static str, details: &str| {
            metrics::ignored(kind);
            alarms.push((kind, details.to_owned()));
        };
        for envelope in event.envelopes {
            let signed = match self.verified(&envelope.content, &sender).await {
                Ok(signed) => signed,
                Err((kind, details)) => {
                    alarm(kind, &details);
                    continue;
                }
            };
            let signer = signed.signer;
            match signed.message {
                Message::Topology(tx) => {
                    if signer != self.topology_manager {
                        alarm(
                            "topology_not_from_manager",
                            &format!("topology transaction {} signed by {signer}", tx.serial),
                        );
                        continue;
                    }
                    match self.topology.apply(&tx, at) {
                        Ok(()) => topology_changed = true,
                        Err(e) => alarm("topology_refused", &e.to_string()),
                    }
                }
                Message::InformeeTree(tree) => {
                    match self.core.on_request(at, &tree, &signer, &self.topology) {
                        Ok(Opened::Pending(request)) => {
                            tracing::debug!(request = %at, root_hash = %tree.root_hash, "confirmation request pending");
                            changes.opened.push(request);
                        }
                        Ok(Opened::Decided(d)) => {
                            let reasons = match &d.outcome {
                                ordo_protocol::VerdictOutcome::Reject { reasons } => {
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
                Message::Response(response) => {
                    match self.core.on_response(&response, &signer, at) {
                        Ok(Answered::Recorded { request, parties }) => {
                            changes.answered.push((request, parties));
                        }
                        Ok(Answered::Decided(d)) => decisions.push(d),
                        Err(ignored) => {
                            if let Some((kind, details)) = ignore(&ignored, at, "response") {
                                alarm(kind, &details);
                            }
                        }
                    }
                }
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

    /// The decoded message if it is signed by the event's sender and its signature
    /// verifies against the signer's key in topology; otherwise the alarm it raises.
    async fn verified(&self, content: &[u8], sender: &MemberId) -> Result<SignedMessage, Alarm> {
        let signed = SignedMessage::decode(content).map_err(|e| ("malformed", e.to_string()))?;
        if signed.signer != *sender {
            return Err((
                "signer_not_sender",
                format!("a message signed by {}", signed.signer),
            ));
        }
        let Some(key) = self.key_for(&signed) else {
            return Err((
                "unknown_signer",
                format!(
                    "a message from {}, which topology does not know",
                    signed.signer
                ),
            ));
        };
        // Signature checks run off the async workers.
        tokio::task::spawn_blocking(move || signed.verify(&key).map(|()| signed))
            .await
            .map_err(|e| ("bad_signature", format!("the signature check failed: {e}")))?
            .map_err(|e| ("bad_signature", e.to_string()))
    }

    fn key_for(&self, signed: &SignedMessage) -> Option<PublicKey> {
        if signed.signer == self.me {
            return Some(self.key.public());
        }
        if let Some(key) = self.topology.key_of(&signed.signer) {
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
            ) if *member == signed.signer && self.topology.serial == 0 => {
                let mut probe = TopologyState::default();
                probe.apply(tx, Timestamp::MIN).ok()?;
                probe.key_of(member)
            }
            _ => None,
        }
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
