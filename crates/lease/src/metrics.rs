//! The lease's metrics (every active-passive role: participants, mediator, topology
//! manager), labelled by `service` (the shard's name, `mediator`, `topology`).

use metrics::Unit;

/// The help text of the lease's metrics.
pub fn describe() {
    metrics::describe_gauge!(
        "ordo_lease_role",
        "1 while this replica holds its service's lease (active), 0 while passive."
    );
    metrics::describe_counter!(
        "ordo_lease_failovers_total",
        Unit::Count,
        "Terms this replica began as the active one (lease acquisitions)."
    );
    metrics::describe_gauge!(
        "ordo_lease_since_renew_seconds",
        Unit::Seconds,
        "Time since the active replica last renewed its lease (0 while passive)."
    );
    metrics::describe_histogram!(
        "ordo_lease_renew_seconds",
        Unit::Seconds,
        "Duration of one lease renewal transaction."
    );
    metrics::describe_histogram!(
        "ordo_lease_takeover_seconds",
        Unit::Seconds,
        "From winning the lease to serving (the new term resumed from the database)."
    );
    metrics::describe_gauge!(
        "ordo_replica_lag_seconds",
        Unit::Seconds,
        "How far the active replica's last processed event trails the wall clock."
    );
}

/// Registers `service`'s lease series before anything happened: passive, no failover
/// yet, empty histograms. (`ordo_replica_lag_seconds` appears once the replica processed
/// an event: there is no lag to report before.)
pub fn register(service: &str) {
    describe();
    let service = service.to_owned();
    metrics::gauge!("ordo_lease_role", "service" => service.clone()).set(0.0);
    metrics::gauge!("ordo_lease_since_renew_seconds", "service" => service.clone()).set(0.0);
    metrics::counter!("ordo_lease_failovers_total", "service" => service.clone()).increment(0);
    let _ = metrics::histogram!("ordo_lease_renew_seconds", "service" => service.clone());
    let _ = metrics::histogram!("ordo_lease_takeover_seconds", "service" => service);
}
