//! The nodes' configuration error, and the checks and serde helpers their configurations
//! share. A check returns an [`Invalid`] naming the field; the node's `validate` turns it
//! into a [`ConfigError`] naming the node ([`Invalid::of`]).

use std::net::SocketAddr;

/// A configuration value that cannot work, named with what to do about it.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {node} configuration: {field}: {reason}")]
pub struct ConfigError {
    /// Whose configuration: `sequencer`, `mediator`, `topology manager`, `participant`.
    pub node: &'static str,
    pub field: &'static str,
    pub reason: String,
}

/// A configuration value that cannot work, before it is known whose configuration it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The error in `node`'s configuration.
    pub fn of(self, node: &'static str) -> ConfigError {
        ConfigError {
            node,
            field: self.field,
            reason: self.reason,
        }
    }
}

/// `node_name`: a member or node name, `[a-z0-9._-]{1,64}`.
pub fn node_name(name: &str) -> Result<(), Invalid> {
    ordo_core::ids::validate_name(name)
        .map_err(|_| Invalid::new("node_name", "use 1 to 64 of [a-z0-9._-]"))
}

/// `database_url`: a `postgres://` or `postgresql://` URL.
pub fn database_url(url: &str) -> Result<(), Invalid> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(())
    } else {
        Err(Invalid::new("database_url", "expected a postgres:// URL"))
    }
}

/// `grpc_listen` and `http_listen` must be different sockets (port 0 binds two anyway).
pub fn listen_addrs(grpc: SocketAddr, http: SocketAddr) -> Result<(), Invalid> {
    if grpc == http && grpc.port() != 0 {
        return Err(Invalid::new("http_listen", "must differ from grpc_listen"));
    }
    Ok(())
}

/// `sequencers`: at least one endpoint (else `when_empty`), each `http://` or `https://`.
pub fn sequencer_endpoints(endpoints: &[String], when_empty: &str) -> Result<(), Invalid> {
    if endpoints.is_empty() {
        return Err(Invalid::new("sequencers", when_empty));
    }
    match endpoints
        .iter()
        .find(|s| !(s.starts_with("http://") || s.starts_with("https://")))
    {
        Some(bad) => Err(Invalid::new(
            "sequencers",
            format!("{bad:?} is not an http:// or https:// endpoint"),
        )),
        None => Ok(()),
    }
}

/// The client side of a node's `[tls]` section (its CA and its own certificate), loaded
/// now so that bad files are reported as the `tls` field; `None` without one.
pub fn client_tls(
    tls: Option<&crate::tls::TlsConfig>,
) -> Result<Option<crate::tls::ClientTls>, Invalid> {
    tls.map(crate::tls::ClientTls::of_node)
        .transpose()
        .map_err(|e| Invalid::new("tls", e.to_string()))
}

/// Durations in configuration files as whole or fractional seconds (`request_timeout =
/// 2.5`): `#[serde(with = "ordo_node::config::secs")]`.
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// Durations in configuration files as whole milliseconds (`time_proof_interval = 200`):
/// `#[serde(with = "ordo_node::config::millis")]`.
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_name_the_field() {
        assert_eq!(node_name("seq-1"), Ok(()));
        assert_eq!(node_name("Bad Name").unwrap_err().field, "node_name");
        assert_eq!(database_url("postgresql://h/db"), Ok(()));
        assert_eq!(
            database_url("mysql://x"),
            Err(Invalid::new("database_url", "expected a postgres:// URL"))
        );
        let a = SocketAddr::from(([127, 0, 0, 1], 4001));
        let zero = SocketAddr::from(([127, 0, 0, 1], 0));
        assert_eq!(listen_addrs(a, a).unwrap_err().field, "http_listen");
        assert_eq!(listen_addrs(zero, zero), Ok(()));
        assert_eq!(
            node_name("Bad Name")
                .unwrap_err()
                .of("mediator")
                .to_string(),
            "invalid mediator configuration: node_name: use 1 to 64 of [a-z0-9._-]"
        );
    }

    #[test]
    fn endpoints_must_be_listed_and_http() {
        assert_eq!(
            sequencer_endpoints(&[], "list them"),
            Err(Invalid::new("sequencers", "list them"))
        );
        let e = sequencer_endpoints(&["127.0.0.1:4001".into()], "x").unwrap_err();
        assert_eq!(e.field, "sequencers");
        assert!(e.reason.contains("\"127.0.0.1:4001\""), "{e:?}");
        assert_eq!(
            sequencer_endpoints(&["http://a:1".into(), "https://b:2".into()], "x"),
            Ok(())
        );
    }
}
