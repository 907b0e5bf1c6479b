//! The lease's configuration: whose lease, and its timing.

use std::time::Duration;

use ordo_node::config::{ConfigError, Invalid};
use serde::{Deserialize, Serialize};

use crate::state::Timing;

/// One replica's lease on one logical service. Durations are written with their unit in files (`ttl = "3s"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// The logical service (e.g. `participant/shard-3`, `mediator`): the lease row's key.
    pub service: String,
    /// This replica's name, unique among the service's replicas.
    pub holder: String,
    /// How long a taken or renewed lease is valid. A failed active replica is replaced
    /// after at most this long.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub ttl: Duration,
    /// How often the active replica renews, and a passive one tries to acquire.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub renew_period: Duration,
    /// The active replica steps down this long before its lease would expire, to absorb
    /// clock-rate differences between it and the database.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub safety_margin: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            service: String::new(),
            holder: String::new(),
            ttl: Duration::from_secs(3),
            renew_period: Duration::from_secs(1),
            safety_margin: Duration::from_millis(500),
        }
    }
}

impl LeaseConfig {
    /// Default timing for `holder`'s lease on `service`.
    pub fn new(service: impl Into<String>, holder: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            holder: holder.into(),
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|e| e.of("lease"))
    }

    fn check(&self) -> Result<(), Invalid> {
        if self.service.is_empty() {
            return Err(Invalid::new("service", "must name the logical service"));
        }
        if self.holder.is_empty() {
            return Err(Invalid::new(
                "holder",
                "must name this replica (unique per service)",
            ));
        }
        if self.renew_period.is_zero() {
            return Err(Invalid::new("renew_period", "must be positive"));
        }
        if self.safety_margin >= self.ttl {
            return Err(Invalid::new(
                "safety_margin",
                format!(
                    "{:?} must be below ttl ({:?})",
                    self.safety_margin, self.ttl
                ),
            ));
        }
        // At least one renew must be possible before the lease is given up.
        if self.renew_period >= self.ttl - self.safety_margin {
            return Err(Invalid::new(
                "renew_period",
                format!(
                    "{:?} must be below ttl - safety_margin ({:?}); renew a few times per ttl",
                    self.renew_period,
                    self.ttl - self.safety_margin
                ),
            ));
        }
        Ok(())
    }

    pub fn timing(&self) -> Timing {
        Timing {
            ttl: self.ttl,
            renew_period: self.renew_period,
            safety_margin: self.safety_margin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_with_names_are_valid() {
        assert_eq!(LeaseConfig::new("mediator", "m1").validate(), Ok(()));
    }

    #[test]
    fn renew_period_must_fit_inside_the_ttl() {
        let mut c = LeaseConfig::new("mediator", "m1");
        c.renew_period = Duration::from_millis(2500);
        assert_eq!(c.validate().map_err(|e| e.field), Err("renew_period"));
        c.renew_period = Duration::from_secs(1);
        c.safety_margin = Duration::from_secs(3);
        assert_eq!(c.validate().map_err(|e| e.field), Err("safety_margin"));
        assert_eq!(
            LeaseConfig::default().validate().map_err(|e| e.field),
            Err("service")
        );
    }
}
