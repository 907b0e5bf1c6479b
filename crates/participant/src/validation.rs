//! The checks of an event's messages that need no database (DESIGN §4, *Trust*): decode,
//! signature, and for a view, in order of cost — the structure of the view, its binding to
//! the request's root hash, the confirmation policy it declares, the submitter's right to
//! act for its parties, and its re-interpretation under one step budget. Pure and
//! CPU-bound: the processor runs it on a blocking thread before the event's database
//! transaction.
//!
//! Nothing here fails: every fault of a message is a deterministic property of the message
//! (the same on every replica, on every retry), so it becomes a rejection or an ignored
//! message plus an [`Alarm`], and processing goes on.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ordo_core::{Hash, MemberId, PartyId, PublicKey, SequencedEvent};
use ordo_ledger::{LedgerError, PackageStore};
use ordo_proto::errors::ErrorCode;
use ordo_protocol::{
    Message, SignedMessage, TopologyChange, TopologyState, TopologyTransaction, Verdict,
    ViewMessage,
};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::alarm::{Alarm, Raised};
use crate::views::{self, ViewPayload};

/// What the checks of one event need to know.
pub struct Context<'a> {
    /// This participant.
    pub me: &'a MemberId,
    pub topology_manager: &'a MemberId,
    /// Topology as of the event.
    pub topology: &'a TopologyState,
    pub packages: &'a PackageStore,
}

/// The interpretation limits every participant applies alike: the domain's.
pub fn limits(topology: &TopologyState) -> ordo_ledger::Limits {
    let p = &topology.parameters;
    ordo_ledger::Limits {
        max_operations: p.max_interpretation_steps,
        max_nodes: p.max_transaction_nodes,
        max_payload_bytes: p.max_contract_bytes,
        max_exercise_depth: p.max_exercise_depth,
    }
}

/// Why this participant rejects a request: the reason goes to the mediator (and so to the
/// submitter); the alarm, if any, to the operator. A rejection without an alarm is one an
/// honest submitter can meet (a contract consumed or locked in the meantime).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub alarm: Option<Alarm>,
    /// The error code the submitter's completion carries.
    pub code: ErrorCode,
    pub reason: String,
}

impl Rejection {
    /// A request no honest submitter makes (FAILED_PRECONDITION).
    pub fn alarm(alarm: Alarm, reason: impl Into<String>) -> Self {
        Self {
            alarm: Some(alarm),
            code: ordo_proto::errors::FAILED_PRECONDITION,
            reason: reason.into(),
        }
    }
}

impl From<crate::conflict::Conflict> for Rejection {
    /// A conflict an honest submitter can meet: no alarm.
    fn from(c: crate::conflict::Conflict) -> Self {
        Self {
            alarm: None,
            code: c.code,
            reason: c.reason,
        }
    }
}

/// A view addressed to this participant, after the checks.
#[derive(Debug)]
pub struct CheckedView {
    pub submitter: MemberId,
    /// The root hash the view message names (64 hex digits; verified when `outcome` is
    /// `Ok`).
    pub root_hash: String,
    /// The view, when it decodes, and its JSON as it arrived.
    pub payload: Option<(ViewPayload, Box<RawValue>)>,
    /// The confirming parties the request declares for this view: this participant
    /// answers for those it hosts (what the mediator waits for).
    pub declared_confirming: BTreeSet<PartyId>,
    pub outcome: Result<(), Rejection>,
}

/// A message of the event that passed decoding and signature checks.
#[derive(Debug)]
pub enum Prepared {
    Topology(TopologyTransaction),
    View(Box<CheckedView>),
    Verdict(Verdict),
}

/// An event's messages after the checks, and the alarms they raised.
#[derive(Debug, Default)]
pub struct PreparedEvent {
    pub messages: Vec<Prepared>,
    pub alarms: Vec<Raised>,
}

fn decode_key(hex_key: &str) -> Option<PublicKey> {
    PublicKey::from_bytes(&hex::decode(hex_key).ok()?).ok()
}

/// Decodes and verifies the event's messages and checks its view. Anything malformed,
/// wrongly signed or not meant for a participant is dropped with an alarm; a second view
/// in one event likewise (a request has one view per participant).
pub fn prepare(ctx: &Context<'_>, event: &SequencedEvent) -> PreparedEvent {
    let topology = ctx.topology;
    let mut out = PreparedEvent::default();
    let mut alarm = |a: Alarm, details: String| out.alarms.push(Raised::new(a, details));
    let mut messages = Vec::new();
    let max_bytes = topology.parameters.max_request_bytes;
    for envelope in &event.envelopes {
        if envelope.content.len() > max_bytes {
            alarm(
                Alarm::OversizedMessage,
                format!(
                    "a message of {} bytes, more than the domain's max_request_bytes {max_bytes}",
                    envelope.content.len()
                ),
            );
            continue;
        }
        let signed = match SignedMessage::decode(&envelope.content) {
            Ok(s) => s,
            Err(e) => {
                alarm(Alarm::MalformedMessage, e.to_string());
                continue;
            }
        };
        if signed.signer != event.sender {
            alarm(
                Alarm::SignerNotSender,
                format!("a message signed by {}", signed.signer),
            );
            continue;
        }
        let is_participant = |m: &MemberId| topology.shards.values().any(|s| s.participant == *m);
        let key = match &signed.message {
            Message::Topology(t) if signed.signer == *ctx.topology_manager => {
                topology
                    .key_of(ctx.topology_manager)
                    .or_else(|| match &t.change {
                        // The manager's own first transaction introduces its key.
                        TopologyChange::AddMember {
                            member, public_key, ..
                        } if t.serial == 1 && member == ctx.topology_manager => {
                            decode_key(public_key)
                        }
                        _ => None,
                    })
            }
            Message::View(_) if is_participant(&signed.signer) => topology.key_of(&signed.signer),
            Message::View(_) => None,
            Message::Verdict(_) if topology.mediator() == Some(&signed.signer) => {
                topology.key_of(&signed.signer)
            }
            Message::Verdict(_) => {
                alarm(
                    Alarm::VerdictNotFromMediator,
                    format!("a verdict signed by {}", signed.signer),
                );
                continue;
            }
            other => {
                alarm(
                    Alarm::UnexpectedMessage,
                    format!("a {} message signed by {}", kind(other), signed.signer),
                );
                continue;
            }
        };
        let Some(key) = key else {
            alarm(
                Alarm::UnknownSigner,
                format!(
                    "a {} message from {}, which topology does not know in that role",
                    kind(&signed.message),
                    signed.signer
                ),
            );
            continue;
        };
        if let Err(e) = signed.verify(&key) {
            alarm(Alarm::BadSignature, e.to_string());
            continue;
        }
        messages.push(signed.message);
    }

    let mut seen_view = false;
    for message in messages {
        match message {
            Message::Topology(t) => out.messages.push(Prepared::Topology(t)),
            Message::Verdict(v) => out.messages.push(Prepared::Verdict(v)),
            Message::View(_) if seen_view => out.alarms.push(Raised::new(
                Alarm::DuplicateView,
                "a second view for this participant in one request; only the first is checked",
            )),
            Message::View(v) => {
                seen_view = true;
                if let Some(checked) = check_view_message(ctx, &event.sender, v, &mut out.alarms) {
                    out.messages.push(Prepared::View(Box::new(checked)));
                }
            }
            // Filtered out above.
            Message::InformeeTree(_) | Message::Response(_) | Message::TimeProof(_) => {}
        }
    }
    out
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Topology(_) => "topology",
        Message::View(_) => "view",
        Message::InformeeTree(_) => "informee tree",
        Message::Response(_) => "response",
        Message::Verdict(_) => "verdict",
        Message::TimeProof(_) => "time proof",
    }
}

/// Checks one view message from `submitter`. `None` when it cannot even name a request
/// (its root hash is not a hash): it is dropped with an alarm.
fn check_view_message(
    ctx: &Context<'_>,
    submitter: &MemberId,
    message: ViewMessage,
    alarms: &mut Vec<Raised>,
) -> Option<CheckedView> {
    if message.root_hash.parse::<Hash>().is_err() {
        alarms.push(Raised::new(
            Alarm::MalformedRequest,
            "a view whose root hash is not 64 hex digits",
        ));
        return None;
    }
    let declared_confirming = message.commitment.confirming_parties.clone();
    let root_hash = message.root_hash.clone();
    // The checks are pure; a panic in them is a defect, but one that every replica would
    // hit again on this event: it rejects the view instead of halting the shard.
    let checked = catch_unwind(AssertUnwindSafe(|| check_view(ctx, submitter, message)));
    let (payload, outcome) = checked.unwrap_or_else(|_| {
        (
            None,
            Err(Rejection::alarm(
                Alarm::CheckPanicked,
                "the participant failed to check the view",
            )),
        )
    });
    if let Err(Rejection {
        alarm: Some(a),
        reason,
        ..
    }) = &outcome
    {
        alarms.push(Raised::new(*a, reason.clone()));
    }
    Some(CheckedView {
        submitter: submitter.clone(),
        root_hash,
        payload,
        declared_confirming,
        outcome,
    })
}

type Checked = (Option<(ViewPayload, Box<RawValue>)>, Result<(), Rejection>);

/// The checks of one view, cheapest first; the first that fails names the rejection.
fn check_view(ctx: &Context<'_>, submitter: &MemberId, mut message: ViewMessage) -> Checked {
    let limits = limits(ctx.topology);
    let json = std::mem::take(&mut message.view);
    if let Err(reason) = check_counts(json.get(), limits.max_nodes) {
        return (None, Err(Rejection::alarm(Alarm::MalformedView, reason)));
    }
    let payload: ViewPayload = match serde_json::from_str(json.get()) {
        Ok(p) => p,
        Err(e) => {
            let r = Rejection::alarm(Alarm::MalformedView, format!("malformed view: {e}"));
            return (None, Err(r));
        }
    };
    let view_hash = views::view_hash(&json);
    let outcome = (|| {
        ordo_ledger::check_view(&payload.view, &limits)
            .map_err(|e| Rejection::alarm(Alarm::MalformedView, e.to_string()))?;
        message
            .check_inclusion(submitter, ctx.me, &view_hash)
            .map_err(|e| {
                let alarm = match e.kind() {
                    "root_hash_mismatch" => Alarm::RootHashMismatch,
                    _ => Alarm::MalformedRequest,
                };
                Rejection::alarm(alarm, format!("the request is not bound together: {e}"))
            })?;
        check_policy(&message, &payload)?;
        check_submitters(ctx.topology, submitter, &payload)?;
        ordo_ledger::reinterpret_view(ctx.packages, &payload.view, &limits)
            .map(drop)
            .map_err(|e| {
                let alarm = match e {
                    LedgerError::StepLimit { .. } => Alarm::StepBudget,
                    _ => Alarm::Conformance,
                };
                Rejection::alarm(alarm, format!("view does not conform: {e}"))
            })
    })();
    (Some((payload, json)), outcome)
}

/// The view's node, root and input counts within `max`, counted in one pass over its JSON
/// that builds nothing, before it becomes typed data (which costs far more): a view of a
/// million nodes is refused without building one. `ordo_ledger::check_view` checks them
/// again, with the rest.
fn check_counts(json: &str, max: usize) -> Result<(), String> {
    #[derive(Default)]
    struct Count(usize);
    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Counter;
            impl<'de> Visitor<'de> for Counter {
                type Value = Count;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an array or an object")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Count(n))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                    let mut n = 0;
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Count(n))
                }
            }
            d.deserialize_any(Counter)
        }
    }
    #[derive(Deserialize)]
    struct Shape {
        view: Counts,
    }
    #[derive(Deserialize)]
    struct Counts {
        #[serde(default)]
        nodes: Count,
        #[serde(default)]
        roots: Count,
        #[serde(default)]
        inputs: Count,
    }
    let shape: Shape = serde_json::from_str(json).map_err(|e| format!("malformed view: {e}"))?;
    for (what, Count(len)) in [
        ("nodes", shape.view.nodes),
        ("roots", shape.view.roots),
        ("input contracts", shape.view.inputs),
    ] {
        if len > max {
            return Err(format!(
                "malformed view: the view has {len} {what}, more than the domain's \
                 max_transaction_nodes {max}"
            ));
        }
    }
    Ok(())
}

/// The request must declare for this view exactly the informees and confirming parties
/// its actions have under the ledger model: this participant will answer for the
/// confirming parties it hosts, and a party the mediator is not told to wait for could be
/// committed for without its consent.
fn check_policy(message: &ViewMessage, payload: &ViewPayload) -> Result<(), Rejection> {
    let declared = &message.commitment;
    let names = |s: &BTreeSet<PartyId>| -> String {
        let v: Vec<&str> = s.iter().map(PartyId::as_str).collect();
        format!("{{{}}}", v.join(", "))
    };
    let confirming = payload.view.confirming_parties();
    if declared.confirming_parties != confirming {
        return Err(Rejection::alarm(
            Alarm::ConfirmationPolicy,
            format!(
                "the informee tree declares confirming parties {} for this view, but its actions \
                 require {}",
                names(&declared.confirming_parties),
                names(&confirming)
            ),
        ));
    }
    let informees = payload.view.informees();
    if declared.informees != informees {
        return Err(Rejection::alarm(
            Alarm::ConfirmationPolicy,
            format!(
                "the informee tree declares informees {} for this view, but its actions have {}",
                names(&declared.informees),
                names(&informees)
            ),
        ));
    }
    Ok(())
}

/// The submitting participant may act only for parties it hosts.
fn check_submitters(
    topology: &TopologyState,
    submitter: &MemberId,
    payload: &ViewPayload,
) -> Result<(), Rejection> {
    for party in &payload.view.submitters {
        if topology.host_of(party) != Some(submitter) {
            return Err(Rejection::alarm(
                Alarm::UnauthorizedSubmitter,
                format!(
                    "participant {submitter} submitted for party {party}, which it does not host"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ordo_core::{Envelope, KeyPair, Recipients, Timestamp};
    use ordo_ledger::{Command, ContractId, ContractInstance, PackageStore, TemplateId};
    use ordo_protocol::topology::encode_key;
    use ordo_protocol::{MemberRole, VerdictOutcome};

    use super::*;
    use crate::views::{RequestPlan, plan_request};

    const IOU: &str = include_str!("../../../examples/packages/iou.toml");

    struct World {
        topology: TopologyState,
        packages: PackageStore,
        /// p1 hosts bank and alice on shard-1, p2 hosts bob on shard-2; then the mediator.
        members: Vec<(MemberId, KeyPair)>,
        manager: MemberId,
    }

    fn party(p: &str) -> PartyId {
        PartyId::new(p).unwrap()
    }

    fn world() -> World {
        let mut t = TopologyState::default();
        let mut apply = |change| {
            let tx = TopologyTransaction {
                serial: t.serial + 1,
                change,
            };
            t.apply(&tx, Timestamp(t.serial as i64 + 1)).unwrap();
        };
        let mut members = Vec::new();
        for (name, role) in [
            (
                "p1",
                MemberRole::Participant {
                    shard: "shard-1".into(),
                },
            ),
            (
                "p2",
                MemberRole::Participant {
                    shard: "shard-2".into(),
                },
            ),
            ("mediator", MemberRole::Mediator),
        ] {
            let key = KeyPair::generate();
            let id = MemberId::new(name, &key.public()).unwrap();
            apply(TopologyChange::AddMember {
                member: id.clone(),
                public_key: encode_key(&key.public()),
                role,
            });
            members.push((id, key));
        }
        for (p, shard) in [
            ("bank", "shard-1"),
            ("alice", "shard-1"),
            ("bob", "shard-2"),
        ] {
            apply(TopologyChange::AllocateParty {
                party: party(p),
                shard: shard.into(),
            });
        }
        let mut packages = PackageStore::new();
        packages.upload(IOU.as_bytes()).unwrap();
        let manager = MemberId::new("tm", &KeyPair::generate().public()).unwrap();
        World {
            topology: t,
            packages,
            members,
            manager,
        }
    }

    /// bank (on p1) issues bob (on p2) an Iou: bank confirms, bob is told.
    fn plan(w: &World) -> RequestPlan {
        let template: TemplateId = "iou:Iou".parse().unwrap();
        let payload = w
            .packages
            .payload_from_json(
                &template,
                &serde_json::json!({"issuer": "bank", "owner": "bob", "currency": "EUR", "amount": "5"}),
            )
            .unwrap();
        let tx = ordo_ledger::interpret(
            &w.packages,
            &Command::Create { template, payload },
            &BTreeSet::from([party("bank")]),
            &BTreeMap::<ContractId, ContractInstance>::new(),
            Hash::of(b"seed"),
            &ordo_ledger::Limits::default(),
        )
        .unwrap();
        plan_request(&tx, &w.topology, &w.members[0].0, "", "cmd").unwrap()
    }

    /// An event from member `from` carrying `messages`, each signed by `signer`.
    fn event(w: &World, from: usize, signer: usize, messages: &[Message]) -> SequencedEvent {
        let (id, key) = &w.members[signer];
        SequencedEvent {
            timestamp: Timestamp(1_000),
            previous_timestamp: Timestamp::MIN,
            sender: w.members[from].0.clone(),
            message_id: "m".into(),
            envelopes: messages
                .iter()
                .map(|m| Envelope {
                    recipients: Recipients::members([w.members[1].0.clone()]),
                    content: SignedMessage::encode(id, key, m),
                })
                .collect(),
        }
    }

    /// What p2 makes of `event`.
    fn prepared(w: &World, event: &SequencedEvent) -> PreparedEvent {
        let ctx = Context {
            me: &w.members[1].0,
            topology_manager: &w.manager,
            topology: &w.topology,
            packages: &w.packages,
        };
        prepare(&ctx, event)
    }

    fn view_of(prepared: &PreparedEvent) -> &CheckedView {
        match prepared.messages.as_slice() {
            [Prepared::View(v)] => v,
            other => panic!("expected one view, got {other:?}"),
        }
    }

    fn kinds(prepared: &PreparedEvent) -> Vec<&'static str> {
        prepared.alarms.iter().map(|a| a.alarm.kind()).collect()
    }

    /// `plan`'s view messages sealed anew by `submitter` over its commitments as `edit`
    /// leaves them.
    fn reseal(
        plan: &RequestPlan,
        submitter: &MemberId,
        edit: impl Fn(&mut ordo_protocol::ViewCommitment),
    ) -> BTreeMap<MemberId, ViewMessage> {
        let jsons: BTreeMap<MemberId, Box<RawValue>> = plan
            .messages
            .iter()
            .map(|(m, msg)| (m.clone(), msg.view.clone()))
            .collect();
        let commitments = plan
            .messages
            .values()
            .map(|msg| {
                let mut c = msg.commitment.clone();
                edit(&mut c);
                c
            })
            .collect();
        views::seal(submitter, &jsons, commitments).unwrap().1
    }

    fn bob_message(plan: &RequestPlan, w: &World) -> Message {
        Message::View(plan.messages[&w.members[1].0].clone())
    }

    #[test]
    fn an_honest_view_passes_every_check() {
        let w = world();
        let plan = plan(&w);
        let p = prepared(&w, &event(&w, 0, 0, &[bob_message(&plan, &w)]));
        assert!(p.alarms.is_empty(), "{:?}", p.alarms);
        let v = view_of(&p);
        assert_eq!(v.outcome, Ok(()));
        assert_eq!(v.root_hash, plan.root_hash);
        // bob is only told: the request declares only bank (on p1) confirming.
        assert_eq!(v.declared_confirming, BTreeSet::from([party("bank")]));
    }

    #[test]
    fn a_narrowed_commitment_is_a_confirmation_policy_rejection() {
        let w = world();
        let mut plan = plan(&w);
        // The request declares nobody confirming in bob's view (bank must).
        let m = plan.messages.get_mut(&w.members[1].0).unwrap();
        m.commitment.confirming_parties.clear();
        let p = prepared(&w, &event(&w, 0, 0, &[bob_message(&plan, &w)]));
        let v = view_of(&p);
        let rejection = v.outcome.clone().unwrap_err();
        assert_eq!(
            rejection.alarm,
            // Changing the commitment without re-sealing breaks the binding first.
            Some(Alarm::RootHashMismatch)
        );
        // Re-sealed consistently, only the policy check can tell.
        let mut plan = self::plan(&w);
        plan.messages = reseal(&plan, &w.members[0].0, |c| c.confirming_parties.clear());
        let p = prepared(&w, &event(&w, 0, 0, &[bob_message(&plan, &w)]));
        let v = view_of(&p);
        let rejection = v.outcome.clone().unwrap_err();
        assert_eq!(rejection.alarm, Some(Alarm::ConfirmationPolicy));
        assert!(rejection.reason.contains("bank"), "{}", rejection.reason);
        assert_eq!(kinds(&p), vec!["confirmation_policy"]);
    }

    #[test]
    fn a_second_view_in_one_event_is_dropped_with_an_alarm() {
        let w = world();
        let plan = plan(&w);
        let m = bob_message(&plan, &w);
        let p = prepared(&w, &event(&w, 0, 0, &[m.clone(), m]));
        assert_eq!(view_of(&p).outcome, Ok(()));
        assert_eq!(kinds(&p), vec!["duplicate_view"]);
    }

    #[test]
    fn foreign_signatures_verdicts_and_oversized_messages_are_alarms() {
        let mut w = world();
        let plan = plan(&w);
        // p1 sends a message p2 signed.
        let p = prepared(&w, &event(&w, 0, 1, &[bob_message(&plan, &w)]));
        assert!(p.messages.is_empty());
        assert_eq!(kinds(&p), vec!["signer_not_sender"]);
        // A verdict from a participant.
        let verdict = Message::Verdict(Verdict {
            request: Timestamp(5),
            root_hash: plan.root_hash.clone(),
            outcome: VerdictOutcome::Approve,
        });
        let p = prepared(&w, &event(&w, 0, 0, std::slice::from_ref(&verdict)));
        assert!(p.messages.is_empty());
        assert_eq!(kinds(&p), vec!["verdict_not_from_mediator"]);
        // ... and from the mediator, accepted.
        let p = prepared(&w, &event(&w, 2, 2, &[verdict]));
        assert!(matches!(p.messages.as_slice(), [Prepared::Verdict(_)]));
        // Larger than the domain allows: refused undecoded.
        w.topology.parameters.max_request_bytes = 100;
        let p = prepared(&w, &event(&w, 0, 0, &[bob_message(&plan, &w)]));
        assert!(p.messages.is_empty());
        assert_eq!(kinds(&p), vec!["oversized_message"]);
        // Garbage.
        let mut garbage = event(&w, 0, 0, &[]);
        garbage.envelopes.push(Envelope {
            recipients: Recipients::members([w.members[1].0.clone()]),
            content: b"ordo1 not a message".to_vec(),
        });
        assert_eq!(kinds(&prepared(&w, &garbage)), vec!["malformed_message"]);
    }

    #[test]
    fn a_view_submitted_for_a_party_its_sender_does_not_host_is_refused() {
        let w = world();
        let plan = plan(&w);
        // p2 forwards p1's request (bank's create) as its own: re-sealed by p2.
        let messages = reseal(&plan, &w.members[1].0, |_| {});
        let m = Message::View(messages[&w.members[1].0].clone());
        let p = prepared(&w, &event(&w, 1, 1, &[m]));
        let rejection = view_of(&p).outcome.clone().unwrap_err();
        assert_eq!(rejection.alarm, Some(Alarm::UnauthorizedSubmitter));
        assert!(rejection.reason.contains("bank"), "{}", rejection.reason);
    }
}
