//! Domain ⇄ protobuf conversions of the Ledger API, in one place.

use ordo_proto::ledger::v1 as pb;

use crate::events::{FlatEvent, NodeKind, Reader, StoredContract, StoredTx};
use crate::store::CompletionRow;

fn json_text(v: &serde_json::Value) -> String {
    v.to_string()
}

pub fn created_event(c: &StoredContract, node: u32, witnesses: Vec<String>) -> pb::CreatedEvent {
    pb::CreatedEvent {
        offset: c.created_offset,
        node_id: node as i32,
        contract_id: c.contract_id.clone(),
        template_id: c.template_id.clone(),
        package_id: c.package_id.clone(),
        create_arguments_json: json_text(&c.payload),
        signatories: c.signatories.clone(),
        observers: c.observers.clone(),
        contract_key_json: c.key.as_ref().map(json_text).unwrap_or_default(),
        witness_parties: witnesses,
        created_at: c.created_at,
    }
}

/// An active contract for a reader (its witnesses: the reader's parties among the
/// stakeholders).
pub fn active_contract(c: &StoredContract, reader: &Reader) -> pb::CreatedEvent {
    let witnesses = c
        .stakeholders()
        .into_iter()
        .filter(|p| reader.parties.contains(p))
        .collect();
    created_event(c, 0, witnesses)
}

pub fn flat_transaction(tx: &StoredTx, reader: &Reader) -> pb::Transaction {
    let events = tx
        .flat_events(reader)
        .into_iter()
        .map(|e| pb::Event {
            event: Some(match e {
                FlatEvent::Created {
                    node,
                    contract,
                    witnesses,
                } => pb::event::Event::Created(created_event(contract, node, witnesses)),
                FlatEvent::Archived {
                    node,
                    contract_id,
                    template_id,
                    witnesses,
                } => pb::event::Event::Archived(pb::ArchivedEvent {
                    offset: tx.offset,
                    node_id: node as i32,
                    contract_id: contract_id.to_owned(),
                    template_id: template_id.to_owned(),
                    witness_parties: witnesses,
                }),
            }),
        })
        .collect();
    pb::Transaction {
        update_id: tx.update_id.clone(),
        command_id: tx.command_id_for(reader).to_owned(),
        workflow_id: tx.workflow_id.clone(),
        effective_at: tx.effective_at,
        offset: tx.offset,
        events,
    }
}

pub fn transaction_tree(tx: &StoredTx, reader: &Reader) -> pb::TransactionTree {
    let (visible, roots) = tx.tree(reader);
    let mut events_by_id = std::collections::HashMap::new();
    for (id, witnesses) in visible.iter() {
        let Some(node) = tx.nodes.get(id) else {
            continue;
        };
        let kind = match &node.kind {
            NodeKind::Created { contract } => {
                pb::tree_event::Kind::Created(created_event(contract, *id, witnesses.clone()))
            }
            NodeKind::Exercised {
                contract_id,
                template_id,
                choice,
                argument,
                acting_parties,
                consuming,
                children,
                result,
                ..
            } => pb::tree_event::Kind::Exercised(pb::ExercisedEvent {
                offset: tx.offset,
                node_id: *id as i32,
                contract_id: contract_id.clone(),
                template_id: template_id.clone(),
                choice: choice.clone(),
                choice_argument_json: json_text(argument),
                acting_parties: acting_parties.clone(),
                consuming: *consuming,
                child_node_ids: children
                    .iter()
                    .filter(|c| visible.contains_key(c))
                    .map(|c| *c as i32)
                    .collect(),
                exercise_result_json: json_text(result),
                witness_parties: witnesses.clone(),
            }),
        };
        events_by_id.insert(*id as i32, pb::TreeEvent { kind: Some(kind) });
    }
    pb::TransactionTree {
        update_id: tx.update_id.clone(),
        command_id: tx.command_id_for(reader).to_owned(),
        workflow_id: tx.workflow_id.clone(),
        effective_at: tx.effective_at,
        offset: tx.offset,
        events_by_id,
        root_node_ids: roots.into_iter().map(|r| r as i32).collect(),
    }
}

pub fn update(tx: &StoredTx, reader: &Reader, shape: pb::UpdateShape) -> pb::GetUpdatesResponse {
    pb::GetUpdatesResponse {
        update: Some(match shape {
            pb::UpdateShape::Flat => {
                pb::get_updates_response::Update::Transaction(flat_transaction(tx, reader))
            }
            pb::UpdateShape::Tree => {
                pb::get_updates_response::Update::TransactionTree(transaction_tree(tx, reader))
            }
        }),
    }
}

pub fn completion(c: &CompletionRow) -> pb::Completion {
    pb::Completion {
        command_id: c.command_id.clone(),
        application_id: c.application_id.clone(),
        submission_id: c.submission_id.clone(),
        act_as: c.act_as.clone(),
        status: Some(pb::Status {
            code: c.outcome.code,
            message: c.outcome.message.clone(),
            error_code: c.outcome.error_code.clone(),
        }),
        update_id: c.outcome.update_id.clone(),
        offset: c.outcome.ledger_offset,
        completion_offset: c.completion_offset,
        deduplication_duration_ms: c.dedup.duration_us / 1000,
        deduplication_offset: c.dedup.offset,
    }
}
