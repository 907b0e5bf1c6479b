//! Layered configuration, the same for every role: the role's defaults, then its TOML file,
//! then `ORDO_<ROLE>_…` environment variables, then command-line flags. The result is the
//! role's typed config; the caller validates it before anything starts.

use std::path::Path;

use anyhow::{Context, bail};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Loads `T` from `T::default()` < `file` < environment variables named `env_prefix` +
/// upper-cased field name (e.g. `ORDO_SEQUENCER_DATABASE_URL`) < `overrides` (a struct whose
/// unset fields serialise to nothing).
///
/// A missing or unreadable file, a TOML syntax error, an unknown key or a value of the wrong
/// type is an error that names the key and where it came from.
pub fn load<T, O>(file: &Path, env_prefix: &str, overrides: &O) -> anyhow::Result<T>
where
    T: DeserializeOwned + Serialize + Default,
    O: Serialize,
{
    // figment skips a missing file silently; an operator who names one means it.
    if let Err(e) = std::fs::metadata(file) {
        bail!(
            "cannot read config file {}: {e}; pass an existing TOML file with --config \
             (examples/sequencer.toml is a starting point)",
            file.display()
        );
    }
    let defaults = Figment::from(Serialized::defaults(T::default()));
    let env = TypedEnv::new(env_prefix, &defaults);
    defaults
        .merge(Toml::file_exact(file))
        .merge(env)
        .merge(Serialized::defaults(overrides))
        .extract()
        .with_context(|| format!("bad configuration (file {})", file.display()))
}

/// `PREFIX_<KEY>` environment variables. figment's `Env` parses every value as TOML-ish
/// (`ADMIN_TOKEN=123456` becomes a number and then fails to be a string); here a key whose
/// default is a string always takes the variable's text verbatim, and every other key is
/// parsed as `Env` would (numbers, booleans, arrays).
struct TypedEnv {
    env: Env,
    string_keys: Vec<String>,
}

impl TypedEnv {
    fn new(prefix: &str, defaults: &Figment) -> Self {
        let string_keys = defaults
            .data()
            .ok()
            .and_then(|mut profiles| profiles.remove(&Profile::Default))
            .map(|dict| {
                dict.into_iter()
                    .filter(|(_, v)| matches!(v, Value::String(..)))
                    .map(|(k, _)| k)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            env: Env::prefixed(prefix),
            string_keys,
        }
    }
}

impl Provider for TypedEnv {
    fn metadata(&self) -> Metadata {
        self.env.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, text) in self.env.iter() {
            let key = key.as_str().to_ascii_lowercase();
            let value = if self.string_keys.contains(&key) {
                Value::from(text)
            } else {
                text.parse()
                    .unwrap_or_else(|never: std::convert::Infallible| match never {})
            };
            dict.insert(key, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use figment::Jail;
    use ordo_sequencer::SequencerConfig;

    use super::*;
    use crate::cli::SequencerOverrides;

    const PREFIX: &str = "ORDO_SEQUENCER_";

    fn load_seq(file: &str, overrides: &SequencerOverrides) -> anyhow::Result<SequencerConfig> {
        load(&PathBuf::from(file), PREFIX, overrides)
    }

    /// Jail runs the closure in a fresh temporary directory with a private environment.
    #[allow(clippy::result_large_err)] // figment::Error is Jail's, not ours
    fn jail(f: impl FnOnce(&mut Jail) -> anyhow::Result<()>) {
        Jail::expect_with(|j| f(j).map_err(|e| format!("{e:#}").into()));
    }

    #[test]
    fn defaults_then_file_then_env_then_flags() {
        jail(|j| {
            j.create_file(
                "s.toml",
                r#"
                node_name = "from-file"
                database_url = "postgres://file@db/seq"
                grpc_listen = "127.0.0.1:5001"
                max_batch = 100
                token_ttl = 30.5
                "#,
            )?;
            j.set_env("ORDO_SEQUENCER_DATABASE_URL", "postgres://env@db/seq");
            j.set_env("ORDO_SEQUENCER_GRPC_LISTEN", "127.0.0.1:6001");
            j.set_env("ORDO_SEQUENCER_POOL_SIZE", "9");
            let flags = SequencerOverrides {
                grpc_listen: Some(SocketAddr::from(([0, 0, 0, 0], 7001))),
                ..Default::default()
            };
            let c = load_seq("s.toml", &flags)?;
            let d = SequencerConfig::default();
            assert_eq!(
                c.http_listen, d.http_listen,
                "untouched field keeps its default"
            );
            assert_eq!(c.node_name, "from-file", "file beats default");
            assert_eq!(c.max_batch, 100);
            assert_eq!(c.token_ttl, Duration::from_secs_f64(30.5));
            assert_eq!(c.database_url, "postgres://env@db/seq", "env beats file");
            assert_eq!(c.pool_size, 9, "env values are typed");
            assert_eq!(c.grpc_listen.to_string(), "0.0.0.0:7001", "flag beats env");
            Ok(())
        });
    }

    #[test]
    fn env_strings_that_look_like_numbers_stay_strings() {
        jail(|j| {
            j.create_file("s.toml", "")?;
            j.set_env("ORDO_SEQUENCER_ADMIN_TOKEN", "123456");
            let c = load_seq("s.toml", &SequencerOverrides::default())?;
            assert_eq!(c.admin_token, "123456");
            assert_eq!(
                c,
                SequencerConfig {
                    admin_token: "123456".into(),
                    ..Default::default()
                }
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_key_in_file_is_rejected_by_name() {
        jail(|j| {
            j.create_file(
                "s.toml",
                "node_name = \"a\"\ndatabse_url = \"postgres://x\"\n",
            )?;
            let err = load_seq("s.toml", &SequencerOverrides::default()).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("databse_url"), "{msg}");
            assert!(msg.contains("s.toml"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn unknown_env_variable_is_rejected_by_name() {
        jail(|j| {
            j.create_file("s.toml", "")?;
            j.set_env("ORDO_SEQUENCER_MAX_BATCHES", "5");
            let err = load_seq("s.toml", &SequencerOverrides::default()).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("max_batches"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn wrong_type_is_rejected_by_key() {
        jail(|j| {
            j.create_file("s.toml", "max_batch = \"lots\"\n")?;
            let err = load_seq("s.toml", &SequencerOverrides::default()).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("max_batch"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_named() {
        jail(|_| {
            let err = load_seq("nowhere/seq.toml", &SequencerOverrides::default()).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("nowhere/seq.toml"), "{msg}");
            assert!(msg.contains("--config"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sequencer.toml");
        let c: SequencerConfig = Figment::from(Serialized::defaults(SequencerConfig::default()))
            .merge(Toml::file_exact(&example))
            .extract()
            .unwrap_or_else(|e| panic!("{}: {e}", example.display()));
        c.validate().unwrap();
    }
}
