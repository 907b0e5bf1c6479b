//! The sequencer client's metrics, on the `/metrics` of the member that uses it
//! (participants, mediator, topology manager).

use metrics::Unit;

/// Help text, and every series registered at 0 (counters for each known outcome), so that
/// `rate()` works from the start. Called when the client connects.
pub fn describe() {
    metrics::describe_counter!(
        "ordo_sequencer_client_sends_total",
        Unit::Count,
        "Sends by outcome: sequenced, rejected, expired, failed."
    );
    metrics::describe_counter!(
        "ordo_sequencer_client_send_retries_total",
        Unit::Count,
        "Submissions sent again after a call without a definite answer."
    );
    metrics::describe_gauge!(
        "ordo_sequencer_client_healthy_endpoints",
        "Sequencer nodes SERVING and not suspect."
    );
    metrics::describe_counter!(
        "ordo_sequencer_client_suspected_total",
        Unit::Count,
        "Times a sequencer node was found suspect (unanswered call and health check, or no \
         heartbeat)."
    );
    metrics::describe_counter!(
        "ordo_sequencer_client_abandoned_calls_total",
        Unit::Count,
        "Calls given up on a suspect node and retried on another."
    );
    metrics::describe_counter!(
        "ordo_sequencer_client_health_checks_total",
        Unit::Count,
        "Health checks of a late or quiet node by outcome: serving, busy, no_answer."
    );
    metrics::describe_counter!(
        "ordo_sequencer_client_idle_subscriptions_total",
        Unit::Count,
        "Subscriptions moved after neither an event nor a heartbeat for \
         subscription_idle_timeout."
    );
    metrics::describe_counter!(
        "ordo_sequencer_client_resubscriptions_total",
        Unit::Count,
        "Subscriptions opened again on another node, for any reason."
    );
    for outcome in ["sequenced", "rejected", "expired", "failed"] {
        metrics::counter!("ordo_sequencer_client_sends_total", "outcome" => outcome).increment(0);
    }
    for outcome in ["serving", "busy", "no_answer"] {
        metrics::counter!("ordo_sequencer_client_health_checks_total", "outcome" => outcome)
            .increment(0);
    }
    for counter in [
        "ordo_sequencer_client_send_retries_total",
        "ordo_sequencer_client_suspected_total",
        "ordo_sequencer_client_abandoned_calls_total",
        "ordo_sequencer_client_idle_subscriptions_total",
        "ordo_sequencer_client_resubscriptions_total",
    ] {
        metrics::counter!(counter).increment(0);
    }
}
