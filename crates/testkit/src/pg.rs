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
    /// The `ordo` role's password, required of every connection (SCRAM-SHA-256, local and
    /// TCP alike). `None`: every local connection is trusted, as befits a throwaway test
    /// cluster. Set when the cluster is created; a cluster created without one keeps
    /// trusting.
    pub password: Option<String>,
    /// The server's certificate and key (PEM): with them the cluster also serves TLS
    /// (`ssl = on`), for clients whose URL asks for it (`sslmode=require`, `verify-full`).
    pub tls: Option<(String, String)>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            durable: false,
            max_connections: 300,
            settings: Vec::new(),
            password: None,
            tls: None,
        }
    }
}

pub struct PgCluster {
    dir: Option<tempfile::TempDir>,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as_postgres: bool,
    password: Option<String>,
}

impl PgCluster {
    /// Starts a new cluster on a free loopback port, deleted on drop. Blocking: call it from
    /// `tokio::task::spawn_blocking` or before the runtime starts if that matters.
    pub fn start(opts: PgOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("ordo-pg-").tempdir()?;
        let root = dir.path().to_path_buf();
        let mut cluster = Self::open_at(&root, crate::free_port(), opts)?;
        cluster.dir = Some(dir);
        Ok(cluster)
    }

    /// Starts the persistent cluster in `root` (creating it on first use) on `port`. Its
    /// files stay when it is dropped (it is stopped with `pg_ctl stop -m fast`), so the next
    /// `open` resumes the same data. Used by `ordo up`. Blocking, like [`PgCluster::start`].
    pub fn open(root: &Path, port: u16, opts: PgOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating the Postgres directory {}", root.display()))?;
        Self::open_at(root, port, opts)
    }

    fn open_at(root: &Path, port: u16, opts: PgOptions) -> anyhow::Result<Self> {
        let bin = pg_bin_dir()?;
        let run_as_postgres = nix::unistd::geteuid().is_root();
        let data = root.join("data");
        let sock = root.join("sock");
        std::fs::create_dir_all(&sock)?;
        if run_as_postgres {
            let (uid, gid) = postgres_ids()?;
            for p in [root, sock.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .with_context(|| format!("chown {} to postgres", p.display()))?;
            }
        }
        let cluster = Self {
            dir: None,
            data,
            bin,
            port,
            run_as_postgres,
            password: opts.password.clone(),
        };
        if !cluster.data.join("PG_VERSION").exists() {
            cluster.create(&sock, &opts)?;
        }
        let log = root.join("postgres.log");
        let port_opt = format!("-p {port}");
        cluster
            .run(
                "pg_ctl",
                &[
                    "-D",
                    path_str(&cluster.data)?,
                    "-l",
                    path_str(&log)?,
                    "-o",
                    &port_opt,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            )
            .with_context(|| {
                format!(
                    "starting Postgres in {} (its log: {})",
                    cluster.data.display(),
                    log.display()
                )
            })?;
        Ok(cluster)
    }

    /// `initdb` and the settings (the port is given at each start).
    fn create(&self, sock: &Path, opts: &PgOptions) -> anyhow::Result<()> {
        let mut args = vec![
            "-D".to_owned(),
            path_str(&self.data)?.to_owned(),
            "-U".into(),
            "ordo".into(),
            "--encoding=UTF8".into(),
            "--locale=C".into(),
            "--no-sync".into(),
        ];
        // The password reaches initdb in a file only it reads, removed right after.
        let pwfile = self.root().join("initdb-password");
        match &opts.password {
            None => args.push("--auth=trust".into()),
            Some(password) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(&pwfile, password)?;
                std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))?;
                if self.run_as_postgres {
                    let (uid, gid) = postgres_ids()?;
                    std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
                }
                args.push("--auth=scram-sha-256".into());
                args.push(format!("--pwfile={}", path_str(&pwfile)?));
            }
        }
        let created = self.run(
            "initdb",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let _ = std::fs::remove_file(&pwfile);
        created?;
        let mut settings = vec![
            ("listen_addresses".to_owned(), "127.0.0.1".to_owned()),
            ("unix_socket_directories".into(), path_str(sock)?.to_owned()),
            ("max_connections".into(), opts.max_connections.to_string()),
            ("shared_buffers".into(), "256MB".into()),
        ];
        if !opts.durable {
            settings.push(("fsync".into(), "off".into()));
            settings.push(("synchronous_commit".into(), "off".into()));
            settings.push(("full_page_writes".into(), "off".into()));
        }
        if let Some((cert, key)) = &opts.tls {
            let (cert_file, key_file) = (
                self.root().join("server.pem"),
                self.root().join("server.key"),
            );
            for (file, text) in [(&cert_file, cert), (&key_file, key)] {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(file, text)?;
                // Postgres refuses a key that others may read.
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
                if self.run_as_postgres {
                    let (uid, gid) = postgres_ids()?;
                    std::os::unix::fs::chown(file, Some(uid), Some(gid))?;
                }
            }
            settings.push(("ssl".into(), "on".into()));
            settings.push(("ssl_cert_file".into(), path_str(&cert_file)?.to_owned()));
            settings.push(("ssl_key_file".into(), path_str(&key_file)?.to_owned()));
        }
        settings.extend(opts.settings.iter().cloned());
        let conf: String = settings
            .iter()
            .map(|(k, v)| format!("{k} = '{v}'\n"))
            .collect();
        let conf_path = self.data.join("postgresql.auto.conf");
        // The data directory belongs to postgres; write through a file it can read.
        let staged = self.root().join("ordo.conf");
        std::fs::write(&staged, conf)?;
        self.run(
            "sh",
            &[
                "-c",
                &format!("cat {} >> {}", path_str(&staged)?, path_str(&conf_path)?),
            ],
        )
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

    /// URL of database `db` (see [`PgCluster::create_database`]), with the password if the
    /// cluster has one.
    pub fn url(&self, db: &str) -> String {
        let password = self
            .password
            .as_ref()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!("postgres://ordo{password}@127.0.0.1:{}/{db}", self.port)
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

    /// Creates database `db` unless it exists; returns its URL.
    pub async fn ensure_database(&self, db: &str) -> anyhow::Result<String> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(db)
            .fetch_optional(&mut conn)
            .await?;
        conn.close().await?;
        if exists.is_none() {
            self.create_database(db).await?;
        }
        Ok(self.url(db))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // A throwaway cluster is about to be deleted: no need to shut down cleanly.
        let mode = if self.dir.is_some() {
            "immediate"
        } else {
            "fast"
        };
        if let Ok(data) = path_str(&self.data) {
            let _ = self.run("pg_ctl", &["-D", data, "-m", mode, "-w", "stop"]);
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

    #[tokio::test]
    async fn a_password_is_required_of_every_connection() {
        let pg = tokio::task::spawn_blocking(|| {
            PgCluster::start(PgOptions {
                password: Some("0123456789abcdef".into()),
                ..PgOptions::default()
            })
        })
        .await
        .unwrap()
        .unwrap();
        let url = pg.url("postgres");
        assert!(
            url.starts_with("postgres://ordo:0123456789abcdef@"),
            "{url}"
        );
        sqlx::PgPool::connect(&url).await.unwrap().close().await;
        let without = url.replace(":0123456789abcdef@", "@");
        let e = sqlx::PgPool::connect(&without)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("password"), "{e}");
        let wrong = url.replace(":0123456789abcdef@", ":wrong@");
        let e = sqlx::PgPool::connect(&wrong).await.unwrap_err().to_string();
        assert!(e.contains("password authentication failed"), "{e}");
    }

    #[tokio::test]
    async fn tls_when_the_url_asks_for_it_verified_by_the_ca() {
        use std::os::unix::fs::PermissionsExt;
        let ca = ordo_tls::LocalCa::generate().unwrap();
        let other = ordo_tls::LocalCa::generate().unwrap();
        let server = ca
            .issue(&ordo_tls::Subject::loopback("postgres", None))
            .unwrap();
        let pg = tokio::task::spawn_blocking(move || {
            PgCluster::start(PgOptions {
                tls: Some((server.cert_pem, server.key_pem)),
                ..PgOptions::default()
            })
        })
        .await
        .unwrap()
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = |name: &str, ca: &ordo_tls::LocalCa| {
            let path = dir.path().join(name);
            std::fs::write(&path, ca.cert_pem()).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            path.display().to_string()
        };
        let url = pg.url("postgres");
        let verified = format!(
            "{url}?sslmode=verify-full&sslrootcert={}",
            root("ca.pem", &ca)
        );
        let pool = sqlx::PgPool::connect(&verified).await.unwrap();
        let (ssl,): (bool,) =
            sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(ssl, "the connection is not TLS");
        pool.close().await;
        let distrusted = format!(
            "{url}?sslmode=verify-full&sslrootcert={}",
            root("other.pem", &other)
        );
        assert!(
            sqlx::PgPool::connect(&distrusted).await.is_err(),
            "another CA's server was trusted"
        );
    }

    #[tokio::test]
    async fn persistent_cluster_keeps_its_data_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pg");
        let open = |root: std::path::PathBuf| {
            tokio::task::spawn_blocking(move || {
                PgCluster::open(&root, crate::free_port(), PgOptions::default())
            })
        };
        let pg = open(root.clone()).await.unwrap().unwrap();
        let url = pg.ensure_database("kept").await.unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::raw_sql("CREATE TABLE t (v int); INSERT INTO t VALUES (7)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        drop(pg);

        let pg = open(root).await.unwrap().unwrap();
        let url = pg.ensure_database("kept").await.unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let (v,): (i32,) = sqlx::query_as("SELECT v FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(v, 7);
        pool.close().await;
    }
}
