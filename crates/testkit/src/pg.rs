//! A private, throwaway Postgres cluster. It runs the machine's `initdb`/`pg_ctl` (from PATH
//! or `/usr/lib/postgresql/*/bin`); as root it runs them as the `postgres` user, since
//! Postgres refuses to run as root. The cluster is stopped and deleted on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Settings of a throwaway cluster.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `fsync` and `synchronous_commit`: off makes tests fast; benchmarks keep them on.
    pub durable: bool,
    pub max_connections: u32,
    /// Extra `-c name=value` settings.
    pub settings: Vec<(String, String)>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            durable: false,
            max_connections: 300,
            settings: Vec::new(),
        }
    }
}

pub struct PgCluster {
    dir: Option<tempfile::TempDir>,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as_postgres: bool,
}

impl PgCluster {
    /// Starts a new cluster on a free loopback port. Blocking: call it from
    /// `tokio::task::spawn_blocking` or before the runtime starts if that matters.
    pub fn start(opts: PgOptions) -> anyhow::Result<Self> {
        let bin = pg_bin_dir()?;
        let run_as_postgres = nix::unistd::geteuid().is_root();
        let dir = tempfile::Builder::new().prefix("ordo-pg-").tempdir()?;
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock)?;
        if run_as_postgres {
            let (uid, gid) = postgres_ids()?;
            for p in [dir.path(), sock.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .with_context(|| format!("chown {} to postgres", p.display()))?;
            }
        }
        let port = crate::free_port();
        let cluster = Self {
            dir: Some(dir),
            data,
            bin,
            port,
            run_as_postgres,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&cluster.data)?,
                "-U",
                "ordo",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        let mut settings = vec![
            ("listen_addresses".to_owned(), "127.0.0.1".to_owned()),
            ("port".into(), port.to_string()),
            (
                "unix_socket_directories".into(),
                path_str(&sock)?.to_owned(),
            ),
            ("max_connections".into(), opts.max_connections.to_string()),
            ("shared_buffers".into(), "256MB".into()),
        ];
        if !opts.durable {
            settings.push(("fsync".into(), "off".into()));
            settings.push(("synchronous_commit".into(), "off".into()));
            settings.push(("full_page_writes".into(), "off".into()));
        }
        settings.extend(opts.settings);
        let conf: String = settings
            .iter()
            .map(|(k, v)| format!("{k} = '{v}'\n"))
            .collect();
        let conf_path = cluster.data.join("postgresql.auto.conf");
        // The data directory belongs to postgres; write through a temp file it can read.
        let staged = cluster.root().join("ordo.conf");
        std::fs::write(&staged, conf)?;
        cluster.run(
            "sh",
            &[
                "-c",
                &format!("cat {} >> {}", path_str(&staged)?, path_str(&conf_path)?),
            ],
        )?;
        let log = cluster.root().join("postgres.log");
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&cluster.data)?,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        Ok(cluster)
    }

    fn root(&self) -> &Path {
        self.data.parent().unwrap_or(Path::new("/"))
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = if tool == "sh" {
            PathBuf::from("sh")
        } else {
            self.bin.join(tool)
        };
        let mut cmd = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd
            .args(args)
            .current_dir(self.root())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if !out.status.success() {
            bail!(
                "{tool} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `db` (see [`PgCluster::create_database`]).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://ordo@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `db` and returns its URL.
    pub async fn create_database(&self, db: &str) -> anyhow::Result<String> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {db}"))?;
        conn.close().await?;
        Ok(self.url(db))
    }

    /// The server log so far (for test failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("postgres.log")).unwrap_or_default()
    }

    /// Keeps the cluster's files after the test (for post-mortems); returns their path.
    pub fn keep(&mut self) -> PathBuf {
        self.dir.take().map(|d| d.keep()).unwrap_or_default()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Ok(data) = path_str(&self.data) {
            let _ = self.run("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"]);
        }
    }
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("path {} is not UTF-8", p.display()))
}

fn postgres_ids() -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output()?;
        if !out.status.success() {
            bail!(
                "running as root needs a `postgres` user to run the cluster (apt-get install postgresql creates it)"
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

/// The directory holding `initdb` and `pg_ctl`: from PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn pg_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Ok(std::fs::canonicalize(dir.join("initdb"))?
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or(dir));
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).context(
        "Postgres is not installed: no initdb on PATH or in /usr/lib/postgresql/*/bin \
         (on Debian/Ubuntu: apt-get install -y postgresql)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_creates_and_stops() {
        let pg = tokio::task::spawn_blocking(|| PgCluster::start(PgOptions::default()))
            .await
            .unwrap()
            .unwrap();
        let url = pg.create_database("t1").await.unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let (one,): (i32,) = sqlx::query_as("SELECT 1").fetch_one(&pool).await.unwrap();
        assert_eq!(one, 1);
        pool.close().await;
        let port = pg.port();
        drop(pg);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
