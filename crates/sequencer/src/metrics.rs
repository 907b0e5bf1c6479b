//! The sequencer node's metrics, each labelled by the `node` that exports it.

use metrics::Unit;

/// Help text, and the node's series registered before its first send, subscription or
/// group commit.
pub fn describe(node: &str) {
    ordo_node::metrics::describe();
    ordo_node::metrics::throttled(&["member_sends", "member_send_bytes", "unauthenticated"]);
    metrics::describe_counter!(
        "ordo_sequencer_sends_total",
        Unit::Count,
        "Submissions by outcome: sequenced, duplicate, expired, pruned, or the gRPC code of a \
         rejection (e.g. invalidargument)."
    );
    metrics::describe_histogram!(
        "ordo_sequencer_batch_submissions",
        Unit::Count,
        "Submissions per group commit."
    );
    metrics::describe_histogram!(
        "ordo_sequencer_commit_seconds",
        Unit::Seconds,
        "Duration of one group-commit transaction."
    );
    metrics::describe_gauge!(
        "ordo_sequencer_head_timestamp_seconds",
        Unit::Seconds,
        "Latest sequenced timestamp this node knows, in seconds since the Unix epoch."
    );
    metrics::describe_gauge!(
        "ordo_sequencer_tail_lag_seconds",
        Unit::Seconds,
        "How far this node's tail reader trails the database clock."
    );
    metrics::describe_gauge!(
        "ordo_sequencer_subscriptions",
        "Open subscriptions on this node."
    );
    metrics::describe_counter!(
        "ordo_sequencer_events_delivered_total",
        Unit::Count,
        "Events delivered to subscribers by this node."
    );
    metrics::describe_gauge!(
        "ordo_sequencer_tail_buffer_bytes",
        Unit::Bytes,
        "Bytes held by the buffer of recent events (bounded by tail_buffer_bytes)."
    );
    let node = node.to_owned();
    for outcome in ["sequenced", "duplicate", "expired"] {
        metrics::counter!("ordo_sequencer_sends_total", "node" => node.clone(), "outcome" => outcome)
            .increment(0);
    }
    metrics::counter!("ordo_sequencer_events_delivered_total", "node" => node.clone()).increment(0);
    metrics::gauge!("ordo_sequencer_subscriptions", "node" => node.clone()).set(0.0);
    metrics::gauge!("ordo_sequencer_tail_buffer_bytes").set(0.0);
    let _ = metrics::histogram!("ordo_sequencer_batch_submissions", "node" => node.clone());
    let _ = metrics::histogram!("ordo_sequencer_commit_seconds", "node" => node);
}

/// The head of the order, a sequencer timestamp in µs, as the gauge's seconds.
pub fn head(node: &str, micros: i64) {
    metrics::gauge!("ordo_sequencer_head_timestamp_seconds", "node" => node.to_owned())
        .set(micros as f64 / 1e6);
}
