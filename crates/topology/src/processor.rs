//! The manager's own subscription: it is a member too, so its broadcasts come back to it
//! in sequencing order. Each of its topology transactions takes effect here, at its
//! sequencing timestamp: the state, the transaction row and the cursor are written in one
//! database transaction (fenced by the replica's lease), then published to the waiting
//! admin call. It runs only within the active replica's term.

use std::sync::Arc;
use std::time::Duration;

use ordo_core::{MemberId, SequencedEvent, Timestamp};
use ordo_protocol::{Message, SignedMessage, TopologyTransaction};
use ordo_sequencer_client::SequencerClient;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::TopologyError;
use crate::manager::{Manager, Progress};
use crate::plan;
use crate::store::{self, Effect};

const RETRY: Duration = Duration::from_millis(500);

/// Processes events until `stop` (`Ok`). On a failure it reloads the state and cursor
/// from the database and resubscribes from there, so an event is applied exactly once —
/// except a failed fence: this replica was deposed, so it returns the error at once.
pub async fn run(
    manager: &Manager,
    client: SequencerClient,
    progress: &watch::Sender<Progress>,
    stop: CancellationToken,
) -> Result<(), TopologyError> {
    let (processed_tx, processed_rx) = watch::channel(Timestamp::MIN);
    let acks = tokio::spawn(acknowledge(
        client.clone(),
        processed_rx,
        manager.config.acknowledge_interval,
        stop.clone(),
    ));
    let outcome = loop {
        match follow(manager, &client, progress, &processed_tx, &stop).await {
            Ok(()) => break Ok(()),
            Err(e @ TopologyError::Fenced(_)) => break Err(e),
            // Postgres refusing the data of the manager's own transaction: retrying meets it
            // again, but skipping it would fork the manager's topology from every
            // member's, so it is retried, loudly.
            Err(TopologyError::Database(e)) if ordo_node::db::is_data_error(&e) => {
                let after = *processed_tx.borrow();
                alarm(
                    "poison_event",
                    after,
                    &manager.member,
                    &format!("writing the event after {after} failed for its data; retrying: {e}"),
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "topology subscription failed; resuming from the database cursor")
            }
        }
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
            () = tokio::time::sleep(RETRY) => {}
        }
    };
    acks.abort();
    outcome
}

/// Follows the subscription from the stored cursor; returns `Ok` on stop.
async fn follow(
    manager: &Manager,
    client: &SequencerClient,
    progress: &watch::Sender<Progress>,
    processed: &watch::Sender<Timestamp>,
    stop: &CancellationToken,
) -> Result<(), TopologyError> {
    let (state, cursor) = store::load_state(&manager.pool).await?;
    progress.send_modify(|p| p.state = Arc::new(state));
    let mut subscription = client.subscribe(cursor);
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            event = subscription.next() => event.map_err(|e| TopologyError::Unavailable(e.to_string()))?,
        };
        let at = event.timestamp;
        process(manager, progress, event).await?;
        manager.replica.processed(at);
        let _ = processed.send(at);
    }
}

async fn process(
    manager: &Manager,
    progress: &watch::Sender<Progress>,
    event: SequencedEvent,
) -> Result<(), TopologyError> {
    let at = event.timestamp;
    let sender = event.sender.clone();
    let tx = if event.sender == manager.member {
        let member = manager.member.clone();
        let key = manager.key.public();
        tokio::task::spawn_blocking(move || own_transaction(&member, &key, &event))
            .await
            .map_err(|e| TopologyError::Internal(format!("verification task: {e}")))?
    } else {
        None
    };

    let Some(tx) = tx else {
        if sender != manager.member {
            // No member sends the topology manager anything; its own broadcasts are all it
            // processes.
            alarm(
                "unexpected_message",
                at,
                &sender,
                "an event from another member",
            );
        }
        return store::record(&manager.pool, &manager.replica, at, Effect::None).await;
    };
    let mut next = (*progress.borrow().state).clone();
    match next.apply(&tx, at) {
        Ok(()) => {
            store::record(
                &manager.pool,
                &manager.replica,
                at,
                Effect::Applied {
                    tx: &tx,
                    state: &next,
                },
            )
            .await?;
            metrics::gauge!("ordo_topology_serial").set(next.serial as f64);
            metrics::counter!("ordo_topology_changes_total", "kind" => plan::kind(&tx.change))
                .increment(1);
            tracing::info!(serial = tx.serial, kind = plan::kind(&tx.change), %at, "topology transaction applied");
            progress.send_modify(|p| p.state = Arc::new(next));
        }
        Err(e) => {
            // Every member's fold refuses it the same way, so the topology is unchanged
            // everywhere; the proposal is dropped.
            let reason = e.to_string();
            tracing::error!(serial = tx.serial, error = %reason, "own topology transaction refused by the fold");
            let effect = Effect::Refused {
                serial: tx.serial,
                reason: &reason,
            };
            store::record(&manager.pool, &manager.replica, at, effect).await?;
            progress.send_modify(|p| p.refused = Some((tx.serial, at, reason)));
        }
    }
    Ok(())
}

/// Logs and counts what the manager's own subscription should never carry
/// (`ordo_topology_alarms_total{kind}`).
fn alarm(kind: &'static str, at: Timestamp, sender: &MemberId, details: &str) {
    ordo_node::alarm::raise("ordo_topology_alarms_total", kind, at, sender, details);
}

/// The topology transaction of one of our own events, signature checked. Anything else
/// (malformed, wrongly signed, not a topology message) is skipped with an alarm: it cannot
/// be ours.
fn own_transaction(
    member: &MemberId,
    key: &ordo_core::PublicKey,
    event: &SequencedEvent,
) -> Option<TopologyTransaction> {
    let mut found = None;
    for envelope in &event.envelopes {
        let at = event.timestamp;
        let message = match SignedMessage::decode(&envelope.content) {
            Ok(m) => m,
            Err(e) => {
                alarm("malformed_message", at, member, &e.to_string());
                continue;
            }
        };
        if message.signer != *member {
            alarm(
                "signer_not_sender",
                at,
                member,
                &format!("a message signed by {}", message.signer),
            );
            continue;
        }
        if let Err(e) = message.verify(key) {
            alarm("bad_signature", at, member, &e.to_string());
            continue;
        }
        match message.message {
            Message::Topology(tx) if found.is_none() => found = Some(tx),
            Message::Topology(tx) => alarm(
                "duplicate_topology_transaction",
                at,
                member,
                &format!(
                    "a second topology transaction (serial {}) in one event",
                    tx.serial
                ),
            ),
            _ => {}
        }
    }
    found
}

/// Acknowledges the last processed timestamp now and then, so the sequencer can prune.
async fn acknowledge(
    client: SequencerClient,
    mut processed: watch::Receiver<Timestamp>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut acknowledged = Timestamp::MIN;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let last = *processed.borrow_and_update();
        if last > acknowledged {
            match client.acknowledge(last).await {
                Ok(()) => acknowledged = last,
                Err(e) => tracing::debug!(error = %e, "acknowledgement failed; retried later"),
            }
        }
    }
}
