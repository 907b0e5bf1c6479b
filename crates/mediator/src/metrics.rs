//! The mediator's Prometheus metrics (served on the HTTP port's `/metrics`).

use metrics::Unit;

use crate::verdict::Decision;

/// Every alarm the mediator raises (docs/security.md#alarms).
const ALARMS: [&str; 17] = [
    "malformed",
    "signer_not_sender",
    "unknown_signer",
    "bad_signature",
    "not_for_mediator",
    "topology_not_from_manager",
    "topology_refused",
    "malformed_informee_tree",
    "not_submitter",
    "not_a_participant",
    "duplicate_request",
    "root_hash_mismatch",
    "no_parties",
    "not_confirming",
    "not_host",
    "duplicate",
    "poison_event",
];

/// Help text, and the series an alert may ask about registered before the first request:
/// no request pending, no verdict, no alarm, empty histograms.
pub fn describe() {
    ordo_node::metrics::describe();
    ordo_lease::metrics::describe();
    metrics::describe_gauge!(
        "ordo_mediator_pending_requests",
        "Confirmation requests opened and not yet decided."
    );
    metrics::describe_counter!(
        "ordo_mediator_verdicts_total",
        Unit::Count,
        "Verdicts committed, by outcome: approve, reject, timeout."
    );
    metrics::describe_histogram!(
        "ordo_mediator_decision_latency_seconds",
        Unit::Seconds,
        "From a request's sequencing to the event that decided it (sequencer time)."
    );
    metrics::describe_counter!(
        "ordo_mediator_ignored_messages_total",
        Unit::Count,
        "Messages ignored, by reason (late and unknown_request from honest members, the \
         alarm kinds otherwise)."
    );
    metrics::describe_counter!(
        "ordo_mediator_time_proofs_total",
        Unit::Count,
        "Time proofs sent to move the sequencer's clock for pending timeouts."
    );
    metrics::describe_counter!(
        "ordo_mediator_outbox_sent_total",
        Unit::Count,
        "Verdicts and other outbox messages sent to the sequencer."
    );
    metrics::describe_histogram!(
        "ordo_mediator_batch_events",
        Unit::Count,
        "Events per processing batch of the active mediator."
    );
    metrics::describe_histogram!(
        "ordo_mediator_batch_seconds",
        Unit::Seconds,
        "From checking a batch's signatures to the end of its commit."
    );
    metrics::describe_counter!(
        "ordo_mediator_pruned_verdicts_total",
        Unit::Count,
        "Decided requests removed by retention."
    );
    pending_requests(0);
    for outcome in ["approve", "reject", "timeout"] {
        metrics::counter!("ordo_mediator_verdicts_total", "outcome" => outcome).increment(0);
    }
    for reason in ["late", "unknown_request"] {
        metrics::counter!("ordo_mediator_ignored_messages_total", "reason" => reason).increment(0);
    }
    for counter in [
        "ordo_mediator_time_proofs_total",
        "ordo_mediator_outbox_sent_total",
        "ordo_mediator_pruned_verdicts_total",
    ] {
        metrics::counter!(counter).increment(0);
    }
    for histogram in [
        "ordo_mediator_decision_latency_seconds",
        "ordo_mediator_batch_events",
        "ordo_mediator_batch_seconds",
    ] {
        let _ = metrics::histogram!(histogram);
    }
    ordo_node::metrics::describe_alarms("ordo_mediator_alarms_total", &ALARMS);
}

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
