//! `ordo gateway --config FILE`: the JSON API gateway. It has no database and no identity,
//! so it does not go through the node roles' `init`/`run` path: load the layered
//! configuration (defaults < TOML < `ORDO_GATEWAY_…` < flags), validate it, bind, serve
//! until SIGTERM/Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ordo_gateway::{GatewayConfig, GatewayError};
use serde::Serialize;

use crate::Failure;

const ENV_PREFIX: &str = "ORDO_GATEWAY_";

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The gateway's TOML configuration file (see docs/gateway.md and examples/gateway.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    #[command(flatten)]
    pub overrides: GatewayOverrides,
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
    let config: GatewayConfig =
        crate::config::load(&args.config, ENV_PREFIX, &args.overrides).map_err(Failure::Usage)?;
    config.validate().map_err(|e| {
        Failure::Usage(anyhow::anyhow!(
            "{e} (from {}, {ENV_PREFIX}* environment or flags)",
            args.config.display()
        ))
    })?;
    crate::runtime()?.block_on(async move {
        let shutdown = crate::shutdown_signal().map_err(Failure::Runtime)?;
        let listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("cannot listen on http_listen {}", config.http_listen))
            .map_err(Failure::Runtime)?;
        ordo_gateway::run(config, listener, shutdown)
            .await
            .map_err(|e| match e {
                GatewayError::Config(_) => Failure::Usage(e.into()),
                other => Failure::Runtime(other.into()),
            })
    })
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
                "network_file = \"n.json\"\nrequest_timeout = 2500\n\
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
}
