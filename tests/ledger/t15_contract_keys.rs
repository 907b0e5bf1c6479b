//! Contract keys across shards (examples/packages/registry.toml): a Name's key is its
//! authority and name, maintained by the authority on shard-1. Users on both shards
//! register the same names at once: exactly one of each pair commits and the other fails
//! DUPLICATE_CONTRACT_KEY (the authority's shard decides, by sequencing order). Exercise
//! and fetch by key work over gRPC; archiving frees the key; a lookup that claims a held
//! key is free is refused INCONSISTENT_CONTRACT_KEY.

use anyhow::{Context, Result, anyhow};
use ordo_proto::errors;
use ordo_proto::ledger::v1 as pb;
use serde_json::{Value, json};

use crate::common::*;

const REGISTRY: &str = include_str!("../../examples/packages/registry.toml");

fn exercise_by_key(key: Value, choice: &str, argument: Value) -> pb::command::Command {
    pb::command::Command::ExerciseByKey(pb::ExerciseByKeyCommand {
        template_id: "registry:Name".into(),
        contract_key_json: key.to_string(),
        choice: choice.into(),
        choice_argument_json: argument.to_string(),
    })
}

fn key(name: &str) -> Value {
    json!({ "authority": "reg", "name": name })
}

/// The code of a refusal, checked to come with its gRPC status.
fn code(status: &tonic::Status) -> Option<errors::ErrorCode> {
    let code = errors::code_of(status).and_then(|id| errors::by_id(&id))?;
    (code.grpc == status.code()).then_some(code)
}

/// `user`'s Registrar from the authority: created by reg, seen by the user on its shard.
async fn registrar(net: &LedgerNet, user: &str) -> Result<String> {
    let tx = net
        .submit(
            "reg",
            create(
                "registry:Registrar",
                json!({ "authority": "reg", "user": user }),
            ),
        )
        .await
        .map_err(|s| anyhow!("registrar of {user}: {s:?}"))?;
    let cid = created(&tx)
        .first()
        .map(|c| c.contract_id.clone())
        .context("the Registrar")?;
    let shard = net.shard_of(user);
    ordo_testkit::wait_for("the user's Registrar", PATIENCE, || async {
        let acs = net.acs_on(shard, user).await.ok()?;
        acs.iter().any(|c| c.contract_id == cid).then_some(())
    })
    .await?;
    Ok(cid)
}

async fn register(
    net: &LedgerNet,
    user: &str,
    registrar: &str,
    name: &str,
) -> Result<pb::Transaction, tonic::Status> {
    net.submit(
        user,
        exercise(
            "registry:Registrar",
            registrar,
            "Register",
            json!({ "name": name }),
        ),
    )
    .await
}

/// The result of the root exercise of `tx` (committed on `party`'s shard), as JSON: from
/// the transaction tree at its offset.
async fn result(net: &LedgerNet, party: &str, tx: &pb::Transaction) -> Result<Value> {
    let mut stream = net
        .update_stream(
            net.shard_of(party),
            &[party],
            tx.offset - 1,
            tx.offset,
            pb::UpdateShape::Tree,
        )
        .await?;
    while let Some(u) = stream.message().await? {
        if let Some(pb::get_updates_response::Update::TransactionTree(t)) = u.update {
            let root = t.root_node_ids.first().context("no root")?;
            if let Some(pb::tree_event::Kind::Exercised(x)) =
                t.events_by_id.get(root).and_then(|e| e.kind.clone())
            {
                return Ok(serde_json::from_str(&x.exercise_result_json)?);
            }
        }
    }
    Err(anyhow!("no exercise at offset {}", tx.offset))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_unique_across_shards_and_usable_by_key() -> Result<()> {
    let net = LedgerNet::with_parties("t15", &[("reg", 0), ("alice", 0), ("bob", 1)]).await?;
    net.upload(REGISTRY).await?;
    let alice_reg = registrar(&net, "alice").await?;
    let bob_reg = registrar(&net, "bob").await?;

    // Concurrent registrations of one name from both shards: exactly one commits, the
    // other is refused by the authority's shard.
    let mut holders = Vec::new();
    for round in 0..3 {
        let name = format!("name-{round}");
        let (a, b) = tokio::join!(
            register(&net, "alice", &alice_reg, &name),
            register(&net, "bob", &bob_reg, &name),
        );
        let (winner, tx, loser) = match (a, b) {
            (Ok(tx), Err(e)) => ("alice", tx, e),
            (Err(e), Ok(tx)) => ("bob", tx, e),
            (a, b) => panic!("round {round}: exactly one registration must commit: {a:?} / {b:?}"),
        };
        assert_eq!(
            code(&loser),
            Some(errors::DUPLICATE_CONTRACT_KEY),
            "round {round}: {loser:?}"
        );
        assert!(loser.message().contains(&name), "round {round}: {loser:?}");
        // The created Name shows its key.
        let created = created(&tx);
        let name_event = created
            .iter()
            .find(|c| c.template_id == "registry:Name")
            .context("the Name")?;
        let shown: Value = serde_json::from_str(&name_event.contract_key_json)?;
        assert_eq!(shown, key(&name));
        holders.push((name, winner, name_event.contract_id.clone()));
    }
    // Registering a held name later is refused the same way, whoever asks.
    let (name, holder, cid) = holders[0].clone();
    let (other, other_reg) = if holder == "alice" {
        ("bob", &bob_reg)
    } else {
        ("alice", &alice_reg)
    };
    let refused = register(&net, other, other_reg, &name).await.unwrap_err();
    assert_eq!(
        code(&refused),
        Some(errors::DUPLICATE_CONTRACT_KEY),
        "{refused:?}"
    );

    // Fetch by key (in a choice body) over gRPC: the holder describes its own name.
    let tx = net
        .submit(
            holder,
            exercise("registry:Name", &cid, "Describe", json!({ "name": name })),
        )
        .await
        .map_err(|s| anyhow!("describe: {s:?}"))?;
    assert_eq!(result(&net, holder, &tx).await?, json!(holder));

    // A lookup through the registrar: reg authorizes (it maintains the key). The holder's
    // own name is found; a free name is not; the other party cannot see the holder, so
    // its lookup says "free", which the authority's shard refuses.
    let holder_reg = if holder == "alice" {
        &alice_reg
    } else {
        &bob_reg
    };
    let lookup = |user: &'static str, registrar: String, name: String| {
        let net = &net;
        async move {
            net.submit(
                user,
                exercise(
                    "registry:Registrar",
                    &registrar,
                    "Lookup",
                    json!({ "name": name }),
                ),
            )
            .await
        }
    };
    let found = lookup(holder, holder_reg.clone(), name.clone())
        .await
        .map_err(|s| anyhow!("lookup: {s:?}"))?;
    assert_eq!(result(&net, holder, &found).await?, json!(cid));
    let free = lookup(holder, holder_reg.clone(), "nobody".into())
        .await
        .map_err(|s| anyhow!("lookup: {s:?}"))?;
    assert_eq!(result(&net, holder, &free).await?, Value::Null);
    let blind = lookup(other, other_reg.clone(), name.clone())
        .await
        .unwrap_err();
    assert_eq!(
        code(&blind),
        Some(errors::INCONSISTENT_CONTRACT_KEY),
        "{blind:?}"
    );

    // Exercise by key: an unknown key is CONTRACT_KEY_NOT_FOUND, a key of the wrong shape
    // INVALID_ARGUMENT; the holder releases its name by key, which frees it.
    let missing = net
        .submit(holder, exercise_by_key(key("nobody"), "Release", json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        code(&missing),
        Some(errors::CONTRACT_KEY_NOT_FOUND),
        "{missing:?}"
    );
    let bad = net
        .submit(holder, exercise_by_key(json!("reg"), "Release", json!({})))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    let released = net
        .submit(holder, exercise_by_key(key(&name), "Release", json!({})))
        .await
        .map_err(|s| anyhow!("release by key: {s:?}"))?;
    assert_eq!(archived(&released), vec![cid.as_str()]);
    let again = register(&net, other, other_reg, &name)
        .await
        .map_err(|s| anyhow!("registering a released name: {s:?}"))?;
    let new_holder = created(&again)
        .iter()
        .find(|c| c.template_id == "registry:Name")
        .map(|c| c.contract_id.clone())
        .context("the new Name")?;
    assert_ne!(new_holder, cid);

    // Every shard agrees: each name is held once, by its holder.
    for (name, holder, _) in &holders[1..] {
        let names: Vec<Contract> = net
            .acs_on(net.shard_of(holder), holder)
            .await?
            .into_iter()
            .filter(|c| c.template_id == "registry:Name" && c.payload["name"] == json!(name))
            .collect();
        assert_eq!(names.len(), 1, "{name}: {names:?}");
    }
    let reg_names: Vec<Contract> = net
        .acs_on(0, "reg")
        .await?
        .into_iter()
        .filter(|c| c.template_id == "registry:Name")
        .collect();
    assert_eq!(reg_names.len(), holders.len(), "{reg_names:?}");
    Ok(())
}
