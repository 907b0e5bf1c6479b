//! The client's view of Ledger API values: ledger values as `serde_json::Value` instead of
//! JSON text, and protobuf ⇄ client conversions in one place.

use std::collections::BTreeMap;

use ordo_proto::ledger::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::LedgerError;

/// A party and the shard hosting it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyDetails {
    pub party: String,
    pub shard: String,
    /// Whether the answering participant's shard hosts it.
    #[serde(default)]
    pub is_local: bool,
}

/// A participant's member id and shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub participant_id: String,
    pub shard: String,
}

/// The outcome of a package upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedPackage {
    pub package_id: String,
    pub name: String,
}

/// A vetted package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageDetails {
    pub package_id: String,
    pub name: String,
    pub template_ids: Vec<String>,
}

/// Which parties' projection to read, optionally restricted to some templates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub parties: Vec<String>,
    /// Template ids (`iou:Iou`); empty: every template.
    pub templates: Vec<String>,
}

impl Filter {
    pub fn party(party: impl Into<String>) -> Self {
        Self {
            parties: vec![party.into()],
            templates: Vec::new(),
        }
    }

    pub fn template(mut self, template_id: impl Into<String>) -> Self {
        self.templates.push(template_id.into());
        self
    }

    pub(crate) fn to_pb(&self) -> pb::TransactionFilter {
        pb::TransactionFilter {
            parties: self.parties.clone(),
            template_ids: self.templates.clone(),
        }
    }
}

/// A command to submit.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Create {
        template_id: String,
        payload: Value,
    },
    Exercise {
        template_id: String,
        contract_id: String,
        choice: String,
        argument: Value,
    },
    CreateAndExercise {
        template_id: String,
        payload: Value,
        choice: String,
        argument: Value,
    },
    /// Exercises a choice on the active contract of a template with `key`.
    ExerciseByKey {
        template_id: String,
        key: Value,
        choice: String,
        argument: Value,
    },
}

impl Command {
    pub(crate) fn to_pb(&self) -> pb::Command {
        use pb::command::Command as C;
        let command = match self {
            Command::Create {
                template_id,
                payload,
            } => C::Create(pb::CreateCommand {
                template_id: template_id.clone(),
                create_arguments_json: payload.to_string(),
            }),
            Command::Exercise {
                template_id,
                contract_id,
                choice,
                argument,
            } => C::Exercise(pb::ExerciseCommand {
                template_id: template_id.clone(),
                contract_id: contract_id.clone(),
                choice: choice.clone(),
                choice_argument_json: argument.to_string(),
            }),
            Command::CreateAndExercise {
                template_id,
                payload,
                choice,
                argument,
            } => C::CreateAndExercise(pb::CreateAndExerciseCommand {
                template_id: template_id.clone(),
                create_arguments_json: payload.to_string(),
                choice: choice.clone(),
                choice_argument_json: argument.to_string(),
            }),
            Command::ExerciseByKey {
                template_id,
                key,
                choice,
                argument,
            } => C::ExerciseByKey(pb::ExerciseByKeyCommand {
                template_id: template_id.clone(),
                contract_key_json: key.to_string(),
                choice: choice.clone(),
                choice_argument_json: argument.to_string(),
            }),
        };
        pb::Command {
            command: Some(command),
        }
    }
}

/// A command with who submits it.
#[derive(Clone, Debug, PartialEq)]
pub struct Submission {
    pub act_as: Vec<String>,
    pub read_as: Vec<String>,
    /// The deduplication key's command id; `None`: a fresh random one.
    pub command_id: Option<String>,
    /// Echoed in the completion, to tell this submission from a retry of the command.
    pub submission_id: String,
    /// How long a success of the same command id keeps a resubmission a duplicate (at
    /// most the domain's period); `None`: the domain's deduplication period.
    pub deduplication_duration: Option<std::time::Duration>,
    /// Instead of a duration: a completion offset of the shard; a success of the same
    /// command id completed after it keeps a resubmission a duplicate.
    pub deduplication_offset: Option<i64>,
    pub workflow_id: String,
    pub command: Command,
    /// Contracts the command may use although the submitting parties do not see them
    /// (explicit disclosure), e.g. the offered Iou of a swap proposal.
    pub disclosed_contracts: Vec<DisclosedContract>,
}

/// A contract handed to a submission by explicit disclosure: exactly what its
/// `CreatedEvent` carries. `ordo acs --json` prints contracts in a form this reads
/// (unknown fields are ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisclosedContract {
    pub contract_id: String,
    pub template_id: String,
    pub payload: Value,
    #[serde(default)]
    pub signatories: Vec<String>,
    #[serde(default)]
    pub observers: Vec<String>,
}

impl From<&Contract> for DisclosedContract {
    fn from(c: &Contract) -> Self {
        Self {
            contract_id: c.contract_id.clone(),
            template_id: c.template_id.clone(),
            payload: c.payload.clone(),
            signatories: c.signatories.clone(),
            observers: c.observers.clone(),
        }
    }
}

impl DisclosedContract {
    pub(crate) fn to_pb(&self) -> pb::DisclosedContract {
        pb::DisclosedContract {
            contract_id: self.contract_id.clone(),
            template_id: self.template_id.clone(),
            create_arguments_json: self.payload.to_string(),
            signatories: self.signatories.clone(),
            observers: self.observers.clone(),
        }
    }
}

impl Submission {
    pub fn new(act_as: impl Into<String>, command: Command) -> Self {
        Self {
            act_as: vec![act_as.into()],
            read_as: Vec::new(),
            command_id: None,
            submission_id: String::new(),
            deduplication_duration: None,
            deduplication_offset: None,
            workflow_id: String::new(),
            command,
            disclosed_contracts: Vec::new(),
        }
    }
}

/// An active or newly created contract.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contract {
    pub contract_id: String,
    pub template_id: String,
    pub package_id: String,
    pub payload: Value,
    pub signatories: Vec<String>,
    pub observers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Value>,
    pub witnesses: Vec<String>,
    /// The offset of the creating transaction on the answering shard.
    pub offset: i64,
    /// When the creating transaction was sequenced (µs since the epoch).
    pub created_at: i64,
}

/// An archived contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archived {
    pub contract_id: String,
    pub template_id: String,
    pub witnesses: Vec<String>,
}

/// An exercised choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exercised {
    pub node_id: i32,
    pub contract_id: String,
    pub template_id: String,
    pub choice: String,
    pub argument: Value,
    pub acting_parties: Vec<String>,
    pub consuming: bool,
    pub result: Value,
    pub child_node_ids: Vec<i32>,
    pub witnesses: Vec<String>,
}

/// One event of a flat transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Created(Contract),
    Archived(Archived),
}

/// A transaction as a flat list of creates and archives (the update stream's form).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub update_id: String,
    pub command_id: String,
    pub workflow_id: String,
    pub offset: i64,
    pub effective_at: i64,
    pub events: Vec<Event>,
}

/// What a submitted command did, as the submitting parties see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransactionResult {
    pub update_id: String,
    pub command_id: String,
    pub offset: i64,
    pub effective_at: i64,
    pub created: Vec<Contract>,
    pub archived: Vec<Archived>,
    /// Every exercised choice, by node id.
    pub exercised: Vec<Exercised>,
    /// The result of the command's (top-level) choice; `None` for a plain create.
    pub exercise_result: Option<Value>,
}

impl TransactionResult {
    /// The ids of the contracts created of `template_id`, in order.
    pub fn created_of(&self, template_id: &str) -> Vec<&str> {
        self.created
            .iter()
            .filter(|c| c.template_id == template_id)
            .map(|c| c.contract_id.as_str())
            .collect()
    }
}

/// The ends of a shard's two logs: the update log and the completion log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEnds {
    /// The offset of the latest update (0 when none).
    pub offset: i64,
    /// The offset of the latest completion (0 when none): a completion stream read from
    /// here sees every command completed after this call.
    pub completion_offset: i64,
}

/// The outcome of one command, from the completion stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub command_id: String,
    pub application_id: String,
    pub submission_id: String,
    pub act_as: Vec<String>,
    /// The gRPC code of the outcome (`Ok` for a committed transaction).
    #[serde(with = "code_serde")]
    pub code: tonic::Code,
    /// Why the command was rejected; empty on success.
    pub message: String,
    /// The error code of a rejection (docs/errors.md), which clients decide on; empty on
    /// success and from a participant that records none.
    #[serde(default)]
    pub error_code: String,
    /// The transaction's id and update offset, on success.
    pub update_id: String,
    pub offset: i64,
    /// This completion's position in the shard's completion log.
    pub completion_offset: i64,
    /// The deduplication period the command was submitted with: a duration (ms), or the
    /// completion offset it gave (both 0 from a participant that records neither).
    #[serde(default)]
    pub deduplication_duration_ms: i64,
    #[serde(default)]
    pub deduplication_offset: i64,
}

impl Completion {
    pub fn succeeded(&self) -> bool {
        self.code == tonic::Code::Ok
    }
}

/// A gRPC code as its number in JSON.
mod code_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(code: &tonic::Code, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(*code as i32)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<tonic::Code, D::Error> {
        Ok(tonic::Code::from_i32(i32::deserialize(d)?))
    }
}

pub(crate) fn completion(c: pb::Completion) -> Completion {
    let status = c.status.unwrap_or_default();
    Completion {
        command_id: c.command_id,
        application_id: c.application_id,
        submission_id: c.submission_id,
        act_as: c.act_as,
        code: tonic::Code::from_i32(status.code),
        message: status.message,
        error_code: status.error_code,
        update_id: c.update_id,
        offset: c.offset,
        completion_offset: c.completion_offset,
        deduplication_duration_ms: c.deduplication_duration_ms,
        deduplication_offset: c.deduplication_offset,
    }
}

/// The active contracts of a filter and the offset they are consistent with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ActiveContracts {
    pub offset: i64,
    pub contracts: Vec<Contract>,
}

fn json_field(what: &str, id: &str, text: &str) -> Result<Value, LedgerError> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text)
        .map_err(|e| LedgerError::Protocol(format!("{what} of {id} is not JSON: {e}")))
}

pub(crate) fn contract(e: pb::CreatedEvent) -> Result<Contract, LedgerError> {
    let payload = json_field(
        "create_arguments_json",
        &e.contract_id,
        &e.create_arguments_json,
    )?;
    let key = if e.contract_key_json.is_empty() {
        None
    } else {
        Some(json_field(
            "contract_key_json",
            &e.contract_id,
            &e.contract_key_json,
        )?)
    };
    Ok(Contract {
        contract_id: e.contract_id,
        template_id: e.template_id,
        package_id: e.package_id,
        payload,
        signatories: e.signatories,
        observers: e.observers,
        key,
        witnesses: e.witness_parties,
        offset: e.offset,
        created_at: e.created_at,
    })
}

fn archived(e: pb::ArchivedEvent) -> Archived {
    Archived {
        contract_id: e.contract_id,
        template_id: e.template_id,
        witnesses: e.witness_parties,
    }
}

fn exercised(e: pb::ExercisedEvent) -> Result<Exercised, LedgerError> {
    Ok(Exercised {
        node_id: e.node_id,
        argument: json_field(
            "choice_argument_json",
            &e.contract_id,
            &e.choice_argument_json,
        )?,
        result: json_field(
            "exercise_result_json",
            &e.contract_id,
            &e.exercise_result_json,
        )?,
        contract_id: e.contract_id,
        template_id: e.template_id,
        choice: e.choice,
        acting_parties: e.acting_parties,
        consuming: e.consuming,
        child_node_ids: e.child_node_ids,
        witnesses: e.witness_parties,
    })
}

pub(crate) fn transaction(t: pb::Transaction) -> Result<Transaction, LedgerError> {
    let events = t
        .events
        .into_iter()
        .filter_map(|e| e.event)
        .map(|e| match e {
            pb::event::Event::Created(c) => contract(c).map(Event::Created),
            pb::event::Event::Archived(a) => Ok(Event::Archived(archived(a))),
        })
        .collect::<Result<_, _>>()?;
    Ok(Transaction {
        update_id: t.update_id,
        command_id: t.command_id,
        workflow_id: t.workflow_id,
        offset: t.offset,
        effective_at: t.effective_at,
        events,
    })
}

pub(crate) fn transaction_result(
    r: pb::SubmitAndWaitForTransactionResponse,
) -> Result<TransactionResult, LedgerError> {
    let flat = transaction(r.transaction.ok_or_else(|| {
        LedgerError::Protocol("SubmitAndWaitForTransaction answered without a transaction".into())
    })?)?;
    let mut created = Vec::new();
    let mut archived = Vec::new();
    for e in flat.events {
        match e {
            Event::Created(c) => created.push(c),
            Event::Archived(a) => archived.push(a),
        }
    }
    let (exercised, exercise_result) = match r.transaction_tree {
        Some(tree) => {
            let mut by_id: BTreeMap<i32, Exercised> = BTreeMap::new();
            for (id, e) in tree.events_by_id {
                if let Some(pb::tree_event::Kind::Exercised(x)) = e.kind {
                    by_id.insert(id, exercised(x)?);
                }
            }
            // The command's own choice is the first root that is an exercise.
            let result = tree
                .root_node_ids
                .iter()
                .find_map(|id| by_id.get(id))
                .map(|x| x.result.clone());
            (by_id.into_values().collect(), result)
        }
        None => (Vec::new(), None),
    };
    Ok(TransactionResult {
        update_id: flat.update_id,
        command_id: flat.command_id,
        offset: flat.offset,
        effective_at: flat.effective_at,
        created,
        archived,
        exercised,
        exercise_result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(cid: &str, node: i32) -> pb::CreatedEvent {
        pb::CreatedEvent {
            offset: 7,
            node_id: node,
            contract_id: cid.into(),
            template_id: "iou:Iou".into(),
            package_id: "pkg".into(),
            create_arguments_json: r#"{"amount":"10.0"}"#.into(),
            signatories: vec!["bank".into()],
            observers: vec!["alice".into()],
            contract_key_json: String::new(),
            witness_parties: vec!["alice".into()],
            created_at: 1,
        }
    }

    #[test]
    fn a_split_result_carries_events_and_the_choice_result() {
        let exercise = pb::ExercisedEvent {
            offset: 7,
            node_id: 0,
            contract_id: "old".into(),
            template_id: "iou:Iou".into(),
            choice: "Split".into(),
            choice_argument_json: r#"{"splitAmount":"4.0"}"#.into(),
            acting_parties: vec!["alice".into()],
            consuming: true,
            child_node_ids: vec![1, 2],
            exercise_result_json: r#"["a","b"]"#.into(),
            witness_parties: vec!["alice".into()],
        };
        let tree_event = |k| pb::TreeEvent { kind: Some(k) };
        let response = pb::SubmitAndWaitForTransactionResponse {
            transaction: Some(pb::Transaction {
                update_id: "u1".into(),
                command_id: "c1".into(),
                workflow_id: String::new(),
                effective_at: 5,
                offset: 7,
                events: vec![
                    pb::Event {
                        event: Some(pb::event::Event::Archived(pb::ArchivedEvent {
                            offset: 7,
                            node_id: 0,
                            contract_id: "old".into(),
                            template_id: "iou:Iou".into(),
                            witness_parties: vec!["alice".into()],
                        })),
                    },
                    pb::Event {
                        event: Some(pb::event::Event::Created(created("a", 1))),
                    },
                    pb::Event {
                        event: Some(pb::event::Event::Created(created("b", 2))),
                    },
                ],
            }),
            transaction_tree: Some(pb::TransactionTree {
                update_id: "u1".into(),
                command_id: "c1".into(),
                workflow_id: String::new(),
                effective_at: 5,
                offset: 7,
                events_by_id: [
                    (0, tree_event(pb::tree_event::Kind::Exercised(exercise))),
                    (
                        1,
                        tree_event(pb::tree_event::Kind::Created(created("a", 1))),
                    ),
                    (
                        2,
                        tree_event(pb::tree_event::Kind::Created(created("b", 2))),
                    ),
                ]
                .into_iter()
                .collect(),
                root_node_ids: vec![0],
            }),
        };
        let r = transaction_result(response).unwrap();
        assert_eq!(r.created_of("iou:Iou"), vec!["a", "b"]);
        assert_eq!(r.archived[0].contract_id, "old");
        assert_eq!(r.exercise_result, Some(serde_json::json!(["a", "b"])));
        assert_eq!(r.exercised[0].argument["splitAmount"], "4.0");
        assert_eq!(r.created[0].payload["amount"], "10.0");
        assert_eq!(r.created[0].key, None);
    }

    #[test]
    fn a_payload_that_is_not_json_is_a_protocol_error() {
        let mut e = created("x", 0);
        e.create_arguments_json = "{oops".into();
        let err = contract(e).unwrap_err();
        assert!(matches!(err, LedgerError::Protocol(m) if m.contains("x")));
    }

    #[test]
    fn a_contract_printed_as_json_reads_back_as_a_disclosure() {
        let c = contract(created("cid", 0)).unwrap();
        let printed = serde_json::to_string(&c).unwrap();
        let d: DisclosedContract = serde_json::from_str(&printed).unwrap();
        assert_eq!(d, DisclosedContract::from(&c));
        let p = d.to_pb();
        assert_eq!(p.create_arguments_json, r#"{"amount":"10.0"}"#);
        assert_eq!(
            (p.signatories, p.observers),
            (vec!["bank".to_owned()], vec!["alice".to_owned()])
        );
    }
}
