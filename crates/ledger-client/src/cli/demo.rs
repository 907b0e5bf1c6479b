//! `ordo demo`: the IOU story on a running network, step by step.
//!
//! bank and alice live on the first shard, bob on the second (on the only one if there is
//! one). alice lends bob 100 USD against bob's own IOU, and bob later pays it back in EUR
//! through an atomic swap:
//!
//! 1. parties bank, alice (shard 1) and bob (shard 2) are allocated, or reused;
//! 2. the `iou` package is uploaded (vetted domain-wide; a repeat is a no-op);
//! 3. bank issues alice an Iou for 100 USD;
//! 4. bank issues bob an Iou for 150 EUR (cross-shard: bob's shard confirms);
//! 5. alice transfers her 100 USD to bob (cross-shard);
//! 6. bob gives alice his own IOU for 100 USD (bob is the issuer);
//! 7. bob splits his 150 EUR into 90 and 60;
//! 8. alice proposes a swap: bob's IOU against 90 EUR issued by bank;
//! 9. bob accepts with his 90 EUR: both Ious change hands in one transaction across
//!    both shards;
//! 10. bob archives his IOU, now back in his hands (repaid);
//!
//! and each party's active contracts are printed. In the swap the counterparty bob must
//! see the offered Iou on his own shard (a submitting participant interprets against its
//! parties' contracts only), which is why alice offers bob's IOU: bob is its issuer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::client::LedgerClient;
use crate::error::LedgerError;
use crate::network::Network;
use crate::types::{Filter, TransactionResult};

use super::CommonArgs;
use super::output::{contract_line, json_line, print_lines, result_lines, short};

/// The worked example package, carried by the binary.
pub const IOU_PACKAGE: &str = include_str!("../../../../examples/packages/iou.toml");
const IOU: &str = "iou:Iou";
const SWAP: &str = "iou:SwapProposal";
/// How long another shard may take to commit a transaction the submitter's shard has.
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Append `-SUFFIX` to the party names (default: reuse bank, alice and bob).
    #[arg(long, conflicts_with = "fresh")]
    pub suffix: Option<String>,
    /// Use new parties with a random suffix, so the story starts from empty ledgers.
    #[arg(long)]
    pub fresh: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

struct Demo {
    network: Network,
    json: bool,
    step: usize,
    clients: BTreeMap<String, LedgerClient>,
}

pub async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let network = args.common.load()?;
    let shards = network.shards();
    let Some(first) = shards.first().cloned() else {
        bail!(
            "{} lists no participant: the network runs no ledger (start one with `ordo up`)",
            network.path.display()
        );
    };
    let second = shards.get(1).cloned().unwrap_or_else(|| first.clone());
    let admin = network.client_for_shard(&first).await.with_context(|| {
        format!(
            "the network of {} is not running or not reachable",
            network.path.display()
        )
    })?;
    let suffix = match (&args.suffix, args.fresh) {
        (Some(s), _) => format!("-{s}"),
        (None, true) => format!("-{}", hex::encode(rand::random::<[u8; 3]>())),
        (None, false) => String::new(),
    };
    let mut demo = Demo {
        network,
        json: args.common.json,
        step: 0,
        clients: BTreeMap::new(),
    };
    if first == second {
        demo.note(&format!(
            "only one shard ({first}): the story runs on it, without cross-shard steps"
        ));
    }
    let bank = demo.party(&format!("bank{suffix}"), &first).await?;
    let alice = demo.party(&format!("alice{suffix}"), &first).await?;
    let bob = demo.party(&format!("bob{suffix}"), &second).await?;

    let uploaded = admin
        .upload_package(IOU_PACKAGE.as_bytes().to_vec())
        .await?;
    demo.step_done(
        &format!(
            "uploaded package {} ({})",
            uploaded.name, uploaded.package_id
        ),
        json!(uploaded),
    )?;

    let usd = demo.issue(&bank, &alice, "USD", "100.0").await?;
    let eur = demo.issue(&bank, &bob, "EUR", "150.0").await?;

    let r = demo
        .exercise(&alice, IOU, &usd, "Transfer", json!({ "newOwner": bob }))
        .await?;
    demo.show(&format!("{alice} lends {bob} her 100.0 USD (Transfer)"), &r)?;

    let r = demo
        .create(&bob, IOU, iou(&bob, &alice, "USD", "100.0"))
        .await?;
    let debt = first_created(&r, IOU)?;
    demo.show(
        &format!("{bob} gives {alice} his own IOU for 100.0 USD"),
        &r,
    )?;

    demo.await_visible(&bob, IOU, &eur).await?;
    let r = demo
        .exercise(&bob, IOU, &eur, "Split", json!({ "splitAmount": "90.0" }))
        .await?;
    let eur90 = r
        .exercise_result
        .as_ref()
        .and_then(|v| v.get(0))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("Split returned no contract ids")?;
    demo.show(
        &format!("{bob} splits his 150.0 EUR into 90.0 and 60.0"),
        &r,
    )?;

    demo.await_visible(&alice, IOU, &debt).await?;
    let proposal = json!({
        "proposer": alice,
        "counterparty": bob,
        "offeredCid": debt,
        "wantedIssuer": bank,
        "wantedCurrency": "EUR",
        "wantedAmount": "90.0",
    });
    let r = demo.create(&alice, SWAP, proposal).await?;
    let proposal = first_created(&r, SWAP)?;
    demo.show(
        &format!("{alice} proposes to swap {bob}'s IOU for 90.0 EUR issued by {bank}"),
        &r,
    )?;

    demo.await_visible(&bob, SWAP, &proposal).await?;
    let r = demo
        .exercise(
            &bob,
            SWAP,
            &proposal,
            "Accept",
            json!({ "counterCid": eur90 }),
        )
        .await?;
    let result = r.exercise_result.clone().unwrap_or(Value::Null);
    let (returned, paid) = match (result["offered"].as_str(), result["counter"].as_str()) {
        (Some(o), Some(c)) => (o.to_owned(), c.to_owned()),
        _ => bail!("Accept returned {result}, not {{offered, counter}}"),
    };
    demo.show(
        &format!("{bob} accepts: his IOU comes back to him, {alice} gets 90.0 EUR, atomically"),
        &r,
    )?;

    let r = demo
        .exercise(&bob, IOU, &returned, "Archive", json!({}))
        .await?;
    demo.show(&format!("{bob} tears up his repaid IOU (Archive)"), &r)?;

    // The other shards commit the swap on their own schedule.
    demo.await_visible(&alice, IOU, &paid).await?;
    for party in [&bank, &alice, &bob] {
        demo.print_acs(party).await?;
    }
    if !demo.json {
        println!("demo complete");
    }
    Ok(())
}

fn iou(issuer: &str, owner: &str, currency: &str, amount: &str) -> Value {
    json!({ "issuer": issuer, "owner": owner, "currency": currency, "amount": amount })
}

fn first_created(r: &TransactionResult, template: &str) -> anyhow::Result<String> {
    r.created_of(template)
        .first()
        .map(|s| (*s).to_owned())
        .with_context(|| format!("transaction {} created no {template}", r.update_id))
}

impl Demo {
    fn note(&self, text: &str) {
        if !self.json {
            println!("note: {text}");
        }
    }

    fn step_done(&mut self, title: &str, value: Value) -> anyhow::Result<()> {
        self.step += 1;
        if self.json {
            json_line(&json!({ "step": self.step, "title": title, "result": value }))?;
        } else {
            println!("[{}] {title}", self.step);
        }
        Ok(())
    }

    fn show(&mut self, title: &str, r: &TransactionResult) -> anyhow::Result<()> {
        self.step_done(title, serde_json::to_value(r)?)?;
        if !self.json {
            print_lines(
                &result_lines(r)
                    .iter()
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>(),
            );
        }
        Ok(())
    }

    /// The party `name`, allocated on `shard` unless it exists (then reused wherever it is).
    async fn party(&mut self, name: &str, shard: &str) -> anyhow::Result<String> {
        let existing = self.network.parties().await?;
        let (details, how) = match existing.into_iter().find(|p| p.party == name) {
            Some(p) => (p, "reusing"),
            None => {
                let client = self.network.client_for_shard(shard).await?;
                match client.allocate_party(name).await {
                    Ok(p) => (p, "allocated"),
                    // Allocated concurrently by someone else: reuse it.
                    Err(e) if e.code() == tonic::Code::AlreadyExists => {
                        let shard = self.network.shard_of(name).await?;
                        (
                            crate::types::PartyDetails {
                                party: name.to_owned(),
                                shard,
                                is_local: false,
                            },
                            "reusing",
                        )
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("allocating party {name}"));
                    }
                }
            }
        };
        if details.shard != shard {
            self.note(&format!(
                "{name} lives on {}, not {shard}: the story uses it there",
                details.shard
            ));
        }
        self.step_done(
            &format!("{how} party {name} on {}", details.shard),
            json!(details),
        )?;
        let token = self.network.party_token(&[name])?;
        let client = self
            .network
            .client_for_shard_with_token(&details.shard, &token)
            .await?;
        self.clients.insert(name.to_owned(), client);
        Ok(name.to_owned())
    }

    fn client(&self, party: &str) -> Result<&LedgerClient, LedgerError> {
        self.clients
            .get(party)
            .ok_or_else(|| LedgerError::NotFound(format!("no client for party {party}")))
    }

    async fn create(
        &self,
        party: &str,
        template: &str,
        payload: Value,
    ) -> anyhow::Result<TransactionResult> {
        self.client(party)?
            .create(party, template, payload)
            .await
            .with_context(|| format!("{party} creating a {template}"))
    }

    async fn exercise(
        &self,
        party: &str,
        template: &str,
        cid: &str,
        choice: &str,
        argument: Value,
    ) -> anyhow::Result<TransactionResult> {
        self.client(party)?
            .exercise(party, template, cid, choice, argument)
            .await
            .with_context(|| format!("{party} exercising {choice} on {template} {}", short(cid)))
    }

    async fn issue(
        &mut self,
        issuer: &str,
        owner: &str,
        currency: &str,
        amount: &str,
    ) -> anyhow::Result<String> {
        let r = self
            .create(issuer, IOU, iou(issuer, owner, currency, amount))
            .await?;
        let cid = first_created(&r, IOU)?;
        self.show(
            &format!("{issuer} issues {owner} an Iou for {amount} {currency}"),
            &r,
        )?;
        Ok(cid)
    }

    /// Waits until `party`'s shard has committed contract `cid` (a shard commits a
    /// transaction when it processes the verdict, independently of the submitter's).
    async fn await_visible(&self, party: &str, template: &str, cid: &str) -> anyhow::Result<()> {
        let client = self.client(party)?;
        let filter = Filter::party(party).template(template);
        let deadline = Instant::now() + VISIBILITY_TIMEOUT;
        loop {
            let acs = client.active_contracts(&filter).await?;
            if acs.contracts.iter().any(|c| c.contract_id == cid) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{party}'s shard has not committed {template} {cid} within {:?}; is every \
                     node of the network running?",
                    VISIBILITY_TIMEOUT
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn print_acs(&self, party: &str) -> anyhow::Result<()> {
        let acs = self
            .client(party)?
            .active_contracts(&Filter::party(party))
            .await?;
        if self.json {
            json_line(&json!({ "party": party, "active_contracts": acs }))?;
        } else {
            println!("active contracts of {party} ({}):", acs.contracts.len());
            for c in &acs.contracts {
                println!("    {}", contract_line(c));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_package_defines_the_story_templates() {
        assert!(IOU_PACKAGE.contains("name = \"iou\""));
        for t in [
            "[templates.Iou]",
            "[templates.SwapProposal]",
            "choices.Accept]",
            "choices.Split]",
        ] {
            assert!(IOU_PACKAGE.contains(t), "{t}");
        }
    }

    #[tokio::test]
    async fn fails_clearly_when_the_network_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let args = DemoArgs {
            suffix: None,
            fresh: false,
            common: CommonArgs {
                network: dir.path().join("network.json"),
                json: false,
            },
        };
        let e = run_demo(args.clone()).await.unwrap_err();
        assert!(
            format!("{e:#}").contains("is the network running?"),
            "{e:#}"
        );

        // A file left behind by a network that is gone: nothing listens on its port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            &args.common.network,
            format!(
                r#"{{"participants":[{{"name":"p1","shard":"shard-1","grpc":"http://127.0.0.1:{port}"}}],
                   "auth":{{"algorithm":"HS256","secret":"s3cret-0123456789abcdef"}}}}"#
            ),
        )
        .unwrap();
        let e = run_demo(args).await.unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("not running or not reachable"), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    }
}
