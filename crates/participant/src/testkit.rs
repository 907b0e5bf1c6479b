//! Fixtures the unit tests share: a two-shard topology and the Iou package.

use std::collections::{BTreeMap, BTreeSet};

use ordo_core::{Hash, KeyPair, MemberId, PartyId, Timestamp};
use ordo_ledger::{Command, ContractInstance, PackageStore, TemplateId, Transaction};
use ordo_protocol::topology::encode_key;
use ordo_protocol::{MemberRole, TopologyChange, TopologyState, TopologyTransaction};

pub const IOU: &str = include_str!("../../../examples/packages/iou.toml");

pub fn party(s: &str) -> PartyId {
    PartyId::new(s).unwrap()
}

pub fn parties(xs: &[&str]) -> BTreeSet<PartyId> {
    xs.iter().map(|p| party(p)).collect()
}

/// p1 hosts bank and alice on shard-1, p2 hosts bob on shard-2; one mediator.
pub fn topology() -> (TopologyState, MemberId, MemberId) {
    let mut t = TopologyState::default();
    let mut members = Vec::new();
    let mut changes = Vec::new();
    for (name, shard) in [("p1", "shard-1"), ("p2", "shard-2")] {
        let key = KeyPair::generate();
        let id = MemberId::new(name, &key.public()).unwrap();
        changes.push(TopologyChange::AddMember {
            member: id.clone(),
            public_key: encode_key(&key.public()),
            role: MemberRole::Participant {
                shard: shard.into(),
            },
        });
        members.push(id);
    }
    let mediator = KeyPair::generate();
    changes.push(TopologyChange::AddMember {
        member: MemberId::new("mediator", &mediator.public()).unwrap(),
        public_key: encode_key(&mediator.public()),
        role: MemberRole::Mediator,
    });
    for (p, shard) in [
        ("bank", "shard-1"),
        ("alice", "shard-1"),
        ("bob", "shard-2"),
    ] {
        changes.push(TopologyChange::AllocateParty {
            party: party(p),
            shard: shard.into(),
        });
    }
    for change in changes {
        let tx = TopologyTransaction {
            serial: t.serial + 1,
            change,
        };
        t.apply(&tx, Timestamp(t.serial as i64 + 1)).unwrap();
    }
    (t, members[0].clone(), members[1].clone())
}

pub fn packages() -> PackageStore {
    let mut store = PackageStore::new();
    store.upload(IOU.as_bytes()).unwrap();
    store
}

pub fn create_iou(store: &PackageStore, owner: &str) -> Transaction {
    let template: TemplateId = "iou:Iou".parse().unwrap();
    let payload = store
        .payload_from_json(
            &template,
            &serde_json::json!({"issuer": "bank", "owner": owner, "currency": "EUR", "amount": "5.0"}),
        )
        .unwrap();
    let lookup: BTreeMap<ordo_ledger::ContractId, ContractInstance> = BTreeMap::new();
    ordo_ledger::interpret(
        store,
        &Command::Create { template, payload },
        &parties(&["bank"]),
        &lookup,
        Hash::of(b"seed"),
        &ordo_ledger::Limits::default(),
    )
    .unwrap()
}

/// `actor` (alice, on shard-1) transfers the Iou `cid` to `new_owner`.
pub fn transfer_iou(
    store: &PackageStore,
    cid: ordo_ledger::ContractId,
    instance: ContractInstance,
    new_owner: &str,
    seed: &[u8],
) -> Transaction {
    let template: TemplateId = "iou:Iou".parse().unwrap();
    let argument = store
        .argument_from_json(
            &template,
            "Transfer",
            &serde_json::json!({"newOwner": new_owner}),
        )
        .unwrap();
    let lookup: BTreeMap<_, _> = [(cid, instance)].into_iter().collect();
    ordo_ledger::interpret(
        store,
        &Command::Exercise {
            template,
            contract_id: cid,
            choice: "Transfer".into(),
            argument,
        },
        &parties(&["alice"]),
        &lookup,
        Hash::of(seed),
        &ordo_ledger::Limits::default(),
    )
    .unwrap()
}
