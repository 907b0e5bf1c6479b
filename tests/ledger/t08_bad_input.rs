//! Bad input gets a precise gRPC status naming the offending thing, and changes nothing.

use anyhow::Result;
use ordo_proto::errors;
use ordo_proto::ledger::v1 as pb;
use serde_json::json;
use tonic::Code;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_and_packages_are_refused_precisely() -> Result<()> {
    let net = LedgerNet::with_parties("t08", &[("bank", 0), ("alice", 0), ("bob", 1)]).await?;
    let iou = net.issue("bank", "alice", "EUR", "5.00").await?;
    let ends = net.ledger_ends().await?;
    let packages_before = net
        .packages(0)
        .list_packages(with_token(pb::ListPackagesRequest {}, &admin_token()))
        .await?
        .into_inner();
    let good = json!({ "issuer": "bank", "owner": "alice", "currency": "EUR", "amount": "1.00" });

    // Unknown package, template, choice.
    let refused = assert_status(
        net.submit("bank", create("nopkg:Iou", good.clone())).await,
        Code::NotFound,
        &["nopkg"],
    );
    assert!(
        errors::is(&refused, errors::PACKAGE_NOT_FOUND),
        "{refused:?}"
    );
    assert_status(
        net.submit("bank", create("iou:Nope", good.clone())).await,
        Code::NotFound,
        &["iou:Nope"],
    );
    assert_status(
        net.submit("alice", exercise("iou:Iou", &iou, "Fly", json!({})))
            .await,
        Code::NotFound,
        &["Fly", "iou:Iou"],
    );
    // A payload of the wrong type: a bool amount; a missing field; an unknown field.
    let mut wrong = good.clone();
    wrong["amount"] = json!(true);
    assert_status(
        net.submit("bank", create("iou:Iou", wrong)).await,
        Code::InvalidArgument,
        &["amount"],
    );
    let mut missing = good.clone();
    missing.as_object_mut().map(|o| o.remove("currency"));
    assert_status(
        net.submit("bank", create("iou:Iou", missing)).await,
        Code::InvalidArgument,
        &["currency"],
    );
    let mut extra = good.clone();
    extra["colour"] = json!("red");
    assert_status(
        net.submit("bank", create("iou:Iou", extra)).await,
        Code::InvalidArgument,
        &["colour"],
    );
    assert_status(
        net.submit(
            "alice",
            exercise("iou:Iou", &iou, "Transfer", json!({ "newOwner": 7 })),
        )
        .await,
        Code::InvalidArgument,
        &["newOwner"],
    );
    // Not JSON at all.
    let mut not_json = net.commands_for("bank", create("iou:Iou", json!({})));
    if let Some(pb::command::Command::Create(c)) =
        not_json.command.as_mut().and_then(|c| c.command.as_mut())
    {
        c.create_arguments_json = "{ amount: ".into();
    }
    assert_status(
        net.submit_raw(0, &token(&["bank"]), not_json).await,
        Code::InvalidArgument,
        &["create_arguments_json"],
    );
    // A false `ensure`: amount 0.
    let mut zero = good.clone();
    zero["amount"] = json!("0");
    assert_status(
        net.submit("bank", create("iou:Iou", zero)).await,
        Code::FailedPrecondition,
        &["iou:Iou", "ensure"],
    );
    // An unknown contract (well-formed id), and a malformed one.
    let unknown = "ab".repeat(32);
    let refused = assert_status(
        net.transfer("alice", &unknown, "bob").await,
        Code::NotFound,
        &[&unknown],
    );
    assert!(
        errors::is(&refused, errors::CONTRACT_NOT_FOUND),
        "{refused:?}"
    );
    // A party no shard hosts.
    let refused = assert_status(
        net.submit_raw(
            0,
            &token(&["ghost"]),
            net.commands_for("ghost", create_iou("ghost", "alice", "EUR", "1.00")),
        )
        .await,
        Code::NotFound,
        &["ghost"],
    );
    assert!(
        errors::is(&refused, errors::PARTY_NOT_KNOWN_ON_LEDGER),
        "{refused:?}"
    );
    assert_status(
        net.transfer("alice", "not-a-contract-id", "bob").await,
        Code::InvalidArgument,
        &["not-a-contract-id"],
    );
    // An oversized command (over the 256 KiB limit).
    let mut big = good.clone();
    big["currency"] = json!("X".repeat(300 * 1024));
    let oversized = net.commands_for("bank", create("iou:Iou", big));
    let id = oversized.command_id.clone();
    assert_status(
        net.submit_raw(0, &token(&["bank"]), oversized).await,
        Code::ResourceExhausted,
        &[&id],
    );
    assert_eq!(
        net.ledger_ends().await?,
        ends,
        "no bad command changed anything"
    );

    // Malformed package files: not TOML, and a field of an unknown type.
    let mut packages = net.packages(0);
    let upload = |bytes: &[u8]| {
        with_token(
            pb::UploadPackageRequest {
                package: bytes.to_vec(),
            },
            &admin_token(),
        )
    };
    assert_status(
        packages
            .upload_package(upload(b"name = \"broken\"\n[templates.T\n"))
            .await,
        Code::InvalidArgument,
        &["invalid package"],
    );
    let bad_type = b"name = \"shapes\"\nversion = \"1.0.0\"\n\n[templates.Square]\nfields = { owner = \"party\", side = \"float\" }\nsignatories = \"this.owner\"\n";
    assert_status(
        packages.upload_package(upload(bad_type)).await,
        Code::InvalidArgument,
        &["shapes", "float"],
    );
    assert_status(
        packages.upload_package(upload(&[0xff, 0xfe, 0x00])).await,
        Code::InvalidArgument,
        &["UTF-8"],
    );
    // A package upload needs an admin token.
    assert_status(
        packages
            .upload_package(with_token(
                pb::UploadPackageRequest {
                    package: IOU.as_bytes().to_vec(),
                },
                &token(&["bank"]),
            ))
            .await,
        Code::PermissionDenied,
        &["admin"],
    );
    for (shard, name) in SHARDS.iter().enumerate() {
        let now = net
            .packages(shard)
            .list_packages(with_token(pb::ListPackagesRequest {}, &admin_token()))
            .await?
            .into_inner();
        assert_eq!(now, packages_before, "{name}: packages unchanged");
    }
    assert_eq!(net.ledger_ends().await?, ends, "nothing changed");
    Ok(())
}
