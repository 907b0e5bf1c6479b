//! `ordo gateway --config FILE`: the JSON API gateway. It has no database of its own (its
//! cache is a local file it can rebuild) and no identity, so it does not go through the
//! node roles' `init`/`run` path: load the layered configuration (defaults < TOML <
//! `ORDO_GATEWAY_…` < flags), validate it, bind, serve until SIGTERM/Ctrl-C.
//!
//! `ordo gateway rebuild-cache --config FILE` empties the cache file that configuration
//! names, so that the next start rebuilds it from the shards' snapshots.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use ordo_gateway::cache::{self, CacheError};
use ordo_gateway::{GatewayConfig, GatewayError};
use serde::Serialize;

use crate::Failure;
use crate::config::ReadableSecrets;

pub(crate) const ENV_PREFIX: &str = "ORDO_GATEWAY_";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct GatewayArgs {
    #[command(subcommand)]
    pub command: Option<GatewayCommand>,
    /// The gateway's TOML configuration file (see docs/gateway.md and examples/gateway.toml).
    #[arg(long, short = 'c', value_name = "FILE", required = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: GatewayOverrides,
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Empty the gateway's cache file: the next start rebuilds it from the shards'
    /// active-contract snapshots. Refused while a gateway uses the file.
    RebuildCache(RebuildCacheArgs),
}

#[derive(Debug, Args)]
pub struct RebuildCacheArgs {
    /// The gateway's TOML configuration file; its `cache.file` is emptied.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
}

/// Flag overrides, the highest configuration layer; unset flags are absent.
#[derive(Debug, Default, Args, Serialize)]
pub struct GatewayOverrides {
    /// Overrides `http_listen`.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<SocketAddr>,
    /// Overrides `network_file`.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_file: Option<PathBuf>,
}

pub fn main(args: GatewayArgs) -> Result<(), Failure> {
    let (file, overrides) = match (args.command, args.config) {
        (Some(GatewayCommand::RebuildCache(a)), _) => {
            return rebuild_cache(&a.config);
        }
        (None, Some(file)) => (file, args.overrides),
        (None, None) => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "give the configuration file: ordo gateway --config FILE"
            )));
        }
    };
    let config = load(&file, &overrides)?;
    crate::runtime()?.block_on(async move {
        let shutdown = crate::shutdown_signal().map_err(Failure::Runtime)?;
        let listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("cannot listen on http_listen {}", config.http_listen))
            .map_err(Failure::Runtime)?;
        ordo_gateway::run(config, listener, shutdown)
            .await
            .map_err(|e| match e {
                GatewayError::Config(_) | GatewayError::Cache(CacheError::InUse { .. }) => {
                    Failure::Usage(e.into())
                }
                other => Failure::Runtime(other.into()),
            })
    })
}

/// The configuration from `file`, the environment and `overrides`, validated.
fn load(file: &std::path::Path, overrides: &GatewayOverrides) -> Result<GatewayConfig, Failure> {
    load_with(file, overrides, ReadableSecrets::Refuse)
}

/// [`load`], with the choice of what a file with readable secrets is (`ordo config check`
/// warns).
pub(crate) fn load_with(
    file: &std::path::Path,
    overrides: &GatewayOverrides,
    secrets: ReadableSecrets,
) -> Result<GatewayConfig, Failure> {
    let config: GatewayConfig =
        crate::config::load_with(file, ENV_PREFIX, overrides, secrets).map_err(Failure::Usage)?;
    config.validate().map_err(|e| {
        Failure::Usage(anyhow::anyhow!(
            "{e} (from {}, {ENV_PREFIX}* environment or flags)",
            file.display()
        ))
    })?;
    Ok(config)
}

/// `ordo gateway rebuild-cache`: removes the cache file (exit 2 while a gateway uses it).
fn rebuild_cache(file: &std::path::Path) -> Result<(), Failure> {
    let config = load(file, &GatewayOverrides::default())?;
    let cache_file = &config.cache.file;
    match cache::clear(cache_file) {
        Ok(true) => println!(
            "emptied the gateway cache {}: the next `ordo gateway` start rebuilds it from the \
             shards' snapshots",
            cache_file.display()
        ),
        Ok(false) => println!(
            "no gateway cache at {}: the next `ordo gateway` start builds it from the shards' \
             snapshots",
            cache_file.display()
        ),
        Err(e @ CacheError::InUse { .. }) => return Err(Failure::Usage(e.into())),
        Err(e) => return Err(Failure::Runtime(e.into())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use figment::Jail;

    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Error is Jail's, not ours
    fn file_env_and_flags_layer_over_the_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "g.toml",
                "network_file = \"n.json\"\nrequest_timeout = \"2500ms\"\n\
                 cors_allowed_origins = [\"https://app.example\"]\n",
            )?;
            jail.set_env("ORDO_GATEWAY_MAX_BODY_BYTES", "65536");
            let overrides = GatewayOverrides {
                http_listen: Some("127.0.0.1:9000".parse().map_err(|e| format!("{e}"))?),
                network_file: None,
            };
            let c: GatewayConfig =
                crate::config::load(std::path::Path::new("g.toml"), ENV_PREFIX, &overrides)
                    .map_err(|e| e.to_string())?;
            assert_eq!(c.network_file, PathBuf::from("n.json"));
            assert_eq!(c.request_timeout, Duration::from_millis(2500));
            assert_eq!(c.max_body_bytes, 65536);
            assert_eq!(c.http_listen.port(), 9000);
            assert_eq!(c.cors_allowed_origins, vec!["https://app.example"]);
            jail.create_file("bad.toml", "listen = 1\n")?;
            let e = crate::config::load::<GatewayConfig, _>(
                std::path::Path::new("bad.toml"),
                ENV_PREFIX,
                &GatewayOverrides::default(),
            )
            .unwrap_err();
            assert!(format!("{e:#}").contains("listen"), "{e:#}");
            Ok(())
        });
    }

    fn parse(args: &[&str]) -> Result<GatewayArgs, clap::Error> {
        use clap::Parser;
        match crate::cli::Cli::try_parse_from(args)?.command {
            crate::cli::Command::Gateway(g) => Ok(*g),
            other => panic!("not the gateway command: {other:?}"),
        }
    }

    #[test]
    fn serving_and_rebuild_cache_are_told_apart() {
        let serve = parse(&[
            "ordo",
            "gateway",
            "--config",
            "g.toml",
            "--http-listen",
            "127.0.0.1:1",
        ])
        .unwrap();
        assert!(serve.command.is_none());
        assert_eq!(serve.config, Some(PathBuf::from("g.toml")));
        let rebuild = parse(&["ordo", "gateway", "rebuild-cache", "--config", "g.toml"]).unwrap();
        assert!(matches!(
            rebuild.command,
            Some(GatewayCommand::RebuildCache(RebuildCacheArgs { config })) if config == std::path::Path::new("g.toml")
        ));
        assert!(parse(&["ordo", "gateway"]).is_err());
        assert!(parse(&["ordo", "gateway", "rebuild-cache"]).is_err());
        assert!(
            parse(&[
                "ordo",
                "gateway",
                "--config",
                "g.toml",
                "rebuild-cache",
                "--config",
                "g.toml"
            ])
            .is_err()
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Error is Jail's, not ours
    fn rebuild_cache_empties_the_file_and_refuses_while_it_is_in_use() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "g.toml",
                "[cache]\nfile = \"data/cache.sqlite\"\ntoken_file = \"data/token\"\n",
            )?;
            jail.create_dir("data")?;
            jail.create_file("data/cache.sqlite", "contents")?;
            jail.create_file("data/cache.sqlite-wal", "log")?;
            let config = std::path::Path::new("g.toml");
            let held = cache::CacheLock::acquire(std::path::Path::new("data/cache.sqlite"))
                .map_err(|e| e.to_string())?;
            let refused = match rebuild_cache(config) {
                Err(Failure::Usage(e)) => e.to_string(),
                _ => String::new(),
            };
            assert!(
                refused.contains("in use"),
                "rebuild-cache while in use: {refused:?}"
            );
            assert!(
                std::path::Path::new("data/cache.sqlite").exists(),
                "left alone"
            );
            drop(held);
            assert!(rebuild_cache(config).is_ok());
            assert!(!std::path::Path::new("data/cache.sqlite").exists());
            assert!(!std::path::Path::new("data/cache.sqlite-wal").exists());
            assert!(rebuild_cache(config).is_ok(), "no file: nothing to do");
            jail.set_env("ORDO_GATEWAY_CACHE__FILE", "");
            assert!(matches!(rebuild_cache(config), Err(Failure::Usage(_))));
            Ok(())
        });
    }
}
