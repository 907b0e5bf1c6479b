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

/// [`load_with`], refusing a file with readable secrets as a node does.
#[cfg(test)]
pub fn load<T, O>(file: &Path, env_prefix: &str, overrides: &O) -> anyhow::Result<T>
where
    T: DeserializeOwned + Serialize + Default,
    O: Serialize,
{
    load_with(file, env_prefix, overrides, ReadableSecrets::Refuse)
}

/// What [`load_with`] does with a file that holds secrets others may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadableSecrets {
    /// A node refuses to start from it.
    Refuse,
    /// `ordo config check` warns on stderr: the mode of a file in a repository or a
    /// ConfigMap is not the mode of the file a node will read.
    Warn,
}

/// Loads `T` from `T::default()` < `file` < environment variables named `env_prefix` +
/// upper-cased field name (e.g. `ORDO_SEQUENCER_DATABASE_URL`) < `overrides` (a struct whose
/// unset fields serialise to nothing).
///
/// A missing or unreadable file, a TOML syntax error, an unknown key or a value of the wrong
/// type is an error that names the key and where it came from.
/// A file holding secrets that others may read is refused or warned of (`secrets`).
pub fn load_with<T, O>(
    file: &Path,
    env_prefix: &str,
    overrides: &O,
    secrets: ReadableSecrets,
) -> anyhow::Result<T>
where
    T: DeserializeOwned + Serialize + Default,
    O: Serialize,
{
    // figment skips a missing file silently; an operator who names one means it.
    if let Err(e) = std::fs::metadata(file) {
        bail!(
            "cannot read config file {}: {e}; pass an existing TOML file with --config \
             (examples/ holds a starting point for each role)",
            file.display()
        );
    }
    match (refuse_readable_secrets(file, env_prefix), secrets) {
        (Err(e), ReadableSecrets::Warn) => eprintln!("ordo: warning: {e}"),
        (result, _) => result?,
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

/// Keys whose non-empty value is a secret.
const SECRET_KEYS: &[&str] = &[
    "admin_token",
    "sequencer_admin_token",
    "topology_admin_token",
    "secret",
];

/// Refuses a config file that holds a secret (a token, the HS256 secret, a database URL
/// with a password) when its group or others may read it (DESIGN §8).
fn refuse_readable_secrets(file: &Path, env_prefix: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file)?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    // A file that does not parse is reported by the loader, with its position.
    let Ok(table) = std::fs::read_to_string(file)?.parse::<toml::Table>() else {
        return Ok(());
    };
    let mut found = Vec::new();
    secrets_in(&table, "", &mut found);
    if found.is_empty() {
        return Ok(());
    }
    bail!(
        "config file {} holds secrets ({}) but its mode is {mode:03o}: group and others may \
         read it; chmod 600 it, or give the secrets as {env_prefix}… environment variables",
        file.display(),
        found.join(", ")
    )
}

fn secrets_in(table: &toml::Table, parent: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if parent.is_empty() {
            key.clone()
        } else {
            format!("{parent}.{key}")
        };
        match value {
            toml::Value::Table(inner) => secrets_in(inner, &path, out),
            toml::Value::String(s) if s.is_empty() => {}
            toml::Value::String(s) if key.ends_with("database_url") => {
                // postgres://user:password@host/db
                let userinfo = s
                    .split_once("://")
                    .and_then(|(_, rest)| rest.split_once('@'))
                    .map(|(userinfo, _)| userinfo);
                if userinfo.is_some_and(|u| u.contains(':')) {
                    out.push(path);
                }
            }
            toml::Value::String(_) if SECRET_KEYS.contains(&key.as_str()) => out.push(path),
            _ => {}
        }
    }
}

/// `PREFIX_<KEY>` environment variables; `__` reaches into a table
/// (`ORDO_PARTICIPANT_AUTH__SECRET` sets `auth.secret`). figment's `Env` parses every value
/// as TOML-ish (`ADMIN_TOKEN=123456` becomes a number and then fails to be a string); here
/// a key whose default is a string always takes the variable's text verbatim, and every
/// other key is parsed as `Env` would (numbers, booleans, arrays).
struct TypedEnv {
    env: Env,
    /// Dotted paths of the keys whose default is a string.
    string_keys: Vec<String>,
}

impl TypedEnv {
    fn new(prefix: &str, defaults: &Figment) -> Self {
        let mut string_keys = Vec::new();
        if let Some(dict) = defaults
            .data()
            .ok()
            .and_then(|mut profiles| profiles.remove(&Profile::Default))
        {
            collect_string_keys(&dict, "", &mut string_keys);
        }
        Self {
            env: Env::prefixed(prefix).split("__"),
            string_keys,
        }
    }
}

fn collect_string_keys(dict: &Dict, parent: &str, out: &mut Vec<String>) {
    for (key, value) in dict {
        let path = if parent.is_empty() {
            key.clone()
        } else {
            format!("{parent}.{key}")
        };
        match value {
            Value::String(..) => out.push(path),
            Value::Dict(_, inner) => collect_string_keys(inner, &path, out),
            _ => {}
        }
    }
}

impl Provider for TypedEnv {
    fn metadata(&self) -> Metadata {
        self.env.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        // Each variable nested at its key path. The values stay untagged, so that figment
        // attributes them to this provider and an error names the variable.
        let mut vars = Dict::new();
        for (key, text) in self.env.iter() {
            let key = key.as_str().to_ascii_lowercase();
            let value = if self.string_keys.contains(&key) {
                Value::from(text)
            } else {
                text.parse()
                    .unwrap_or_else(|never: std::convert::Infallible| match never {})
            };
            insert_at(&mut vars, &key.split('.').collect::<Vec<_>>(), value);
        }
        Ok(Profile::Default.collect(vars))
    }
}

/// Sets `path` (`["auth", "secret"]`) in `dict` to `value`, creating the tables on the way.
fn insert_at(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [key] => {
            dict.insert((*key).to_owned(), value);
        }
        [key, rest @ ..] => {
            let entry = dict
                .entry((*key).to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_at(inner, rest, value);
            }
        }
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
    use ordo_participant::ParticipantConfig;

    use crate::cli::{NodeArgs, NodeOverrides};
    use crate::node::{Role, Step};
    use crate::roles::{Mediator, Participant, Sequencer, Topology};

    const PREFIX: &str = "ORDO_SEQUENCER_";

    fn load_seq(file: &str, overrides: &NodeOverrides) -> anyhow::Result<SequencerConfig> {
        load(&PathBuf::from(file), PREFIX, overrides)
    }

    fn private(file: &str) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
    }

    #[test]
    fn a_file_with_secrets_others_can_read_is_refused() {
        jail(|j| {
            j.create_file(
                "s.toml",
                "admin_token = \"t0ken\"\ndatabase_url = \"postgres://ordo:pw@db/seq\"\n",
            )?;
            let mode = |m| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions("s.toml", std::fs::Permissions::from_mode(m))
            };
            mode(0o644)?;
            let msg = format!(
                "{:#}",
                load_seq("s.toml", &NodeOverrides::default()).unwrap_err()
            );
            for needle in [
                "s.toml",
                "admin_token",
                "database_url",
                "644",
                "chmod 600",
                "ORDO_SEQUENCER_",
            ] {
                assert!(msg.contains(needle), "{needle} not in {msg}");
            }
            assert!(
                !msg.contains("t0ken") && !msg.contains("pw@"),
                "a secret in {msg}"
            );
            mode(0o600)?;
            load_seq("s.toml", &NodeOverrides::default())?;
            // Without secrets (a password-less URL, an empty token) any mode will do.
            j.create_file(
                "open.toml",
                "admin_token = \"\"\ndatabase_url = \"postgres://ordo@db/seq\"\n",
            )?;
            load_seq("open.toml", &NodeOverrides::default())?;
            Ok(())
        });
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
                token_ttl = "30s 500ms"
                "#,
            )?;
            j.set_env("ORDO_SEQUENCER_DATABASE_URL", "postgres://env@db/seq");
            j.set_env("ORDO_SEQUENCER_GRPC_LISTEN", "127.0.0.1:6001");
            j.set_env("ORDO_SEQUENCER_POOL_SIZE", "9");
            let flags = NodeOverrides {
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
            let c = load_seq("s.toml", &NodeOverrides::default())?;
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
            let err = load_seq("s.toml", &NodeOverrides::default()).unwrap_err();
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
            let err = load_seq("s.toml", &NodeOverrides::default()).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("max_batches"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_env_value_names_its_variable() {
        jail(|j| {
            j.create_file("s.toml", "")?;
            j.set_env("ORDO_SEQUENCER_TOKEN_TTL", "600");
            let msg = format!(
                "{:#}",
                load_seq("s.toml", &NodeOverrides::default()).unwrap_err()
            );
            assert!(
                msg.contains("TOKEN_TTL") && msg.contains("ORDO_SEQUENCER_"),
                "{msg}"
            );
            assert!(msg.contains("\"30s\" or \"500ms\""), "{msg}");
            j.set_env("ORDO_SEQUENCER_TOKEN_TTL", "10m");
            j.set_env("ORDO_SEQUENCER_LIMITS__MEMBER_SENDS__PER_SECOND", "many");
            let msg = format!(
                "{:#}",
                load_seq("s.toml", &NodeOverrides::default()).unwrap_err()
            );
            assert!(msg.contains("MEMBER_SENDS.PER_SECOND"), "{msg}");
            j.set_env("ORDO_SEQUENCER_LIMITS__MEMBER_SENDS__PER_SECOND", "5");
            let c = load_seq("s.toml", &NodeOverrides::default())?;
            assert_eq!(c.token_ttl, Duration::from_secs(600));
            Ok(())
        });
    }

    #[test]
    fn wrong_type_is_rejected_by_key() {
        jail(|j| {
            j.create_file("s.toml", "max_batch = \"lots\"\n")?;
            let err = load_seq("s.toml", &NodeOverrides::default()).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("max_batch"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_named() {
        jail(|_| {
            let err = load_seq("nowhere/seq.toml", &NodeOverrides::default()).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("nowhere/seq.toml"), "{msg}");
            assert!(msg.contains("--config"), "{msg}");
            Ok(())
        });
    }

    /// Parses `examples/<role>.toml` exactly as `ordo <role>` does (defaults < file) and
    /// checks it as an operational start would.
    fn example<R: Role>() -> R::Config {
        let example = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(format!("{}.toml", R::NAME));
        let c: R::Config = Figment::from(Serialized::defaults(R::Config::default()))
            .merge(Toml::file_exact(&example))
            .extract()
            .unwrap_or_else(|e| panic!("{}: {e}", example.display()));
        R::validate(&c, Step::Run).unwrap_or_else(|e| panic!("{}: {e:#}", example.display()));
        c
    }

    #[test]
    fn the_shipped_examples_are_valid() {
        assert_eq!(example::<Sequencer>().node_name, "sequencer-1");
        assert_eq!(example::<Topology>().node_name, "topology");
        assert!(example::<Mediator>().topology_manager.is_some());
        let p = example::<Participant>();
        assert_eq!(
            (p.node_name.as_str(), p.shard.as_str()),
            ("participant-1", "shard-1")
        );
        assert_eq!(p.auth.algorithm, "EdDSA");
        assert_eq!(
            example::<Sequencer>().limits.member_sends.per_second,
            20_000
        );

        let gateway = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway.toml");
        let g: ordo_gateway::GatewayConfig =
            Figment::from(Serialized::defaults(ordo_gateway::GatewayConfig::default()))
                .merge(Toml::file_exact(&gateway))
                .extract()
                .unwrap_or_else(|e| panic!("{}: {e}", gateway.display()));
        g.validate()
            .unwrap_or_else(|e| panic!("{}: {e:#}", gateway.display()));
        assert_eq!(g.limits.token_requests.per_second, 1000);
    }

    #[test]
    fn nested_keys_come_from_env_with_double_underscores() {
        jail(|j| {
            j.create_file("p.toml", "[auth]\nsecret = \"from-the-file-0123456789\"\n")?;
            private("p.toml")?;
            j.set_env("ORDO_PARTICIPANT_AUTH__SECRET", "1234567890123456789");
            j.set_env("ORDO_PARTICIPANT_LIMITS__MAX_INTERPRETATION_STEPS", "77");
            j.set_env("ORDO_PARTICIPANT_SHARD", "shard-9");
            let c: ParticipantConfig = load(
                Path::new("p.toml"),
                Participant::ENV_PREFIX,
                &NodeOverrides::default(),
            )?;
            assert_eq!(c.auth.secret, "1234567890123456789", "digits stay a string");
            assert_eq!(
                c.auth.algorithm, "EdDSA",
                "the rest of the table keeps its default"
            );
            assert_eq!(c.limits.max_interpretation_steps, 77);
            assert_eq!(c.shard, "shard-9");
            j.set_env("ORDO_PARTICIPANT_AUTH__SECRTE", "x");
            let err = load::<ParticipantConfig, _>(
                Path::new("p.toml"),
                Participant::ENV_PREFIX,
                &NodeOverrides::default(),
            )
            .unwrap_err();
            assert!(format!("{err:#}").contains("secrte"), "{err:#}");
            Ok(())
        });
    }

    fn usage_error<R: Role>(file: &str, step: Step) -> String {
        let args = NodeArgs {
            config: Some(PathBuf::from(file)),
            overrides: NodeOverrides::default(),
        };
        match crate::node::load::<R>(&args, step) {
            Err(crate::Failure::Usage(e)) => format!("{e:#}"),
            Err(crate::Failure::Runtime(e)) => panic!("a runtime error: {e:#}"),
            Ok(_) => panic!("{file} was accepted"),
        }
    }

    #[test]
    fn invalid_role_configs_are_usage_errors_naming_field_and_file() {
        type Check = fn(&str, Step) -> String;
        let cases: [(&str, &str, Check, Step, &[&str]); 5] = [
            // A member needs the topology manager's id to run, not to be provisioned.
            (
                "m.toml",
                "node_name = \"mediator\"",
                usage_error::<Mediator>,
                Step::Run,
                &["topology_manager", "m.toml", "ORDO_MEDIATOR_"],
            ),
            (
                "p.toml",
                "topology_manager = \"topology::00112233445566778899aabbccddeeff\"",
                usage_error::<Participant>,
                Step::Run,
                &["auth.key_file", "p.toml"],
            ),
            (
                "p2.toml",
                "shard = \"Shard One\"",
                usage_error::<Participant>,
                Step::Init,
                &["shard", "p2.toml"],
            ),
            // The manager needs its tokens even to init.
            (
                "t.toml",
                "",
                usage_error::<Topology>,
                Step::Init,
                &["sequencer_admin_token", "t.toml", "ORDO_TOPOLOGY_"],
            ),
            (
                "t2.toml",
                "request_timout = \"3s\"",
                usage_error::<Topology>,
                Step::Init,
                &["request_timout", "t2.toml"],
            ),
        ];
        jail(|j| {
            for (file, text, check, step, expected) in cases {
                j.create_file(file, text)?;
                let msg = check(file, step);
                for e in expected {
                    assert!(msg.contains(e), "{file}: {e} not in {msg}");
                }
            }
            let args = NodeArgs {
                config: Some(PathBuf::from("m.toml")),
                overrides: NodeOverrides::default(),
            };
            assert!(crate::node::load::<Mediator>(&args, Step::Init).is_ok());
            Ok(())
        });
    }
}
