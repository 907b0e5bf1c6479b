//! Command submission (DESIGN §4 steps 1–3): check the caller's rights and the command,
//! deduplicate, interpret against the ACS the submitting parties see, split the
//! transaction into views and the informee tree, and record the in-flight command with
//! its confirmation request in the outbox, in one database transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ordo_core::{Envelope, Hash, PartyId, Recipients, Submission, Timestamp};
use ordo_ledger::{Command, ContractId, ContractInstance, ContractLookup, TemplateId};
use ordo_proto::ledger::v1 as pb;
use ordo_protocol::{Message, SignedMessage};
use prost::Message as _;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::api::parse_parties;
use crate::auth::Rights;
use crate::error::ParticipantError;
use crate::events::StoredContract;
use crate::node::{Completed, Shared};
use crate::store::{self, CommandKey, DedupPeriod, NewCommand};
use crate::views;

/// A command accepted for processing.
#[derive(Debug)]
pub struct Accepted {
    pub key: CommandKey,
    pub act_as: BTreeSet<PartyId>,
    /// The command's completion, for a call that waits for it: registered before the
    /// command was written, so no completion can come before it.
    completion: Option<oneshot::Receiver<Completed>>,
}

/// Whether the submitting call waits for the command's completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    ForCompletion,
    No,
}

fn invalid(m: String) -> ParticipantError {
    ParticipantError::InvalidArgument(m)
}

fn json(field: &str, text: &str) -> Result<serde_json::Value, ParticipantError> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_json::from_str(text).map_err(|e| invalid(format!("invalid {field}: not JSON: {e}")))
}

fn template(field: &str, text: &str) -> Result<TemplateId, ParticipantError> {
    text.parse()
        .map_err(|e| invalid(format!("invalid {field}: {e}")))
}

/// The ledger command of the API's `Command`.
fn command(
    packages: &ordo_ledger::PackageStore,
    c: Option<&pb::Command>,
) -> Result<Command, ParticipantError> {
    use pb::command::Command as C;
    let ledger = |e: ordo_ledger::LedgerError| ParticipantError::from_ledger(&e);
    match c.and_then(|c| c.command.as_ref()) {
        None => Err(invalid("missing commands.command".into())),
        Some(C::Create(c)) => {
            let template = template("commands.command.create.template_id", &c.template_id)?;
            let payload = packages
                .payload_from_json(
                    &template,
                    &json("create_arguments_json", &c.create_arguments_json)?,
                )
                .map_err(ledger)?;
            Ok(Command::Create { template, payload })
        }
        Some(C::Exercise(e)) => {
            let template = template("commands.command.exercise.template_id", &e.template_id)?;
            let contract_id: ContractId = e.contract_id.parse().map_err(|_| {
                invalid(format!(
                    "invalid contract_id {:?}: expected 64 hex digits",
                    e.contract_id
                ))
            })?;
            let argument = packages
                .argument_from_json(
                    &template,
                    &e.choice,
                    &json("choice_argument_json", &e.choice_argument_json)?,
                )
                .map_err(ledger)?;
            Ok(Command::Exercise {
                template,
                contract_id,
                choice: e.choice.clone(),
                argument,
            })
        }
        Some(C::ExerciseByKey(e)) => {
            let template = template(
                "commands.command.exercise_by_key.template_id",
                &e.template_id,
            )?;
            let key = packages
                .key_from_json(&template, &json("contract_key_json", &e.contract_key_json)?)
                .map_err(ledger)?;
            let argument = packages
                .argument_from_json(
                    &template,
                    &e.choice,
                    &json("choice_argument_json", &e.choice_argument_json)?,
                )
                .map_err(ledger)?;
            Ok(Command::ExerciseByKey {
                template,
                key,
                choice: e.choice.clone(),
                argument,
            })
        }
        Some(C::CreateAndExercise(c)) => {
            let template = template(
                "commands.command.create_and_exercise.template_id",
                &c.template_id,
            )?;
            let payload = packages
                .payload_from_json(
                    &template,
                    &json("create_arguments_json", &c.create_arguments_json)?,
                )
                .map_err(ledger)?;
            let argument = packages
                .argument_from_json(
                    &template,
                    &c.choice,
                    &json("choice_argument_json", &c.choice_argument_json)?,
                )
                .map_err(ledger)?;
            Ok(Command::CreateAndExercise {
                template,
                payload,
                choice: c.choice.clone(),
                argument,
            })
        }
    }
}

/// The parties of a disclosed contract's `field`.
fn disclosed_parties(
    cid: &str,
    field: &str,
    names: &[String],
) -> Result<BTreeSet<PartyId>, ParticipantError> {
    names
        .iter()
        .map(|n| {
            PartyId::new(n).map_err(|e| {
                invalid(format!(
                    "invalid disclosed contract {cid}: {field} {n:?}: {e}"
                ))
            })
        })
        .collect()
}

/// Reads and checks the command's disclosed contracts: each must parse and type-check
/// against its template, and its signatories and observers must be those the template
/// computes from its payload (whose `ensure` must hold). The instance used for
/// interpretation is the recomputed one, so it is canonical. Errors name the contract.
/// CPU-bound (runs the template's scripts): call it on a blocking thread.
pub fn disclosed_contracts(
    packages: &ordo_ledger::PackageStore,
    disclosed: &[pb::DisclosedContract],
    limits: &ordo_ledger::Limits,
) -> Result<BTreeMap<ContractId, ContractInstance>, ParticipantError> {
    let mut out = BTreeMap::new();
    for d in disclosed {
        let cid: ContractId = d.contract_id.parse().map_err(|_| {
            invalid(format!(
                "invalid disclosed contract {:?}: contract_id: expected 64 hex digits",
                d.contract_id
            ))
        })?;
        let wrong = |m: String| invalid(format!("invalid disclosed contract {cid}: {m}"));
        let template: TemplateId = d
            .template_id
            .parse()
            .map_err(|e| wrong(format!("template_id: {e}")))?;
        let ledger = |e: ordo_ledger::LedgerError| wrong(e.to_string());
        let arguments: serde_json::Value = serde_json::from_str(&d.create_arguments_json)
            .map_err(|e| wrong(format!("create_arguments_json: not JSON: {e}")))?;
        let payload = packages
            .payload_from_json(&template, &arguments)
            .map_err(ledger)?;
        let signatories = disclosed_parties(&d.contract_id, "signatories", &d.signatories)?;
        let observers = disclosed_parties(&d.contract_id, "observers", &d.observers)?;
        if signatories.is_empty() {
            return Err(wrong("no signatories".into()));
        }
        // Re-creating the contract on its claimed signatories' authority computes its
        // parties (and key) from the payload exactly as its creation did; a claim of too
        // few signatories fails authorization here.
        let recreated = ordo_ledger::interpret(
            packages,
            &Command::Create {
                template: template.clone(),
                payload,
            },
            &signatories,
            &BTreeMap::<ContractId, ContractInstance>::new(),
            Hash::of_parts([b"disclosed".as_slice(), d.contract_id.as_bytes()]),
            limits,
        );
        let instance = match recreated {
            Ok(tx) => tx.created().into_values().next(),
            Err(e) if e.kind() == ordo_ledger::ErrorKind::PermissionDenied => None,
            Err(e) => return Err(ledger(e)),
        };
        let instance = instance
            .filter(|c| c.signatories == signatories && c.observers == observers)
            .ok_or_else(|| {
                wrong(format!(
                    "its signatories and observers are not those template {template} computes from its payload"
                ))
            })?;
        if out.insert(cid, instance).is_some() {
            return Err(wrong("disclosed twice".into()));
        }
    }
    Ok(out)
}

/// Looks contracts up in this shard's ACS, restricted to those the reading parties are
/// stakeholders of, and then among the command's disclosed contracts. Runs on a blocking
/// thread (interpretation), so it blocks on the query.
struct AcsLookup {
    pool: PgPool,
    handle: tokio::runtime::Handle,
    parties: Vec<String>,
    disclosed: BTreeMap<ContractId, ContractInstance>,
}

impl ContractLookup for AcsLookup {
    fn lookup(&self, cid: &ContractId) -> Option<ContractInstance> {
        self.stored(cid)
            .or_else(|| self.disclosed.get(cid).cloned())
    }

    fn lookup_key(
        &self,
        template: &TemplateId,
        key: &ordo_ledger::Value,
    ) -> Option<(ContractId, ContractInstance)> {
        let hash = ordo_ledger::transaction::key_hash(template, key).to_hex();
        let found = self.handle.block_on(store::visible_contract_by_key(
            &self.pool,
            &hash,
            &self.parties,
        ));
        match found {
            Ok(Some((id, bytes))) => {
                let cid = id.parse().ok()?;
                StoredContract::instance_of(&bytes).map(|c| (cid, c))
            }
            Ok(None) => self.disclosed.lookup_key(template, key),
            Err(e) => {
                tracing::warn!(key = %hash, error = %e, "contract key lookup failed");
                None
            }
        }
    }
}

impl AcsLookup {
    /// The copy in this shard's ACS, if the reading parties see it.
    fn stored(&self, cid: &ContractId) -> Option<ContractInstance> {
        let id = cid.to_string();
        let found = self
            .handle
            .block_on(store::visible_contract(&self.pool, &id, &self.parties));
        let bytes = match found {
            Ok(b) => b?,
            Err(e) => {
                tracing::warn!(contract = %id, error = %e, "contract lookup failed");
                return None;
            }
        };
        StoredContract::instance_of(&bytes)
    }
}

/// How many contracts created by pending requests one command waits for, and how long at
/// most for each (the request's deadline usually ends the wait first).
const MAX_PENDING_WAITS: usize = 8;
const PENDING_WAIT_CAP: std::time::Duration = std::time::Duration::from_secs(30);

fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// The deduplication period of `commands`: the duration it asks for (µs), at most the
/// domain's `max_us`, the domain's when it asks for nothing; or the completion offset it
/// gives, at most `completion_end` (the domain's period still bounds how far back a
/// success counts).
fn dedup_period(
    commands: &pb::Commands,
    max_us: i64,
    completion_end: i64,
) -> Result<DedupPeriod, ParticipantError> {
    let max_ms = max_us / 1000;
    match (
        commands.deduplication_duration_ms,
        commands.deduplication_offset,
    ) {
        (0, 0) => Ok(DedupPeriod {
            duration_us: max_us,
            offset: 0,
        }),
        (ms, 0) if ms < 0 || ms > max_ms => Err(invalid(format!(
            "invalid deduplication_duration_ms {ms}: give 1 to the domain's deduplication \
             period of {max_ms} ms, or 0 for that period"
        ))),
        (ms, 0) => Ok(DedupPeriod {
            duration_us: ms * 1000,
            offset: 0,
        }),
        (0, o) if o < 0 || o > completion_end => Err(invalid(format!(
            "invalid deduplication_offset {o}: give a completion offset of this shard, 1 to \
             its completion end {completion_end}"
        ))),
        (0, o) => Ok(DedupPeriod {
            duration_us: 0,
            offset: o,
        }),
        _ => Err(invalid(
            "give deduplication_duration_ms or deduplication_offset, not both".into(),
        )),
    }
}

/// Accepts a command: on return it is in flight (its outcome arrives as a completion).
pub async fn submit(
    shared: &Arc<Shared>,
    rights: &Rights,
    commands: Option<pb::Commands>,
    wait: Wait,
) -> Result<Accepted, ParticipantError> {
    let started = std::time::Instant::now();
    let mut commands = commands.ok_or_else(|| invalid("missing commands".into()))?;
    let snapshot = shared.snapshot();
    let params = &snapshot.topology.parameters;
    let size = commands.encoded_len();
    let limit = shared
        .config
        .limits
        .max_command_bytes
        .min(params.max_command_bytes);
    if size > limit {
        return Err(ParticipantError::ResourceExhausted(format!(
            "command {} is {size} bytes, more than the limit of {limit}",
            commands.command_id
        )));
    }
    if commands.application_id.is_empty() || commands.application_id.len() > 255 {
        return Err(invalid(
            "invalid application_id: give 1 to 255 characters".into(),
        ));
    }
    if commands.command_id.is_empty() || commands.command_id.len() > 255 {
        return Err(invalid(
            "invalid command_id: give 1 to 255 characters".into(),
        ));
    }
    rights.require_application(&commands.application_id)?;
    let act_as = parse_parties("act_as", &commands.act_as)?;
    if act_as.is_empty() {
        return Err(invalid("invalid act_as: name at least one party".into()));
    }
    let read_as = parse_parties("read_as", &commands.read_as)?;
    rights.require_act_as(&act_as)?;
    rights.require_read_as(&read_as)?;
    for party in &act_as {
        match snapshot.topology.shard_of(party) {
            None => {
                return Err(ParticipantError::Coded(
                    ordo_proto::errors::PARTY_NOT_KNOWN_ON_LEDGER,
                    format!("party {party} is not known"),
                ));
            }
            Some(shard) if shard != shared.config.shard => {
                return Err(ParticipantError::FailedPrecondition(format!(
                    "party {party} is hosted on shard {shard}, not on this shard ({}); submit there",
                    shared.config.shard
                )));
            }
            Some(_) => {}
        }
    }
    let key = CommandKey {
        application_id: commands.application_id.clone(),
        command_id: commands.command_id.clone(),
        act_as: act_as.iter().map(ToString::to_string).collect(),
    };
    let duplicate = || {
        ParticipantError::Duplicate(format!(
            "command {} of application {} was already submitted (in flight or succeeded within the deduplication period)",
            commands.command_id, commands.application_id
        ))
    };
    // Deduplication is decided by the command's insert (`writer`), after interpretation,
    // which saves every command a read. A duplicate that fails before it gets there (a
    // retried transfer finds its input archived by the first attempt) is looked up then,
    // so that it still answers ALREADY_EXISTS.
    let dedup = dedup_period(
        &commands,
        params.deduplication_period_us,
        *shared.completion_end.borrow(),
    )?;
    let within = if dedup.offset > 0 {
        params.deduplication_period_us
    } else {
        dedup.duration_us
    };
    let dedup_cutoff = now().micros().saturating_sub(within);
    let unless_duplicate = async |e: ParticipantError| match store::is_duplicate(
        &shared.pool,
        &key,
        dedup_cutoff,
        dedup.offset,
    )
    .await
    {
        Ok(true) => duplicate(),
        Ok(false) => e,
        Err(read) => {
            tracing::warn!(error = %read, "reading a failed command's deduplication state failed");
            e
        }
    };

    let cmds = match (commands.command.as_ref(), commands.commands.as_slice()) {
        (Some(_), [_, ..]) => {
            return Err(invalid(
                "give either commands.command or commands.commands, not both".into(),
            ));
        }
        (None, []) => return Err(invalid("missing commands.command".into())),
        (Some(one), []) => vec![command(&snapshot.packages, Some(one))?],
        (None, many) => many
            .iter()
            .map(|c| command(&snapshot.packages, Some(c)))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut nonce = [0u8; 16];
    rand::fill(&mut nonce[..]);
    let seed = Hash::of_parts([
        shared.member.as_str().as_bytes(),
        commands.application_id.as_bytes(),
        commands.command_id.as_bytes(),
        &nonce[..],
    ]);
    let readers: BTreeSet<String> = act_as
        .iter()
        .chain(&read_as)
        .map(ToString::to_string)
        .collect();
    let limits = crate::processor::submission_limits(shared, &snapshot.topology);
    let disclosed = std::mem::take(&mut commands.disclosed_contracts);
    let readers: Vec<String> = readers.into_iter().collect();
    // A contract created by a request still pending here (its verdict not applied yet,
    // e.g. right after the submitter's shard completed the command that created it) is
    // waited for, at most until the request's deadline, and then looked up again.
    let mut waited = BTreeSet::new();
    let transaction = loop {
        let lookup = AcsLookup {
            pool: shared.pool.clone(),
            handle: tokio::runtime::Handle::current(),
            parties: readers.clone(),
            disclosed: BTreeMap::new(),
        };
        let interpreted = {
            let packages = snapshot.packages.clone();
            let act_as = act_as.clone();
            let cmds = cmds.clone();
            let disclosed = disclosed.clone();
            let limits = limits.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let mut lookup = lookup;
                lookup.disclosed = disclosed_contracts(&packages, &disclosed, &limits)?;
                let interpreted =
                    ordo_ledger::interpret_all(&packages, &cmds, &act_as, &lookup, seed, &limits);
                crate::metrics::interpretation(started.elapsed());
                Ok::<_, ParticipantError>(interpreted)
            })
            .await
            .map_err(|e| ParticipantError::Internal(format!("interpretation panicked: {e}")))??
        };
        match interpreted {
            Ok(t) => break t,
            Err(ordo_ledger::LedgerError::ContractNotFound(cid))
                if waited.len() < MAX_PENDING_WAITS
                    && waited.insert(cid.to_string())
                    && shared
                        .await_created(&cid.to_string(), PENDING_WAIT_CAP)
                        .await => {}
            Err(e) => return Err(unless_duplicate(ParticipantError::from_ledger(&e)).await),
        }
    };

    let plan = match views::plan_request(
        &transaction,
        &snapshot.topology,
        &shared.member,
        &commands.workflow_id,
        &commands.command_id,
    ) {
        Ok(plan) => plan,
        // An informee party no shard hosts.
        Err(e) => {
            return Err(unless_duplicate(ParticipantError::Coded(
                ordo_proto::errors::PARTY_NOT_KNOWN_ON_LEDGER,
                e,
            ))
            .await);
        }
    };
    let mediator = snapshot.topology.mediator().cloned().ok_or_else(|| {
        ParticipantError::FailedPrecondition("the domain has no mediator in topology yet".into())
    })?;
    let message_id = format!(
        "cmd-{}",
        Hash::of_parts([
            commands.application_id.as_bytes(),
            commands.command_id.as_bytes(),
            key.act_as.join(",").as_bytes(),
            &nonce[..],
        ])
        .to_hex()
    );
    let mst = now().plus(shared.config.submission_timeout);
    let mut envelopes = Vec::with_capacity(plan.messages.len() + 1);
    for (member, message) in plan.messages {
        envelopes.push(Envelope {
            recipients: Recipients::members([member]),
            content: SignedMessage::encode(&shared.member, &shared.key, &Message::View(message)),
        });
    }
    envelopes.push(Envelope {
        recipients: Recipients::members([mediator]),
        content: SignedMessage::encode(
            &shared.member,
            &shared.key,
            &Message::InformeeTree(plan.informee_tree.clone()),
        ),
    });
    let request_bytes: usize = envelopes.iter().map(|e| e.content.len()).sum();
    if request_bytes > params.max_request_bytes {
        return Err(ParticipantError::ResourceExhausted(format!(
            "the confirmation request of command {} is {request_bytes} bytes, more than the domain's max_request_bytes {}",
            commands.command_id, params.max_request_bytes
        )));
    }
    let submission = Submission {
        message_id: message_id.clone(),
        max_sequencing_time: mst,
        envelopes,
    };

    let completion = (wait == Wait::ForCompletion).then(|| shared.completion_waiter(&key));
    let inserted = shared
        .writer
        .write(store::NewSubmission {
            command: NewCommand {
                key: key.clone(),
                submission_id: commands.submission_id.clone(),
                nonce: nonce.to_vec(),
                message_id: message_id.clone(),
                root_hash: plan.root_hash.clone(),
                max_sequencing_time: mst,
                submitted_at: now(),
                dedup,
            },
            dedup_cutoff,
            request: submission.clone(),
        })
        .await?;
    if !inserted {
        return Err(duplicate());
    }
    shared.hand_over(vec![store::OutboxRow {
        submission,
        is_command: true,
    }]);
    tracing::debug!(command = %commands.command_id, %message_id, "command in flight");
    crate::metrics::submission(started.elapsed());
    Ok(Accepted {
        key,
        act_as,
        completion,
    })
}

/// Waits for the command's completion, at most `timeout`, and only while this replica
/// serves in `term`: when the term ends the command goes on on the active replica, and
/// the answer is UNAVAILABLE at once.
pub async fn wait_completion(
    shared: &Shared,
    accepted: &mut Accepted,
    timeout: Duration,
    term: &CancellationToken,
) -> Result<Completed, ParticipantError> {
    let key = &accepted.key;
    // The commit that completes the command hands the completion over. The call registered
    // for it before the command was written, so no completion can come before it.
    let delivered = accepted.completion.take().ok_or_else(|| {
        ParticipantError::Internal(format!(
            "command {} was submitted without waiting for its completion",
            key.command_id
        ))
    })?;
    let wait = async {
        delivered
            .await
            .map_err(|_| ParticipantError::Unavailable("the participant is shutting down".into()))
    };
    let waited = tokio::select! {
        waited = tokio::time::timeout(timeout, wait) => waited,
        () = term.cancelled() => {
            return Err(shared.term_ended(&format!(
                "command {} is in flight and not lost: retry with the same command id on the \
                 active replica (a duplicate answers ALREADY_EXISTS while it is in flight) or \
                 find its completion on the completion stream",
                key.command_id
            )));
        }
    };
    waited.map_err(|_| {
        ParticipantError::DeadlineExceeded(format!(
            "command {} has no outcome after {timeout:?}; it may still complete (see the completion stream)",
            key.command_id
        ))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submission_may_shorten_the_deduplication_period_but_not_lengthen_it() {
        let day_us = 24 * 3600 * 1_000_000;
        let with = |ms| pb::Commands {
            deduplication_duration_ms: ms,
            ..Default::default()
        };
        let duration = |us| DedupPeriod {
            duration_us: us,
            offset: 0,
        };
        let period = |c: &pb::Commands| dedup_period(c, day_us, 40);
        assert_eq!(period(&with(0)).unwrap(), duration(day_us));
        assert_eq!(period(&with(1500)).unwrap(), duration(1_500_000));
        assert_eq!(period(&with(86_400_000)).unwrap(), duration(day_us));
        for bad in [86_400_001, -1] {
            let e = period(&with(bad)).unwrap_err();
            assert!(
                matches!(&e, ParticipantError::InvalidArgument(m) if m.contains("86400000 ms")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_submission_may_deduplicate_from_a_completion_offset_up_to_the_end() {
        let from = |offset| pb::Commands {
            deduplication_offset: offset,
            ..Default::default()
        };
        let period = |c: &pb::Commands| dedup_period(c, 1_000_000, 40);
        assert_eq!(
            period(&from(40)).unwrap(),
            DedupPeriod {
                duration_us: 0,
                offset: 40
            }
        );
        for bad in [41, -1] {
            let e = period(&from(bad)).unwrap_err();
            assert!(
                matches!(&e, ParticipantError::InvalidArgument(m) if m.contains("completion end 40")),
                "{e}"
            );
        }
        let both = pb::Commands {
            deduplication_duration_ms: 5,
            deduplication_offset: 3,
            ..Default::default()
        };
        assert!(matches!(
            period(&both),
            Err(ParticipantError::InvalidArgument(m)) if m.contains("not both")
        ));
    }
}
