//! The nodes' configuration error, and the checks and serde helpers their configurations
//! share. A check returns an [`Invalid`] naming the field; the node's `validate` turns it
//! into a [`ConfigError`] naming the node ([`Invalid::of`]).

use std::net::SocketAddr;
use std::time::Duration;

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

/// Durations in configuration files, always written with their unit (humantime:
/// `"500ms"`, `"30s"`, `"1m 30s"`, `"7days"`): `#[serde(with =
/// "ordo_node::config::HumanDuration")]`. A bare number is refused, since `request_timeout
/// = 30` could mean seconds or milliseconds. A type rather than a module, so that the
/// JSON schema of a config (`ordo config schema`) shows such a field as a duration string.
pub struct HumanDuration;

/// What a duration field expects, as its error messages say.
pub const DURATION_FORM: &str =
    "a duration with its unit, such as \"30s\" or \"500ms\" (a bare number is not accepted)";

impl HumanDuration {
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(DURATION_FORM)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
        humantime::parse_duration(text.trim()).map_err(|e| {
            E::custom(format!(
                "{text:?} is not a duration ({e}): expected {DURATION_FORM}"
            ))
        })
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
        Err(E::invalid_type(serde::de::Unexpected::Unsigned(n), &self))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Duration, E> {
        Err(E::invalid_type(serde::de::Unexpected::Signed(n), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Duration, E> {
        Err(E::invalid_type(serde::de::Unexpected::Float(n), &self))
    }
}

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "duration",
            "description": "A duration with its unit (humantime), e.g. \"500ms\", \"30s\", \"1m 30s\", \"7days\"."
        })
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

    #[derive(Debug, serde::Deserialize, serde::Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Timed {
        #[serde(with = "HumanDuration")]
        ttl: Duration,
    }

    #[test]
    fn durations_are_read_with_their_unit() {
        for (text, expected) in [
            ("250ms", Duration::from_millis(250)),
            ("3s", Duration::from_secs(3)),
            ("1m", Duration::from_secs(60)),
            ("1m 30s", Duration::from_secs(90)),
            ("7days", Duration::from_secs(7 * 24 * 3600)),
            ("0s", Duration::ZERO),
        ] {
            let t: Timed = toml::from_str(&format!("ttl = {text:?}")).unwrap();
            assert_eq!(t.ttl, expected, "{text}");
        }
    }

    #[test]
    fn a_bare_number_or_a_unitless_string_is_refused_naming_the_field_and_the_form() {
        for text in [
            "ttl = 3",
            "ttl = 2.5",
            "ttl = -1",
            "ttl = \"3\"",
            "ttl = \"soon\"",
        ] {
            let e = toml::from_str::<Timed>(text).unwrap_err().to_string();
            assert!(e.contains("ttl"), "{text}: {e}");
            assert!(e.contains("\"30s\" or \"500ms\""), "{text}: {e}");
        }
        let e = serde_json::from_str::<Timed>(r#"{"ttl": 3000}"#).unwrap_err();
        assert!(
            e.to_string().contains("a bare number is not accepted"),
            "{e}"
        );
    }

    #[test]
    fn durations_round_trip_as_humantime_text() {
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(3),
            Duration::from_secs(90),
            Duration::from_secs(7 * 24 * 3600),
            Duration::from_micros(1_500),
        ] {
            let text = serde_json::to_string(&Timed { ttl: d }).unwrap();
            assert_eq!(
                serde_json::from_str::<Timed>(&text).unwrap().ttl,
                d,
                "{text}"
            );
        }
        assert_eq!(
            serde_json::to_string(&Timed {
                ttl: Duration::from_millis(1500)
            })
            .unwrap(),
            r#"{"ttl":"1s 500ms"}"#
        );
    }
}
