//! The cache's SQLite file: the active contracts of each shard with the parties of that
//! shard who see them, and the offset each shard's feed reached. A transaction's creates
//! and archives commit together with its offset, so the file is always the shard's state
//! at the stored offset and a restart resumes from there.
//!
//! Tables: `meta` (the schema version), `shard_offsets` (shard → offset), `contracts` (a
//! row id, shard, contract id → the contract as JSON), `contract_parties` (party,
//! template, row id: who sees what) and `contract_fields` (party, template, field, key
//! kind, key, row id: the index `/v1/query` conditions are range scans of, see
//! `index` and `read`). A contract seen on two shards (a cross-shard Iou) is stored once
//! per shard, each with that shard's parties.
//!
//! `contract_fields` carries the party, so that a query's cost is its answer's size: a
//! range of one party's amounts is one scan of the primary key, whatever other parties
//! hold. It costs a row per witness, field and key kind of every contract (an Iou seen by
//! two parties of the shard: 10 rows), written with the contract and deleted with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ordo_ledger_client::{Contract, Event};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::read::{self, Snapshot};
use super::{CacheError, index};
use crate::filter::Filter;

/// Bumped when the tables change; a file of another version is rebuilt. 2: the
/// `contract_fields` index and integer row ids; 3: contract keys in `contract_fields`.
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &[&str] = &[
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE shard_offsets (shard TEXT PRIMARY KEY, ledger_offset INTEGER NOT NULL) \
     WITHOUT ROWID",
    "CREATE TABLE contracts (id INTEGER PRIMARY KEY, shard TEXT NOT NULL, \
     contract_id TEXT NOT NULL, template_id TEXT NOT NULL, created_offset INTEGER NOT NULL, \
     contract TEXT NOT NULL, UNIQUE (shard, contract_id))",
    // A contract's copies on other shards (answered once).
    "CREATE INDEX contracts_by_contract_id ON contracts (contract_id)",
    "CREATE TABLE contract_parties (party TEXT NOT NULL, template_id TEXT NOT NULL, \
     id INTEGER NOT NULL, PRIMARY KEY (party, template_id, id)) WITHOUT ROWID",
    "CREATE INDEX contract_parties_of_contract ON contract_parties (id)",
    "CREATE TABLE contract_fields (party TEXT NOT NULL, template_id TEXT NOT NULL, \
     field TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, id INTEGER NOT NULL, \
     PRIMARY KEY (party, template_id, field, kind, key, id)) WITHOUT ROWID",
    // Deletes, and a query's further conditions checked per contract.
    "CREATE INDEX contract_fields_of_contract ON contract_fields (id, field, kind, key)",
];

/// Readers at once (queries, each holding a connection while it answers); writes go one at
/// a time through a connection of their own, so that readers never hold them up.
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
    /// The readers.
    pool: SqlitePool,
    /// The one writing connection (the readers' pool when read-only).
    writes: SqlitePool,
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
            .connect_with(options.clone())
            .await?;
        let writes = if mode == Mode::ReadOnly {
            pool.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await?
        };
        Ok(Self {
            pool,
            writes,
            file: file.to_owned(),
            writer: tokio::sync::Mutex::new(()),
            contracts: AtomicI64::new(0),
        })
    }

    fn error(&self, e: sqlx::Error) -> CacheError {
        CacheError::sqlite(&self.file, e)
    }

    #[cfg(test)]
    pub(super) fn pool_for_tests(&self) -> SqlitePool {
        self.pool.clone()
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
        self.writes.close().await;
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
        let mut tx = self.writes.begin().await.map_err(|e| self.error(e))?;
        let removed = async {
            for statement in [
                "DELETE FROM contract_fields WHERE id IN (SELECT id FROM contracts WHERE shard = ?)",
                "DELETE FROM contract_parties WHERE id IN (SELECT id FROM contracts WHERE shard = ?)",
            ] {
                sqlx::query(statement)
                .bind(shard)
                .execute(&mut *tx)
                .await?;
            }
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
        let mut tx = self.writes.begin().await.map_err(|e| self.error(e))?;
        let delta = async {
            let mut delta = 0i64;
            for event in transactions.iter().flat_map(|(_, events)| events.iter()) {
                match event {
                    Event::Created(c) => delta += insert(&mut tx, shard, c).await? as i64,
                    Event::Archived(a) => delta -= remove(&mut tx, shard, &a.contract_id).await?,
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

    /// The active contracts `parties` see (of `templates`; empty: all), each once, all
    /// at once: for tests and small answers (queries read [`Snapshot`] pages).
    pub async fn active_contracts(
        &self,
        parties: &[String],
        templates: &[String],
    ) -> Result<Vec<Contract>, CacheError> {
        let filter = Filter::Any(templates.to_vec());
        let mut snapshot = self.snapshot().await?;
        let mut out = Vec::new();
        let mut from = None;
        loop {
            let page = snapshot.page(parties, &filter, from.as_ref(), 1000).await?;
            out.extend(page.contracts);
            match page.next {
                Some(next) => from = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// A consistent view of the file for reading pages (one read transaction, holding
    /// one of the readers' connections until dropped).
    pub async fn snapshot(&self) -> Result<Snapshot, CacheError> {
        let tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        Ok(Snapshot::new(tx, self.file.clone()))
    }

    /// The active contract `contract_id` if one of `parties` sees it.
    pub async fn fetch(
        &self,
        parties: &[String],
        contract_id: &str,
    ) -> Result<Option<Contract>, CacheError> {
        if parties.is_empty() {
            return Ok(None);
        }
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT c.contract FROM contracts c JOIN contract_parties p ON p.id = c.id \
             WHERE c.contract_id = ",
        );
        q.push_bind(contract_id).push(" AND p.party IN (");
        self.first_seen(q, parties).await
    }

    /// The first contract `q` selects once it is restricted to `parties` (it ends in
    /// `… party IN (`).
    async fn first_seen(
        &self,
        mut q: QueryBuilder<Sqlite>,
        parties: &[String],
    ) -> Result<Option<Contract>, CacheError> {
        let mut list = q.separated(", ");
        for p in parties {
            list.push_bind(p);
        }
        q.push(") LIMIT 1");
        let row = q
            .build()
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        row.map(|r| {
            let text: String = r.try_get("contract").map_err(|e| self.error(e))?;
            read::contract(&text, &self.file)
        })
        .transpose()
    }

    /// The active contract of `template` with the key whose canonical JSON is `key` if
    /// one of `parties` sees it (one index lookup: the key is indexed as a field).
    pub async fn fetch_by_key(
        &self,
        parties: &[String],
        template: &str,
        key: &str,
    ) -> Result<Option<Contract>, CacheError> {
        if parties.is_empty() {
            return Ok(None);
        }
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT c.contract FROM contract_fields f JOIN contracts c ON c.id = f.id \
             WHERE f.template_id = ",
        );
        q.push_bind(template)
            .push(" AND f.field = ")
            .push_bind(index::KEY_FIELD)
            .push(" AND f.kind = ")
            .push_bind(index::TEXT)
            .push(" AND f.key = ")
            .push_bind(key)
            .push(" AND f.party IN (");
        self.first_seen(q, parties).await
    }
}

/// Inserts one contract of `shard` seen by its witnesses, with its index rows; the rows
/// added to `contracts`.
async fn insert(
    conn: &mut SqliteConnection,
    shard: &str,
    c: &Contract,
) -> Result<u64, sqlx::Error> {
    let json = serde_json::to_string(c).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT OR IGNORE INTO contracts (shard, contract_id, template_id, created_offset, contract) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(shard)
    .bind(&c.contract_id)
    .bind(&c.template_id)
    .bind(c.offset)
    .bind(json)
    .fetch_optional(&mut *conn)
    .await?;
    // Stored already (a transaction read twice): its rows are there.
    let Some(id) = id else { return Ok(0) };
    if c.witnesses.is_empty() {
        return Ok(1);
    }
    let mut parties = QueryBuilder::<Sqlite>::new(
        "INSERT OR IGNORE INTO contract_parties (party, template_id, id) ",
    );
    parties.push_values(&c.witnesses, |mut row, party| {
        row.push_bind(party).push_bind(&c.template_id).push_bind(id);
    });
    parties.build().execute(&mut *conn).await?;
    let key_field = index::KEY_FIELD.to_owned();
    let keys: Vec<(&String, &str, String)> = c
        .payload
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(field, value)| {
            index::field_keys(value)
                .into_iter()
                .map(move |(kind, key)| (field, kind, key))
        })
        .chain(
            c.key
                .iter()
                .map(|k| (&key_field, index::TEXT, k.to_string())),
        )
        .collect();
    // SQLite takes at most 32766 parameters a statement: 6 a row.
    let rows: Vec<(&String, &(&String, &str, String))> = c
        .witnesses
        .iter()
        .flat_map(|party| keys.iter().map(move |k| (party, k)))
        .collect();
    for chunk in rows.chunks(5000) {
        let mut fields = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO contract_fields (party, template_id, field, kind, key, id) ",
        );
        fields.push_values(chunk, |mut row, (party, (field, kind, key))| {
            row.push_bind(*party)
                .push_bind(&c.template_id)
                .push_bind(*field)
                .push_bind(*kind)
                .push_bind(key)
                .push_bind(id);
        });
        fields.build().execute(&mut *conn).await?;
    }
    Ok(1)
}

/// Removes contract `contract_id` of `shard` and its index rows; the rows removed from
/// `contracts`.
async fn remove(
    conn: &mut SqliteConnection,
    shard: &str,
    contract_id: &str,
) -> Result<i64, sqlx::Error> {
    let id: Option<i64> = sqlx::query_scalar(
        "DELETE FROM contracts WHERE shard = ? AND contract_id = ? RETURNING id",
    )
    .bind(shard)
    .bind(contract_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(id) = id else { return Ok(0) };
    for statement in [
        "DELETE FROM contract_fields WHERE id = ?",
        "DELETE FROM contract_parties WHERE id = ?",
    ] {
        sqlx::query(statement).bind(id).execute(&mut *conn).await?;
    }
    Ok(1)
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
