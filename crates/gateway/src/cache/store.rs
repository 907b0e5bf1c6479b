//! The cache's SQLite file: the active contracts of each shard with the parties of that
//! shard who see them, and the offset each shard's feed reached. A transaction's creates
//! and archives commit together with its offset, so the file is always the shard's state
//! at the stored offset and a restart resumes from there.
//!
//! Tables: `meta` (the schema version), `shard_offsets` (shard → offset), `contracts`
//! (shard, contract id → the contract as JSON) and `contract_parties` (party, template,
//! shard, contract id: who sees what, the index queries go through). A contract seen on
//! two shards (a cross-shard Iou) is stored once per shard, each with that shard's parties.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ordo_ledger_client::{Contract, Event};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::CacheError;

/// Bumped when the tables change; a file of another version is rebuilt.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &[&str] = &[
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE shard_offsets (shard TEXT PRIMARY KEY, ledger_offset INTEGER NOT NULL) \
     WITHOUT ROWID",
    "CREATE TABLE contracts (shard TEXT NOT NULL, contract_id TEXT NOT NULL, \
     template_id TEXT NOT NULL, created_offset INTEGER NOT NULL, contract TEXT NOT NULL, \
     PRIMARY KEY (shard, contract_id)) WITHOUT ROWID",
    "CREATE TABLE contract_parties (party TEXT NOT NULL, template_id TEXT NOT NULL, \
     shard TEXT NOT NULL, contract_id TEXT NOT NULL, \
     PRIMARY KEY (party, template_id, shard, contract_id)) WITHOUT ROWID",
    "CREATE INDEX contract_parties_of_contract ON contract_parties (shard, contract_id)",
];

/// Readers at once (queries); writes go one at a time through `Store::writer`.
const CONNECTIONS: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Existing,
    ReadOnly,
}

/// How the file was found when it was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// A good file of this version: each shard resumes from its stored offset.
    Existing,
    /// No file: a new one, filled from the shards' snapshots.
    Created,
    /// A file that failed to open or check (the reason), moved aside to `<file>.corrupt`
    /// and replaced by a new one.
    Replaced(String),
}

pub struct Store {
    pool: SqlitePool,
    file: PathBuf,
    /// Writes one at a time, so that none waits on SQLite's lock.
    writer: tokio::sync::Mutex<()>,
    /// Contract rows in the file, kept current as writes commit.
    contracts: AtomicI64,
}

impl Store {
    /// Opens `file`, creating it when missing and replacing it when it is corrupt or of
    /// another schema version (with a warning naming the file).
    pub async fn open(file: &Path) -> Result<(Self, Opened), CacheError> {
        if !file.exists() {
            remove_side_files(file)?;
            return Ok((Self::create(file).await?, Opened::Created));
        }
        match Self::open_existing(file).await {
            Ok(store) => Ok((store, Opened::Existing)),
            Err(reason) => {
                let aside = sibling(file, ".corrupt");
                tracing::warn!(
                    file = %file.display(), reason = %reason, moved_to = %aside.display(),
                    "the gateway cache file is unusable: moving it aside and rebuilding it from the shards' snapshots"
                );
                std::fs::rename(file, &aside).map_err(|e| CacheError::File {
                    file: file.to_owned(),
                    reason: format!("cannot move the unusable file to {}: {e}", aside.display()),
                })?;
                remove_side_files(file)?;
                Ok((Self::create(file).await?, Opened::Replaced(reason)))
            }
        }
    }

    async fn create(file: &Path) -> Result<Self, CacheError> {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CacheError::File {
                file: file.to_owned(),
                reason: format!("cannot create its folder: {e}"),
            })?;
        }
        let store = Self::connect(file, Mode::Create)
            .await
            .map_err(|e| CacheError::sqlite(file, e))?;
        let mut tx = store.pool.begin().await.map_err(|e| store.error(e))?;
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| store.error(e))?;
        }
        sqlx::query("INSERT INTO meta (key, value) VALUES ('schema_version', ?)")
            .bind(SCHEMA_VERSION.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| store.error(e))?;
        tx.commit().await.map_err(|e| store.error(e))?;
        Ok(store)
    }

    /// Opens and checks an existing file; why it is unusable otherwise.
    async fn open_existing(file: &Path) -> Result<Self, String> {
        let store = Self::connect(file, Mode::Existing)
            .await
            .map_err(|e| format!("cannot open it: {e}"))?;
        match store.check().await {
            Ok(()) => {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contracts")
                    .fetch_one(&store.pool)
                    .await
                    .map_err(|e| e.to_string())?;
                store.contracts.store(count, Ordering::Relaxed);
                Ok(store)
            }
            Err(reason) => {
                store.pool.close().await;
                Err(reason)
            }
        }
    }

    /// `PRAGMA quick_check` and the schema version.
    async fn check(&self) -> Result<(), String> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| format!("PRAGMA quick_check failed: {e}"))?;
        if rows != ["ok"] {
            return Err(format!("PRAGMA quick_check: {}", rows.join("; ")));
        }
        let version: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'schema_version'")
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| format!("no schema version: {e}"))?;
        match version {
            Some(v) if v == SCHEMA_VERSION.to_string() => Ok(()),
            Some(v) => Err(format!(
                "schema version {v}, this gateway uses {SCHEMA_VERSION}"
            )),
            None => Err("no schema version".into()),
        }
    }

    /// Opens an existing, checked file for reading only, beside the gateway that writes it.
    pub async fn open_read_only(file: &Path) -> Result<Self, CacheError> {
        let store = Self::connect(file, Mode::ReadOnly)
            .await
            .map_err(|e| CacheError::sqlite(file, e))?;
        if let Err(reason) = store.check().await {
            store.pool.close().await;
            return Err(CacheError::File {
                file: file.to_owned(),
                reason,
            });
        }
        Ok(store)
    }

    async fn connect(file: &Path, mode: Mode) -> Result<Self, sqlx::Error> {
        let mut options = SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(mode == Mode::Create)
            .read_only(mode == Mode::ReadOnly)
            .busy_timeout(BUSY_TIMEOUT);
        if mode != Mode::ReadOnly {
            options = options
                // Readers do not block the feeds' writes, nor these the readers.
                .journal_mode(SqliteJournalMode::Wal)
                // A crash may lose the last transactions, never consistency: the feed
                // resumes from the offset that did commit.
                .synchronous(SqliteSynchronous::Normal);
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(CONNECTIONS)
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            file: file.to_owned(),
            writer: tokio::sync::Mutex::new(()),
            contracts: AtomicI64::new(0),
        })
    }

    fn error(&self, e: sqlx::Error) -> CacheError {
        CacheError::sqlite(&self.file, e)
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Contract rows in the file (a contract seen on two shards counts twice).
    pub fn contract_count(&self) -> i64 {
        self.contracts.load(Ordering::Relaxed)
    }

    /// Closes the connections (SQLite folds its write-ahead log into the file).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The offset reached per shard.
    pub async fn offsets(&self) -> Result<BTreeMap<String, i64>, CacheError> {
        let rows = sqlx::query("SELECT shard, ledger_offset FROM shard_offsets")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| Ok((r.try_get("shard")?, r.try_get("ledger_offset")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.error(e))
    }

    /// The offset `shard`'s feed reached; `None` before its first snapshot.
    pub async fn offset(&self, shard: &str) -> Result<Option<i64>, CacheError> {
        sqlx::query_scalar("SELECT ledger_offset FROM shard_offsets WHERE shard = ?")
            .bind(shard)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    /// Replaces everything stored of `shard` by a snapshot: `contracts` (each with the
    /// shard's parties who see it as its witnesses), active at `offset`.
    pub async fn replace_shard(
        &self,
        shard: &str,
        offset: i64,
        contracts: &[Contract],
    ) -> Result<(), CacheError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        let removed = async {
            sqlx::query("DELETE FROM contract_parties WHERE shard = ?")
                .bind(shard)
                .execute(&mut *tx)
                .await?;
            let removed = sqlx::query("DELETE FROM contracts WHERE shard = ?")
                .bind(shard)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let mut added = 0;
            for c in contracts {
                added += insert(&mut tx, shard, c).await?;
            }
            set_offset(&mut tx, shard, offset).await?;
            Ok::<_, sqlx::Error>(added as i64 - removed as i64)
        }
        .await
        .map_err(|e| self.error(e))?;
        tx.commit().await.map_err(|e| self.error(e))?;
        self.contracts.fetch_add(removed, Ordering::Relaxed);
        Ok(())
    }

    /// Applies one transaction of `shard` at `offset`: its creates (each with the shard's
    /// parties who see it as its witnesses) and archives, and the new offset, atomically.
    pub async fn apply(
        &self,
        shard: &str,
        offset: i64,
        events: &[Event],
    ) -> Result<(), CacheError> {
        self.apply_many(shard, &[(offset, events)]).await
    }

    /// Applies transactions of `shard` in offset order, as [`Store::apply`] would one by
    /// one, in one SQLite transaction: the offset moves to the last.
    pub async fn apply_many(
        &self,
        shard: &str,
        transactions: &[(i64, &[Event])],
    ) -> Result<(), CacheError> {
        let Some((offset, _)) = transactions.last() else {
            return Ok(());
        };
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        let delta = async {
            let mut delta = 0i64;
            for event in transactions.iter().flat_map(|(_, events)| events.iter()) {
                match event {
                    Event::Created(c) => delta += insert(&mut tx, shard, c).await? as i64,
                    Event::Archived(a) => {
                        sqlx::query(
                            "DELETE FROM contract_parties WHERE shard = ? AND contract_id = ?",
                        )
                        .bind(shard)
                        .bind(&a.contract_id)
                        .execute(&mut *tx)
                        .await?;
                        delta -= sqlx::query(
                            "DELETE FROM contracts WHERE shard = ? AND contract_id = ?",
                        )
                        .bind(shard)
                        .bind(&a.contract_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected() as i64;
                    }
                }
            }
            set_offset(&mut tx, shard, *offset).await?;
            Ok::<_, sqlx::Error>(delta)
        }
        .await
        .map_err(|e| self.error(e))?;
        tx.commit().await.map_err(|e| self.error(e))?;
        self.contracts.fetch_add(delta, Ordering::Relaxed);
        Ok(())
    }

    /// The active contracts `parties` see (of `templates`; empty: all), each once, by
    /// shard and creation offset.
    pub async fn active_contracts(
        &self,
        parties: &[String],
        templates: &[String],
    ) -> Result<Vec<Contract>, CacheError> {
        self.select(parties, templates, None).await
    }

    /// The active contract `contract_id` if one of `parties` sees it.
    pub async fn fetch(
        &self,
        parties: &[String],
        contract_id: &str,
    ) -> Result<Option<Contract>, CacheError> {
        Ok(self
            .select(parties, &[], Some(contract_id))
            .await?
            .into_iter()
            .next())
    }

    async fn select(
        &self,
        parties: &[String],
        templates: &[String],
        contract_id: Option<&str>,
    ) -> Result<Vec<Contract>, CacheError> {
        if parties.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT DISTINCT c.shard, c.created_offset, c.contract_id, c.contract \
             FROM contract_parties p JOIN contracts c \
             ON c.shard = p.shard AND c.contract_id = p.contract_id WHERE p.party IN (",
        );
        let mut list = q.separated(", ");
        for p in parties {
            list.push_bind(p);
        }
        q.push(")");
        if !templates.is_empty() {
            q.push(" AND p.template_id IN (");
            let mut list = q.separated(", ");
            for t in templates {
                list.push_bind(t);
            }
            q.push(")");
        }
        if let Some(id) = contract_id {
            q.push(" AND p.contract_id = ").push_bind(id);
        }
        q.push(" ORDER BY c.shard, c.created_offset, c.contract_id");
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for row in rows {
            let text: String = row.try_get("contract").map_err(|e| self.error(e))?;
            let contract: Contract = serde_json::from_str(&text).map_err(|e| CacheError::File {
                file: self.file.clone(),
                reason: format!("a stored contract does not parse: {e}"),
            })?;
            // A cross-shard contract is stored by each shard: answered once.
            if seen.insert(contract.contract_id.clone()) {
                out.push(contract);
            }
        }
        Ok(out)
    }
}

/// Inserts one contract of `shard` seen by its witnesses; the rows added to `contracts`.
async fn insert(
    conn: &mut SqliteConnection,
    shard: &str,
    c: &Contract,
) -> Result<u64, sqlx::Error> {
    let json = serde_json::to_string(c).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let added = sqlx::query(
        "INSERT OR IGNORE INTO contracts (shard, contract_id, template_id, created_offset, contract) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(shard)
    .bind(&c.contract_id)
    .bind(&c.template_id)
    .bind(c.offset)
    .bind(json)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    for party in &c.witnesses {
        sqlx::query(
            "INSERT OR IGNORE INTO contract_parties (party, template_id, shard, contract_id) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(party)
        .bind(&c.template_id)
        .bind(shard)
        .bind(&c.contract_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(added)
}

async fn set_offset(
    conn: &mut SqliteConnection,
    shard: &str,
    offset: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO shard_offsets (shard, ledger_offset) VALUES (?, ?) \
         ON CONFLICT (shard) DO UPDATE SET ledger_offset = excluded.ledger_offset",
    )
    .bind(shard)
    .bind(offset)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `file` with `suffix` appended to its name.
fn sibling(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// SQLite's write-ahead log and shared-memory index of `file`: left over from another
/// file, they must not be replayed into a new one.
pub(super) fn remove_side_files(file: &Path) -> Result<(), CacheError> {
    for suffix in ["-wal", "-shm"] {
        let side = sibling(file, suffix);
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CacheError::File {
                    file: side,
                    reason: format!("cannot remove it: {e}"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ordo_ledger_client::Archived;
    use serde_json::json;

    use super::*;

    fn iou(id: &str, witnesses: &[&str], offset: i64) -> Contract {
        Contract {
            contract_id: id.into(),
            template_id: "iou:Iou".into(),
            package_id: "p".into(),
            payload: json!({"owner": witnesses.first().copied().unwrap_or_default()}),
            signatories: vec!["bank".into()],
            observers: vec![],
            key: None,
            witnesses: witnesses.iter().map(|w| (*w).to_owned()).collect(),
            offset,
            created_at: 0,
        }
    }

    fn archived(id: &str) -> Event {
        Event::Archived(Archived {
            contract_id: id.into(),
            template_id: "iou:Iou".into(),
            witnesses: vec![],
        })
    }

    fn ids(contracts: &[Contract]) -> Vec<&str> {
        contracts.iter().map(|c| c.contract_id.as_str()).collect()
    }

    fn strings(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| (*x).to_owned()).collect()
    }

    #[tokio::test]
    async fn creates_and_archives_apply_with_the_offset_per_shard() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache.sqlite");
        let (store, opened) = Store::open(&file).await.unwrap();
        assert_eq!(opened, Opened::Created);
        assert_eq!(store.offset("shard-1").await.unwrap(), None);

        store
            .replace_shard(
                "shard-1",
                4,
                &[iou("c1", &["alice", "bank"], 1), iou("c2", &["bank"], 3)],
            )
            .await
            .unwrap();
        // c3 was transferred from shard-1's alice to shard-2's bob: each shard stores it.
        store
            .apply("shard-1", 5, &[Event::Created(iou("c3", &["bank"], 5))])
            .await
            .unwrap();
        store
            .apply("shard-2", 9, &[Event::Created(iou("c3", &["bob"], 9))])
            .await
            .unwrap();
        assert_eq!(store.contract_count(), 4);
        let offsets = store.offsets().await.unwrap();
        assert_eq!(offsets.get("shard-1"), Some(&5));
        assert_eq!(offsets.get("shard-2"), Some(&9));

        let all = strings(&["alice", "bank", "bob"]);
        assert_eq!(
            ids(&store.active_contracts(&all, &[]).await.unwrap()),
            ["c1", "c2", "c3"]
        );
        let alice = strings(&["alice"]);
        assert_eq!(
            ids(&store.active_contracts(&alice, &[]).await.unwrap()),
            ["c1"]
        );
        let other = strings(&["other:T"]);
        assert!(
            store
                .active_contracts(&all, &other)
                .await
                .unwrap()
                .is_empty()
        );
        let bob = strings(&["bob"]);
        assert!(store.fetch(&bob, "c3").await.unwrap().is_some());
        assert!(store.fetch(&bob, "c1").await.unwrap().is_none());
        assert!(store.active_contracts(&[], &[]).await.unwrap().is_empty());

        // Archives remove the shard's copy only.
        store
            .apply("shard-1", 6, &[archived("c1"), archived("c3")])
            .await
            .unwrap();
        assert_eq!(
            ids(&store.active_contracts(&all, &[]).await.unwrap()),
            ["c2", "c3"]
        );
        assert!(
            store
                .active_contracts(&alice, &[])
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.contract_count(), 2);
        assert_eq!(store.offset("shard-1").await.unwrap(), Some(6));

        // Transactions applied together: a later one sees what an earlier one created,
        // and the offset is the last one's.
        let c5 = [Event::Created(iou("c5", &["alice"], 7))];
        let c6 = [Event::Created(iou("c6", &["alice"], 8))];
        let gone = [archived("c5")];
        store
            .apply_many("shard-1", &[(7, &c5), (8, &c6), (9, &gone)])
            .await
            .unwrap();
        assert_eq!(
            ids(&store.active_contracts(&alice, &[]).await.unwrap()),
            ["c6"]
        );
        assert_eq!(store.offset("shard-1").await.unwrap(), Some(9));
        store.apply_many("shard-1", &[]).await.unwrap();
        assert_eq!(store.offset("shard-1").await.unwrap(), Some(9));
        store.apply("shard-1", 10, &[archived("c6")]).await.unwrap();
        assert_eq!(store.contract_count(), 2);

        // A new snapshot replaces what was there of the shard, and nothing else.
        store
            .replace_shard("shard-1", 2, &[iou("c9", &["alice"], 2)])
            .await
            .unwrap();
        assert_eq!(
            ids(&store.active_contracts(&all, &[]).await.unwrap()),
            ["c9", "c3"]
        );
        assert_eq!(store.offset("shard-1").await.unwrap(), Some(2));
        assert_eq!(store.contract_count(), 2);
        store.close().await;

        // Reopened: the same contents and offsets.
        let (store, opened) = Store::open(&file).await.unwrap();
        assert_eq!(opened, Opened::Existing);
        assert_eq!(store.contract_count(), 2);
        assert_eq!(store.offset("shard-2").await.unwrap(), Some(9));
        assert_eq!(
            ids(&store.active_contracts(&all, &[]).await.unwrap()),
            ["c9", "c3"]
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_corrupt_file_or_another_version_is_moved_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache.sqlite");
        std::fs::write(
            &file,
            b"this is not a database, but it is long enough to look like one; \
            SQLite reads the first hundred bytes as its header and finds no magic string there.",
        )
        .unwrap();
        let (store, opened) = Store::open(&file).await.unwrap();
        assert!(
            matches!(&opened, Opened::Replaced(reason) if !reason.is_empty()),
            "{opened:?}"
        );
        assert!(dir.path().join("cache.sqlite.corrupt").exists());
        store
            .replace_shard("shard-1", 3, &[iou("c1", &["alice"], 1)])
            .await
            .unwrap();
        sqlx::query("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
            .execute(&store.pool)
            .await
            .unwrap();
        store.close().await;

        let (store, opened) = Store::open(&file).await.unwrap();
        assert!(
            matches!(&opened, Opened::Replaced(reason) if reason.contains("999")),
            "{opened:?}"
        );
        assert_eq!(store.offset("shard-1").await.unwrap(), None);
        assert_eq!(store.contract_count(), 0);
        store.close().await;
    }

    #[tokio::test]
    async fn a_missing_file_is_created_with_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data/cache.sqlite");
        // A write-ahead log left behind by a deleted file is not replayed.
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/cache.sqlite-wal"), b"stale").unwrap();
        let (store, opened) = Store::open(&file).await.unwrap();
        assert_eq!(opened, Opened::Created);
        assert!(store.offsets().await.unwrap().is_empty());
        store.close().await;
    }
}
