//! The mediator's Prometheus metrics (served on the HTTP port's `/metrics`).

use crate::verdict::Decision;

pub fn pending_requests(n: usize) {
    metrics::gauge!("ordo_mediator_pending_requests").set(n as f64);
}

/// After the decision was committed.
pub fn decided(d: &Decision) {
    metrics::counter!("ordo_mediator_verdicts_total", "outcome" => d.outcome_label()).increment(1);
    // Sequencer time from the request to the event that decided it.
    let latency = (d.decided_at.micros() - d.request.micros()).max(0) as f64 / 1e6;
    metrics::histogram!("ordo_mediator_decision_latency_seconds").record(latency);
}

pub fn ignored(reason: &'static str) {
    metrics::counter!("ordo_mediator_ignored_messages_total", "reason" => reason).increment(1);
}

/// Something no honest member sends (DESIGN §4, *Trust*): logged at error level and counted
/// by kind. Processing goes on.
pub fn alarm(
    kind: &'static str,
    at: ordo_core::Timestamp,
    sender: &ordo_core::MemberId,
    details: &str,
) {
    ordo_node::alarm::raise("ordo_mediator_alarms_total", kind, at, sender, details);
}

pub fn time_proof_sent() {
    metrics::counter!("ordo_mediator_time_proofs_total").increment(1);
}

pub fn outbox_sent() {
    metrics::counter!("ordo_mediator_outbox_sent_total").increment(1);
}

/// A batch of events processed and committed (or not): how many, and how long from the
/// checks to the end of the commit.
pub fn batch(events: usize, took: std::time::Duration) {
    metrics::histogram!("ordo_mediator_batch_events").record(events as f64);
    metrics::histogram!("ordo_mediator_batch_seconds").record(took.as_secs_f64());
}
