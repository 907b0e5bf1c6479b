//! The database plumbing every node does the same way: pools named after the node, `init`
//! serialised by an advisory lock, and refusing a database `init` never provisioned.
//! Each node keeps its own error type: these return `sqlx::Error` (or take the node's
//! error constructor), so messages keep naming the node.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Row};

/// How long a caller waits for a pooled connection before the database counts as
/// unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The URL without its password (shown as `***`), for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if user.len() < userinfo.len() {
                ":***"
            } else {
                ""
            };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Options for `url` whose connections show as `app_name` in `pg_stat_activity`
/// (e.g. `ordo-mediator/mediator-1`).
pub fn connect_options(url: &str, app_name: &str) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(PgConnectOptions::from_str(url)?.application_name(app_name))
}

/// A pool of at most `size` connections made with `options`. A pooled connection is not
/// pinged before each use (a round trip per transaction on the hot paths): a connection
/// that broke meanwhile fails its first statement, the pool drops it, and the caller's
/// retry (every writer retries transient failures) gets a new one.
pub async fn pool_with(options: PgConnectOptions, size: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(size)
        .test_before_acquire(false)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
}

/// A pool of at most `size` connections to `url`, named `app_name`.
pub async fn pool(url: &str, app_name: &str, size: u32) -> Result<PgPool, sqlx::Error> {
    pool_with(connect_options(url, app_name)?, size).await
}

/// Runs `f` on one connection holding the advisory lock `key`, so that nodes (or
/// replicas) running `init` at once never race; then unlocks and closes.
pub async fn with_advisory_lock<T, E, F>(url: &str, app_name: &str, key: i64, f: F) -> Result<T, E>
where
    E: From<sqlx::Error>,
    F: AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
{
    let mut conn = PgConnection::connect_with(&connect_options(url, app_name)?).await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut conn)
        .await?;
    let result = f(&mut conn).await;
    // The lock dies with the connection anyway; unlocking explicitly is just tidier.
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    result
}

/// Whether `e` is Postgres refusing the data itself (SQLSTATE class 22, data exception,
/// or 23, integrity constraint violation): a failure that the same statement meets again on
/// every retry and on every replica, unlike a lost connection, a timeout or a serialisation
/// failure. Event processors treat it as a poison event instead of retrying forever.
pub fn is_data_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

/// Why a node must not run on a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unprovisioned {
    /// `init` never ran there (no meta table, or no row in it).
    Missing,
    /// `init` of another version of the node ran there.
    SchemaVersion { found: i32, expected: i32 },
}

/// The row `query` reads from the meta table `init` fills. When `schema_version` is given,
/// the row's `schema_version` column must equal it. Otherwise `refuse` says why the node
/// must not run on this database, in the node's own error type.
pub async fn provisioned<E>(
    pool: &PgPool,
    query: &'static str,
    schema_version: Option<i32>,
    refuse: impl FnOnce(Unprovisioned) -> E,
) -> Result<PgRow, E>
where
    E: From<sqlx::Error>,
{
    let row = match sqlx::query(query).fetch_optional(pool).await {
        Ok(Some(row)) => row,
        Ok(None) => return Err(refuse(Unprovisioned::Missing)),
        // 42P01: undefined_table — the migrations never ran here.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
            return Err(refuse(Unprovisioned::Missing));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(expected) = schema_version {
        let found: i32 = row.try_get("schema_version")?;
        if found != expected {
            return Err(refuse(Unprovisioned::SchemaVersion { found, expected }));
        }
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgresql://h/db"), "postgresql://h/db");
        assert_eq!(
            redact_url("postgres://ordo:s3cr%40t@db:5432/seq?sslmode=require"),
            "postgres://ordo:***@db:5432/seq?sslmode=require"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
