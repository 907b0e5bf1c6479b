//! The gateway's metrics (its `/metrics`).

use metrics::Unit;

/// Every reason the cache of a shard is filled from scratch (`cache::feed::Reason`).
const REBUILDS: [&str; 5] = [
    "file_missing",
    "file_corrupt",
    "new_shard",
    "ahead_of_shard",
    "pruned",
];

/// Help text, and the series of the network's `shards` registered before the cache reads
/// anything (offset 0, no rebuild). The request metrics appear with each route's first
/// request (their labels are the route and the status).
pub fn describe(shards: &[String]) {
    ordo_node::metrics::describe();
    ordo_node::metrics::throttled(&["token_requests"]);
    metrics::describe_counter!(
        "ordo_gateway_requests_total",
        Unit::Count,
        "HTTP requests by route (the path pattern, e.g. /v1/create) and HTTP status."
    );
    metrics::describe_histogram!(
        "ordo_gateway_request_duration_seconds",
        Unit::Seconds,
        "HTTP requests from arrival to response, by route."
    );
    metrics::describe_gauge!(
        "ordo_gateway_cache_offset",
        "The offset of each shard's ledger up to which the gateway's cache holds it."
    );
    metrics::describe_gauge!(
        "ordo_gateway_cache_contracts",
        "Active contracts held in the gateway's cache (all shards)."
    );
    metrics::describe_counter!(
        "ordo_gateway_cache_rebuilds_total",
        Unit::Count,
        "Times a shard's cache was filled from scratch, by shard and reason (file_missing, \
         file_corrupt, new_shard, ahead_of_shard, pruned)."
    );
    for shard in shards {
        metrics::gauge!("ordo_gateway_cache_offset", "shard" => shard.clone()).set(0.0);
        for reason in REBUILDS {
            metrics::counter!("ordo_gateway_cache_rebuilds_total", "shard" => shard.clone(), "reason" => reason)
                .increment(0);
        }
    }
}
