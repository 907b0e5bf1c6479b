//! Building a confirmation request from a transaction (DESIGN §4 step 3), and reading a
//! received view (steps 4 and 6): which views go to which participant, the informee tree
//! for the mediator, the confirming parties a participant answers for, the inputs it must
//! check, and what it commits. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use ordo_core::{Hash, MemberId, PartyId};
use ordo_ledger::transaction::key_hash;
use ordo_ledger::{ContractInstance, Node, TemplateId, Transaction, View};
use ordo_protocol::{InformeeTree, TopologyState, ViewCommitment, ViewMessage, merkle};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::conflict::{InputUse, KeyUse};
use crate::events::{NodeKind, StoredContract, StoredNode, StoredTx};

/// What a `ViewMessage`'s `view` holds: the ledger view plus what the receiving
/// participant's update log records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewPayload {
    pub view: View,
    pub workflow_id: String,
    /// Only in the submitting participant's own view (command ids are private to the
    /// submitting parties).
    pub command_id: String,
}

/// A confirmation request ready to send.
#[derive(Clone, Debug)]
pub struct RequestPlan {
    /// The request's Merkle root (see `ordo_protocol::merkle`).
    pub root_hash: String,
    /// One view per informee participant (including the submitter itself).
    pub views: BTreeMap<MemberId, ViewPayload>,
    /// The message carrying each of `views`, with its place in the request.
    pub messages: BTreeMap<MemberId, ViewMessage>,
    pub informee_tree: InformeeTree,
}

/// The JSON of a view as it travels in its `ViewMessage`.
pub fn view_json(payload: &ViewPayload) -> Box<RawValue> {
    // Serialising plain data cannot fail.
    serde_json::value::to_raw_value(payload).unwrap_or_default()
}

/// The hash a view's commitment carries: of the exact JSON that travels, which the
/// recipient hashes before decoding it.
pub fn view_hash(json: &RawValue) -> Hash {
    Hash::of_parts([b"ordo-view-v1".as_slice(), json.get().as_bytes()])
}

/// The commitment of `payload` (whose JSON is `json`) for `participant`: what the informee
/// tree declares of it.
pub fn commitment(
    participant: &MemberId,
    payload: &ViewPayload,
    json: &RawValue,
) -> ViewCommitment {
    ViewCommitment::new(
        participant.clone(),
        &view_hash(json),
        payload.view.informees(),
        payload.view.confirming_parties(),
    )
}

/// The messages and informee tree of the views in `views` (their JSON in `jsons`), with
/// the given commitments, sealed under one root: what a submitter sends. `None` if a
/// commitment's view hash is not a hash.
pub fn seal(
    submitter: &MemberId,
    views: &BTreeMap<MemberId, Box<RawValue>>,
    commitments: Vec<ViewCommitment>,
) -> Option<(String, BTreeMap<MemberId, ViewMessage>, InformeeTree)> {
    let (leaves, root) = merkle::build(submitter, &commitments)?;
    let root_hash = root.to_hex();
    let leaves: Vec<String> = leaves.iter().map(Hash::to_hex).collect();
    let messages = views
        .iter()
        .zip(&commitments)
        .enumerate()
        .map(|(position, ((member, json), c))| {
            let message = ViewMessage {
                root_hash: root_hash.clone(),
                commitment: c.clone(),
                position: position as u32,
                leaves: leaves.clone(),
                view: json.clone(),
            };
            (member.clone(), message)
        })
        .collect();
    let tree = InformeeTree {
        root_hash: root_hash.clone(),
        submitter: submitter.clone(),
        views: commitments,
    };
    Some((root_hash, messages, tree))
}

/// Splits `tx` into views per informee participant (each gets the projection for the
/// parties it hosts), commits to them in the request's Merkle tree and builds the informee
/// tree for the mediator. `Err` names an informee no shard hosts.
pub fn plan_request(
    tx: &Transaction,
    topology: &TopologyState,
    submitter: &MemberId,
    workflow_id: &str,
    command_id: &str,
) -> Result<RequestPlan, String> {
    let informees = tx.all_informees();
    let mut hosted: BTreeMap<MemberId, BTreeSet<PartyId>> = BTreeMap::new();
    for party in &informees {
        let host = topology
            .host_of(party)
            .ok_or_else(|| format!("party {party} is not hosted by any shard"))?;
        hosted
            .entry(host.clone())
            .or_default()
            .insert(party.clone());
    }
    hosted.entry(submitter.clone()).or_default();
    let views: BTreeMap<MemberId, ViewPayload> = hosted
        .into_iter()
        .map(|(member, parties)| {
            let payload = ViewPayload {
                view: tx.view(&parties),
                workflow_id: workflow_id.to_owned(),
                command_id: if &member == submitter {
                    command_id.to_owned()
                } else {
                    String::new()
                },
            };
            (member, payload)
        })
        .collect();
    let jsons: BTreeMap<MemberId, Box<RawValue>> = views
        .iter()
        .map(|(member, payload)| (member.clone(), view_json(payload)))
        .collect();
    let commitments: Vec<ViewCommitment> = views
        .iter()
        .map(|(member, payload)| commitment(member, payload, &jsons[member]))
        .collect();
    let (root_hash, messages, informee_tree) = seal(submitter, &jsons, commitments)
        .ok_or_else(|| "a view hash is not a hash".to_owned())?;
    Ok(RequestPlan {
        informee_tree,
        root_hash,
        views,
        messages,
    })
}

/// The parties hosted here among the view's confirming parties: who this participant
/// answers for.
pub fn hosted_confirming(view: &View, hosted: &BTreeSet<PartyId>) -> BTreeSet<PartyId> {
    view.nodes
        .values()
        .flat_map(Node::confirming_parties)
        .filter(|p| hosted.contains(p))
        .collect()
}

/// The contracts the view archives.
pub fn consumed(view: &View) -> BTreeSet<String> {
    view.nodes
        .values()
        .filter_map(|n| match n {
            Node::Exercise {
                contract_id,
                consuming: true,
                ..
            } => Some(contract_id.to_string()),
            _ => None,
        })
        .collect()
}

/// The ids of every contract the view creates (kept or archived within the
/// transaction), for the freshness check.
pub fn created_ids(view: &View) -> Vec<String> {
    view.nodes
        .values()
        .filter_map(|n| match n {
            Node::Create { contract_id, .. } => Some(contract_id.to_string()),
            _ => None,
        })
        .collect()
}

/// The contract keys the view assigns (creates) or finds free (lookups that found
/// nothing) whose maintainers include a hosted party, for the key check.
pub fn key_uses(view: &View, hosted: &BTreeSet<PartyId>) -> Vec<KeyUse> {
    key_uses_where(view, |maintainers| !maintainers.is_disjoint(hosted))
}

/// The hashes of every key the view assigns or finds free, whoever maintains it: what a
/// batch reads.
pub fn key_hashes(view: &View) -> impl Iterator<Item = String> {
    key_uses_where(view, |_| true)
        .into_iter()
        .map(|u| u.key_hash)
}

fn key_uses_where(view: &View, maintained: impl Fn(&BTreeSet<PartyId>) -> bool) -> Vec<KeyUse> {
    let key_use = |template: &TemplateId, key: &ordo_ledger::Value, assigns: bool| KeyUse {
        key_hash: key_hash(template, key).to_hex(),
        describe: format!("key {} of {template}", key.to_json()),
        assigns,
    };
    view.nodes
        .values()
        .filter_map(|n| match n {
            Node::Create { contract, .. } => match &contract.key {
                Some(key) if maintained(&contract.maintainers) => {
                    Some(key_use(&contract.template, key, true))
                }
                _ => None,
            },
            Node::LookupByKey {
                template,
                key,
                maintainers,
                result: None,
            } if maintained(maintainers) => Some(key_use(template, key, false)),
            _ => None,
        })
        .collect()
}

/// The view's input contracts and how it uses them, for the activeness check.
pub fn input_uses(view: &View, hosted: &BTreeSet<PartyId>) -> Vec<InputUse> {
    let consumed = consumed(view);
    view.inputs
        .iter()
        .map(|(id, instance)| {
            let id = id.to_string();
            InputUse {
                consumed: consumed.contains(&id),
                hosted_stakeholder: !instance.stakeholders().is_disjoint(hosted),
                contract_id: id,
                instance: instance.clone(),
            }
        })
        .collect()
}

/// What an approved view changes on this shard.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// Contracts to remove from the ACS.
    pub archived: Vec<String>,
    /// Contracts to add (created, not archived in the transaction, with a hosted
    /// stakeholder).
    pub created: Vec<StoredContract>,
    /// The update to append, `None` when the hosted parties see nothing to record.
    pub update: Option<StoredTx>,
}

/// Metadata of the committed transaction.
pub struct CommitContext<'a> {
    pub update_id: &'a str,
    pub offset: i64,
    pub effective_at: i64,
    pub workflow_id: &'a str,
    pub command_id: &'a str,
}

pub fn stored_contract(
    contract_id: String,
    c: &ContractInstance,
    offset: i64,
    created_at: i64,
) -> StoredContract {
    StoredContract {
        contract_id,
        template_id: c.template.to_string(),
        package_id: c.package_id.to_string(),
        payload: c.payload.to_json(),
        key: c.key.as_ref().map(|k| k.to_json()),
        key_hash: c.key_hash().map(|h| h.to_hex()),
        signatories: c.signatories.iter().map(ToString::to_string).collect(),
        observers: c.observers.iter().map(ToString::to_string).collect(),
        created_offset: offset,
        created_at,
        instance: serde_json::to_value(c).unwrap_or_default(),
    }
}

fn names(parties: &BTreeSet<PartyId>) -> Vec<String> {
    parties.iter().map(ToString::to_string).collect()
}

/// What committing `view` means for a shard hosting `hosted`.
pub fn commit(view: &View, hosted: &BTreeSet<PartyId>, ctx: &CommitContext<'_>) -> Commit {
    let consumed = consumed(view);
    let mut witnesses: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut stack: Vec<(usize, BTreeSet<String>)> = view
        .roots
        .iter()
        .rev()
        .map(|r| (r.node, BTreeSet::new()))
        .collect();
    while let Some((id, inherited)) = stack.pop() {
        let Some(node) = view.nodes.get(&id) else {
            continue;
        };
        let mut w = inherited;
        w.extend(
            node.informees()
                .into_iter()
                .filter(|p| hosted.contains(p))
                .map(|p| p.to_string()),
        );
        for child in node.children().iter().rev() {
            stack.push((*child, w.clone()));
        }
        witnesses.insert(id, w);
    }

    let is_shown = |id: &usize| {
        !matches!(
            view.nodes.get(id),
            Some(Node::Fetch { .. } | Node::LookupByKey { .. }) | None
        )
    };
    let mut nodes = BTreeMap::new();
    let mut created = Vec::new();
    for (id, node) in &view.nodes {
        let tree_witnesses = witnesses.get(id).cloned().unwrap_or_default();
        let kind = match node {
            Node::Create {
                contract_id,
                contract,
            } => {
                let stored = stored_contract(
                    contract_id.to_string(),
                    contract,
                    ctx.offset,
                    ctx.effective_at,
                );
                if !consumed.contains(&stored.contract_id)
                    && !contract.stakeholders().is_disjoint(hosted)
                {
                    created.push(stored.clone());
                }
                NodeKind::Created { contract: stored }
            }
            Node::Exercise {
                contract_id,
                template,
                choice,
                consuming,
                actors,
                argument,
                children,
                result,
                stakeholders,
                ..
            } => NodeKind::Exercised {
                contract_id: contract_id.to_string(),
                template_id: template.to_string(),
                choice: choice.clone(),
                argument: argument.to_json(),
                acting_parties: names(actors),
                consuming: *consuming,
                children: children
                    .iter()
                    .filter(|c| is_shown(c))
                    .map(|c| *c as u32)
                    .collect(),
                result: result.to_json(),
                stakeholders: names(stakeholders),
            },
            Node::Fetch { .. } | Node::LookupByKey { .. } => continue,
        };
        nodes.insert(
            *id as u32,
            StoredNode {
                tree_witnesses,
                kind,
            },
        );
    }
    let update = (!nodes.is_empty()).then(|| StoredTx {
        update_id: ctx.update_id.to_owned(),
        offset: ctx.offset,
        effective_at: ctx.effective_at,
        workflow_id: ctx.workflow_id.to_owned(),
        command_id: ctx.command_id.to_owned(),
        act_as: names(&view.submitters),
        roots: view
            .roots
            .iter()
            .filter(|r| is_shown(&r.node))
            .map(|r| r.node as u32)
            .collect(),
        nodes,
    });
    Commit {
        archived: consumed.into_iter().collect(),
        created,
        update,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{create_iou, packages, parties, topology, transfer_iou};

    #[test]
    fn each_informee_participant_gets_its_projection_and_the_mediator_the_informee_tree() {
        let (topology, p1, p2) = topology();
        let tx = create_iou(&packages(), "bob");
        let plan = plan_request(&tx, &topology, &p1, "wf", "cmd-1").unwrap();
        assert_eq!(plan.views.len(), 2);
        assert_eq!(plan.views[&p1].command_id, "cmd-1");
        assert_eq!(
            plan.views[&p2].command_id, "",
            "command ids stay with the submitter"
        );
        assert_eq!(plan.views[&p2].workflow_id, "wf");
        assert_eq!(plan.informee_tree.confirming_parties(), parties(&["bank"]));
        assert_eq!(plan.informee_tree.informees(), parties(&["bank", "bob"]));
        assert_eq!(plan.informee_tree.root_hash, plan.root_hash);
        // Everyone checks the same root: the mediator over every commitment, each
        // participant over its own view and the other leaves.
        let root = plan.informee_tree.check(10).unwrap();
        for (member, message) in &plan.messages {
            let hash = view_hash(&message.view);
            assert_eq!(message.check_inclusion(&p1, member, &hash).unwrap(), root);
        }
        assert_eq!(plan.informee_tree.submitter, p1);

        // bank confirms (on p1); bob is only informed.
        assert_eq!(
            hosted_confirming(&plan.views[&p1].view, &parties(&["bank", "alice"])),
            parties(&["bank"])
        );
        assert!(hosted_confirming(&plan.views[&p2].view, &parties(&["bob"])).is_empty());
    }

    #[test]
    fn an_informee_no_shard_hosts_is_named() {
        let (topology, p1, _) = topology();
        let tx = create_iou(&packages(), "carol");
        let e = plan_request(&tx, &topology, &p1, "", "c").unwrap_err();
        assert!(e.contains("carol"), "{e}");
    }

    #[test]
    fn committing_a_view_adds_outputs_and_records_the_hosted_projection() {
        let (topology, p1, p2) = topology();
        let tx = create_iou(&packages(), "bob");
        let plan = plan_request(&tx, &topology, &p1, "", "cmd").unwrap();
        let ctx = CommitContext {
            update_id: &plan.root_hash,
            offset: 7,
            effective_at: 100,
            workflow_id: "",
            command_id: "",
        };
        let bob = parties(&["bob"]);
        let commit = commit(&plan.views[&p2].view, &bob, &ctx);
        assert!(commit.archived.is_empty());
        assert_eq!(commit.created.len(), 1);
        let created = &commit.created[0];
        assert_eq!(created.observers, vec!["bob".to_owned()]);
        assert_eq!(created.created_offset, 7);
        // Decimals travel as strings, normalised.
        assert_eq!(created.payload["amount"], serde_json::json!("5"));
        let update = commit.update.unwrap();
        assert_eq!(update.offset, 7);
        assert_eq!(update.roots.len(), 1);
        let node = &update.nodes[&update.roots[0]];
        assert_eq!(
            node.tree_witnesses,
            ["bob".to_owned()].into_iter().collect::<BTreeSet<_>>()
        );

        // A participant hosting none of the parties records nothing.
        let nobody = commit_for_nobody(&plan.views[&p2].view, &ctx);
        assert!(nobody.created.is_empty());
    }

    fn commit_for_nobody(view: &View, ctx: &CommitContext<'_>) -> Commit {
        commit(view, &BTreeSet::new(), ctx)
    }

    #[test]
    fn consuming_an_input_is_an_input_use_to_check_and_an_archive_to_commit() {
        let (topology, p1, _) = topology();
        let store = packages();
        let created = create_iou(&store, "alice");
        let (cid, instance) = created.created().into_iter().next().unwrap();
        let tx = transfer_iou(&store, cid, instance, "bob", b"seed-2");
        let plan = plan_request(&tx, &topology, &p1, "", "c").unwrap();
        let view = &plan.views[&p1].view;
        let hosted = parties(&["alice", "bank"]);
        let uses = input_uses(view, &hosted);
        assert_eq!(
            uses,
            vec![InputUse {
                contract_id: cid.to_string(),
                consumed: true,
                hosted_stakeholder: true,
                instance: view.inputs[&cid].clone(),
            }]
        );
        let ctx = CommitContext {
            update_id: "u",
            offset: 2,
            effective_at: 3,
            workflow_id: "",
            command_id: "c",
        };
        let commit = commit(view, &hosted, &ctx);
        assert_eq!(commit.archived, vec![cid.to_string()]);
        // The new Iou (bank, bob) has bank as a stakeholder, so p1 keeps it too.
        assert_eq!(commit.created.len(), 1);
        assert_eq!(commit.update.unwrap().command_id, "c");
    }
}
