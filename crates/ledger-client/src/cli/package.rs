//! `ordo package upload FILE`, `ordo package list`.

use std::path::PathBuf;

use anyhow::Context;

use crate::network::Network;

use super::CommonArgs;
use super::output::json_line;

#[derive(clap::Args, Clone, Debug)]
pub struct PackageArgs {
    #[command(subcommand)]
    pub command: PackageCommand,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum PackageCommand {
    /// Upload a package file (TOML); it is vetted domain-wide.
    Upload(PackageUploadArgs),
    /// List the vetted packages and their templates.
    List(PackageListArgs),
}

#[derive(clap::Args, Clone, Debug)]
pub struct PackageUploadArgs {
    /// The package file, e.g. examples/packages/iou.toml.
    pub file: PathBuf,
    /// The shard whose participant receives it (default: the first).
    #[arg(long)]
    pub shard: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(clap::Args, Clone, Debug)]
pub struct PackageListArgs {
    /// The shard whose participant is asked (default: the first).
    #[arg(long)]
    pub shard: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub(crate) fn shard_or_first(network: &Network, shard: Option<&str>) -> anyhow::Result<String> {
    match shard {
        Some(s) => Ok(s.to_owned()),
        None => network
            .shards()
            .into_iter()
            .next()
            .with_context(|| format!("{} lists no participant shard", network.path.display())),
    }
}

pub async fn run_package(args: PackageArgs) -> anyhow::Result<()> {
    match args.command {
        PackageCommand::Upload(a) => {
            let bytes = std::fs::read(&a.file)
                .with_context(|| format!("reading package file {}", a.file.display()))?;
            let network = a.common.load()?;
            let shard = shard_or_first(&network, a.shard.as_deref())?;
            let uploaded = network
                .client_for_shard(&shard)
                .await?
                .upload_package(bytes)
                .await?;
            if a.common.json {
                json_line(&uploaded)?;
            } else {
                println!(
                    "package {} vetted as {}",
                    uploaded.name, uploaded.package_id
                );
            }
        }
        PackageCommand::List(a) => {
            let network = a.common.load()?;
            let shard = shard_or_first(&network, a.shard.as_deref())?;
            let packages = network
                .client_for_shard(&shard)
                .await?
                .list_packages()
                .await?;
            if a.common.json {
                for p in &packages {
                    json_line(p)?;
                }
            } else {
                for p in &packages {
                    println!(
                        "{} {} templates: {}",
                        p.name,
                        p.package_id,
                        p.template_ids.join(", ")
                    );
                }
            }
        }
    }
    Ok(())
}
