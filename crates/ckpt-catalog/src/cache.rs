//! The catalog cache: one SQLite database (a real file users can query with `sqlite3`) that
//! stores, per checkpoint file, an opaque JSON string of the facts derived from the checkpoint
//! itself, keyed by absolute path + size + mtime (ns) + inode. Unchanged checkpoints are never
//! reopened; changed or new ones are (a key mismatch is a miss); deleted ones drop out
//! ([`Cache::forget_missing`]).
//!
//! The file is in WAL mode with a 5 s busy timeout, so two concurrent `ckpt` runs share it. The
//! schema version lives in `PRAGMA user_version` (mirrored in the `meta` table): an older schema
//! is migrated (or dropped and rebuilt: it is only a cache), a newer one is refused without
//! touching the file ([`CacheError::NewerSchema`]).
//!
//! **Ownership.** `--cache-file` is a path the user types, and a typo (`--cache-file last.ckpt`)
//! must never cost them a file. So ckpt only ever writes, moves or removes a cache file it can
//! prove it created: every cache ckpt makes carries `PRAGMA application_id` = [`APPLICATION_ID`]
//! ("ckpt"), read straight from the 100-byte SQLite header without opening the file through
//! SQLite. A cache from before the id existed is recognized read-only by its `meta` table
//! (`created_by = 'ckpt …'`) and gets the id on its next read-write open. Anything else — a
//! checkpoint, another program's database, an empty file, a FIFO — is refused with
//! [`CacheError::NotOurs`] and left exactly as it was. A new cache is built under a temporary name
//! and hard-linked into place (never over an existing file), so a file at the cache's path is
//! either complete and ours or not ours. Only a file proven ours that then shows damage (on
//! opening, the first page of every table is read; later, any page SQLite finds malformed) or
//! lacks our tables is moved aside to `<name>.corrupt-<unix time>` and rebuilt;
//! [`Cache::open`] returns the warning text for the caller to print, and a catalog that meets
//! damage mid-run goes on reading the files and sets the file aside ([`Cache::set_aside`]). [`Cache::read_info`] opens
//! read-only and writes nothing; [`Cache::clear`] removes only a proven cache and its companions.
//!
//! Two layers. `files` holds the checkpoint's own facts (what costs opening the file).
//! `entries` holds the resolved entry (what costs reading and ranking every source around
//! the file), valid only while every path its resolution consulted — configs, logs, folders
//! listed, files checked and found absent — has the fingerprint it had
//! ([`ckpt_meta::consulted`]); the sets of consulted paths are shared between entries in
//! `consulted`, and the large parts of an entry that the checkpoints of a run share (model,
//! hyperparameters, data, sources) are stored once each in `parts`, addressed by a hash of
//! their text. An unchanged tree is answered from `entries` alone; a changed run folder
//! re-resolves its entries from `files` without opening a checkpoint.
//!
//! Schema v2 (v1 had `meta` and `files` only):
//!
//! ```sql
//! CREATE TABLE meta  (key TEXT PRIMARY KEY, value TEXT NOT NULL);
//! CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
//!                     inode INTEGER NOT NULL, facts_version INTEGER NOT NULL,
//!                     facts TEXT NOT NULL, updated_at INTEGER NOT NULL);
//! CREATE TABLE entries (path TEXT PRIMARY KEY, size INTEGER NOT NULL,
//!                     mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,
//!                     version INTEGER NOT NULL, context INTEGER NOT NULL,
//!                     consulted INTEGER NOT NULL, p_model INTEGER NOT NULL,
//!                     p_hparams INTEGER NOT NULL, p_data INTEGER NOT NULL,
//!                     p_sources INTEGER NOT NULL, entry TEXT NOT NULL,
//!                     updated_at INTEGER NOT NULL);
//! CREATE TABLE consulted (id INTEGER PRIMARY KEY, paths TEXT NOT NULL);
//! CREATE TABLE parts (id INTEGER PRIMARY KEY, json TEXT NOT NULL);
//! ```
//!
//! **Objects in buckets** (`s3://`, `gs://`, `az://`) use the same tables, with no change of
//! schema: a key's `path` is the URL (`s3://bucket/key`, without the endpoint: different
//! content has a different ETag, size and time anyway), `size` is the object's, `mtime_ns` its
//! Last-Modified (whole seconds) in ns, and `inode` the FNV-1a hash of its ETag (or version
//! id, [`ckpt_io::Identity::version`]; see [`FileKey::from_identity`]). All four come from
//! the listing, and so do the fingerprints of consulted objects and prefixes
//! ([`ckpt_meta::consulted::object_fingerprint`], [`ckpt_meta::consulted::prefix_fingerprint`]):
//! an unchanged bucket is re-catalogued with LISTs only. An object that could not be read
//! (a network failure, or it changed while it was read) is never written here. The cache
//! file itself is always local.
//!
//! `size`, `inode` and fingerprints are stored as the two's-complement `i64` of the `u64`
//! (SQLite integers are signed); `updated_at` is unix seconds. `context` is a hash of how the
//! checkpoint was reached (the path as typed, the root it was found under); `consulted`
//! points at a row of `consulted`, whose `paths` is a JSON list of `[path, fingerprint]`;
//! `p_*` point at rows of `parts` (0: empty), and `entry` is the entry without them.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

/// How much of the cache file SQLite maps into memory (address space, not memory: pages
/// are read on demand and shared with the page cache).
const MMAP_BYTES: i64 = 1 << 30;

/// `PRAGMA application_id` of every cache ckpt creates: the ASCII bytes "ckpt", big-endian, as
/// SQLite stores it at offset 68 of the database header.
pub const APPLICATION_ID: i32 = i32::from_be_bytes(*b"ckpt");

/// The schema this build writes. Bump it and add a step to [`migrate`] when the tables change.
pub const SCHEMA_VERSION: i64 = 2;

/// The cache file's name inside the cache directory.
pub const FILE_NAME: &str = "catalog.sqlite3";

/// Pages written to the WAL before SQLite checkpoints it into the database.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 4_096;

/// How long a writer waits for another process's write transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SELECT_ONE: &str =
    "SELECT size, mtime_ns, inode, facts_version, facts FROM files WHERE path = ?1";
const UPSERT: &str = "INSERT INTO files (path, size, mtime_ns, inode, facts_version, facts, \
     updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(path) DO UPDATE SET \
     size = excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode, \
     facts_version = excluded.facts_version, facts = excluded.facts, \
     updated_at = excluded.updated_at";
const SELECT_UNDER: &str = "SELECT path FROM files WHERE path = ?1 OR (path >= ?2 AND path < ?3)";
const DELETE_ONE: &str = "DELETE FROM files WHERE path = ?1";
const SELECT_ENTRY: &str = "SELECT size, mtime_ns, inode, version, context, consulted, \
     p_model, p_hparams, p_data, p_sources, entry FROM entries WHERE path = ?1";
const UPSERT_ENTRY: &str = "INSERT INTO entries (path, size, mtime_ns, inode, version, context, \
     consulted, p_model, p_hparams, p_data, p_sources, entry, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
     ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, \
     inode = excluded.inode, version = excluded.version, context = excluded.context, \
     consulted = excluded.consulted, p_model = excluded.p_model, \
     p_hparams = excluded.p_hparams, p_data = excluded.p_data, \
     p_sources = excluded.p_sources, entry = excluded.entry, updated_at = excluded.updated_at";
const SELECT_PART: &str = "SELECT json FROM parts WHERE id = ?1";
const INSERT_PART: &str = "INSERT OR IGNORE INTO parts (id, json) VALUES (?1, ?2)";
/// Parts no entry points at any more.
const DELETE_UNUSED_PARTS: &str = "DELETE FROM parts WHERE id NOT IN (SELECT p_model FROM \
     entries UNION SELECT p_hparams FROM entries UNION SELECT p_data FROM entries UNION \
     SELECT p_sources FROM entries)";
const SELECT_CONSULTED: &str = "SELECT paths FROM consulted WHERE id = ?1";
const INSERT_CONSULTED: &str = "INSERT OR IGNORE INTO consulted (id, paths) VALUES (?1, ?2)";
const DELETE_ENTRY: &str = "DELETE FROM entries WHERE path = ?1";
/// Sets of consulted paths no entry points at any more.
const DELETE_UNUSED_CONSULTED: &str =
    "DELETE FROM consulted WHERE id NOT IN (SELECT consulted FROM entries)";

/// A resolved entry to store: the checkpoint's key, the context it was resolved in, the id of
/// the set of paths its resolution consulted, and its text.
#[derive(Debug, Clone)]
pub struct EntryRow {
    pub key: FileKey,
    pub context: i64,
    pub consulted: i64,
    /// Ids in `parts` of the model, hyperparameters, data and sources (0: empty).
    pub parts: [i64; 4],
    pub entry: String,
}

/// A stored entry found for a key and context: the id of its consulted set (to check before
/// use) and its text.
#[derive(Debug, Clone)]
pub struct EntryHit {
    pub consulted: i64,
    pub parts: [i64; 4],
    pub entry: String,
}

/// Identity of one checkpoint file as seen on disk: a cached row is used only if all four match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// Absolute path, exactly as given (not canonicalised).
    pub path: String,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch (negative before it).
    pub mtime_ns: i64,
    /// Inode number; 0 on platforms without one.
    pub inode: u64,
}

impl FileKey {
    /// The key of `path` from its (already fetched) metadata.
    pub fn from_metadata(path: &str, meta: &std::fs::Metadata) -> FileKey {
        FileKey::from_identity(path, &ckpt_io::Identity::of_metadata(meta))
    }
}

impl FileKey {
    /// The key of `path` from a [`ckpt_io::Stat`] (a listing's, or `stat`'s): for a local file
    /// the same key as [`FileKey::from_metadata`]; for an object, see [`FileKey::from_identity`].
    pub fn from_stat(path: &str, stat: &ckpt_io::Stat) -> FileKey {
        FileKey::from_identity(path, &stat.identity)
    }

    /// The key of `path` from its identity. An object's is (its URL, size, Last-Modified in ns,
    /// `inode` := [`ckpt_io::Identity::version`], the FNV-1a of its ETag or version id): all
    /// from the listing, so an unchanged bucket is checked against the cache without a GET.
    pub fn from_identity(path: &str, id: &ckpt_io::Identity) -> FileKey {
        FileKey {
            path: path.to_owned(),
            size: id.size,
            mtime_ns: id.mtime_ns,
            inode: id.version,
        }
    }
}

/// Why the cache could not be used. Every variant names the cache file.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// SQLite refused an operation (locked past the busy timeout, read-only, disk full, ...).
    #[error("cache {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A filesystem operation on the cache file or its directory failed.
    #[error("cache {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file at the cache path is not a cache ckpt created (a checkpoint, another program's
    /// database, an empty file, a directory, a FIFO): it is never read through SQLite, written,
    /// moved or removed.
    #[error(
        "cache file {path} is not a ckpt cache ({reason}); refusing to use, move or remove it \
         (pick another --cache-file, or --no-cache)"
    )]
    NotOurs { path: PathBuf, reason: String },
    /// The file was written by a newer ckpt; it is left untouched.
    #[error(
        "cache {path} was written by a newer ckpt (schema {found}; this ckpt supports up to \
         {supported}); upgrade ckpt or use --no-cache / a different --cache-dir"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
}

impl CacheError {
    /// SQLite found the file damaged (a page that does not parse, not a database): the
    /// cache cannot be trusted, though the run can go on without it.
    pub fn is_corruption(&self) -> bool {
        matches!(self, CacheError::Sqlite { source, .. } if is_corruption(source))
    }
}

/// What `ckpt cache info` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheInfo {
    pub path: String,
    pub schema_version: i64,
    pub entries: u64,
    /// The database file plus its write-ahead log, in bytes.
    pub size_bytes: u64,
}

/// An open cache database.
pub struct Cache {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("path", &self.path).finish()
    }
}

/// Why opening failed: either a plain error to return, or a sign the file is unusable
/// (not a database, corrupt, foreign schema) and should be moved aside and rebuilt.
enum OpenFailure {
    Error(CacheError),
    Corrupt(String),
}

impl Cache {
    /// `$CKPT_CACHE_DIR`, else `$XDG_CACHE_HOME/ckpt`, else `$HOME/.cache/ckpt`; file
    /// [`FILE_NAME`].
    pub fn default_path() -> PathBuf {
        default_path_from(|name| std::env::var_os(name))
    }

    /// Open the cache at `path`, or create it (and its parent directories) when nothing is
    /// there. A file that is not provably ours is refused ([`CacheError::NotOurs`]) untouched.
    /// The second element is a warning to show the user when a cache of ours turned out to be
    /// unusable and was moved aside and rebuilt.
    pub fn open(path: &Path) -> Result<(Cache, Option<String>), CacheError> {
        let io = |source| CacheError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Two rounds at most: a cache another process creates between our look and our
        // create is found on the second look.
        for _ in 0..2 {
            match ownership(path)? {
                Ownership::Missing => create_new(path)?,
                Ownership::NotOurs(reason) => {
                    return Err(CacheError::NotOurs {
                        path: path.to_path_buf(),
                        reason,
                    });
                }
                Ownership::Ours | Ownership::Legacy => return open_owned(path),
            }
        }
        Err(io(std::io::Error::other(
            "the cache file keeps disappearing while it is being opened",
        )))
    }

    /// Move a cache found damaged during a run (see [`CacheError::is_corruption`]) aside to
    /// `<name>.corrupt-<unix time>`, as opening does with one found damaged then, so the next
    /// run starts a new one. Only a file still proven ours is moved; the connections to it
    /// must be closed first. Returns the warning to print.
    pub fn set_aside(path: &Path, reason: &str) -> Result<String, CacheError> {
        match ownership(path)? {
            Ownership::Ours | Ownership::Legacy => {}
            Ownership::Missing => {
                return Ok(format!(
                    "cache {} was damaged ({reason}) and is gone already",
                    path.display()
                ));
            }
            Ownership::NotOurs(why) => {
                return Err(CacheError::NotOurs {
                    path: path.to_path_buf(),
                    reason: why,
                });
            }
        }
        let aside = move_aside(path)?;
        Ok(format!(
            "cache {} is damaged ({reason}); went on without it, moved it to {} (the next run \
             starts a new one)",
            path.display(),
            aside.display()
        ))
    }

    /// What `ckpt cache info` shows, without writing anything: no file is created, migrated,
    /// moved or touched (the database is opened read-only, and only after its header proved it
    /// ours). `Ok(None)` when there is no file at `path`.
    pub fn read_info(path: &Path) -> Result<Option<CacheInfo>, CacheError> {
        match ownership(path)? {
            Ownership::Missing => return Ok(None),
            Ownership::NotOurs(reason) => {
                return Err(CacheError::NotOurs {
                    path: path.to_path_buf(),
                    reason,
                });
            }
            Ownership::Ours | Ownership::Legacy => {}
        }
        let conn = open_read_only(path).map_err(|source| sqlite_err(path, source))?;
        let cache = Cache {
            conn,
            path: path.to_path_buf(),
        };
        cache.info().map(Some)
    }

    /// A second, read-only connection to this cache, for a thread that reads rows while
    /// this one writes (WAL mode: readers see the last commit and never wait for writers).
    pub fn reader(&self) -> Result<Cache, CacheError> {
        let err = |source| sqlite_err(&self.path, source);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)
            .map_err(err)?;
        Ok(Cache {
            conn,
            path: self.path.clone(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For each key (in order), the stored JSON if a row exists with the same path, size,
    /// mtime, inode and `facts_version`; `None` otherwise.
    pub fn get_many(
        &self,
        keys: &[FileKey],
        facts_version: i64,
    ) -> Result<Vec<Option<String>>, CacheError> {
        let err = |source| self.sqlite_err(source);
        // One read transaction: one snapshot, and no per-statement lock traffic.
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        let mut out = Vec::with_capacity(keys.len());
        {
            let mut stmt = tx.prepare_cached(SELECT_ONE).map_err(err)?;
            for key in keys {
                let mut rows = stmt.query([&key.path]).map_err(err)?;
                let hit = match rows.next().map_err(err)? {
                    Some(row)
                        if row.get::<_, i64>(0).map_err(err)? == to_sql_u64(key.size)
                            && row.get::<_, i64>(1).map_err(err)? == key.mtime_ns
                            && row.get::<_, i64>(2).map_err(err)? == to_sql_u64(key.inode)
                            && row.get::<_, i64>(3).map_err(err)? == facts_version =>
                    {
                        Some(row.get::<_, String>(4).map_err(err)?)
                    }
                    _ => None,
                };
                out.push(hit);
            }
        }
        tx.finish().map_err(err)?;
        Ok(out)
    }

    /// Insert or replace the rows for these keys, in one transaction.
    pub fn put_many(
        &mut self,
        rows: &[(FileKey, String)],
        facts_version: i64,
    ) -> Result<(), CacheError> {
        if rows.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let err = |source| sqlite_err(path, source);
        let now = unix_now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        {
            let mut stmt = tx.prepare_cached(UPSERT).map_err(err)?;
            for (key, facts) in rows {
                stmt.execute(params![
                    key.path,
                    to_sql_u64(key.size),
                    key.mtime_ns,
                    to_sql_u64(key.inode),
                    facts_version,
                    facts,
                    now
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// For each (key, context), the stored entry if a row exists with the same path, size,
    /// mtime, inode, `version` and context; `None` otherwise. Whether the paths it consulted
    /// are unchanged is for the caller to check ([`Cache::get_consulted`]).
    pub fn get_entries(
        &self,
        keys: &[(FileKey, i64)],
        version: i64,
    ) -> Result<Vec<Option<EntryHit>>, CacheError> {
        let err = |source| self.sqlite_err(source);
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        let mut out = Vec::with_capacity(keys.len());
        {
            let mut stmt = tx.prepare_cached(SELECT_ENTRY).map_err(err)?;
            for (key, context) in keys {
                let mut rows = stmt.query([&key.path]).map_err(err)?;
                let hit = match rows.next().map_err(err)? {
                    Some(row)
                        if row.get::<_, i64>(0).map_err(err)? == to_sql_u64(key.size)
                            && row.get::<_, i64>(1).map_err(err)? == key.mtime_ns
                            && row.get::<_, i64>(2).map_err(err)? == to_sql_u64(key.inode)
                            && row.get::<_, i64>(3).map_err(err)? == version
                            && row.get::<_, i64>(4).map_err(err)? == *context =>
                    {
                        Some(EntryHit {
                            consulted: row.get(5).map_err(err)?,
                            parts: [
                                row.get(6).map_err(err)?,
                                row.get(7).map_err(err)?,
                                row.get(8).map_err(err)?,
                                row.get(9).map_err(err)?,
                            ],
                            entry: row.get(10).map_err(err)?,
                        })
                    }
                    _ => None,
                };
                out.push(hit);
            }
        }
        tx.finish().map_err(err)?;
        Ok(out)
    }

    /// The stored sets of consulted paths (JSON text), by id; `None` for an unknown id.
    pub fn get_consulted(&self, ids: &[i64]) -> Result<Vec<Option<String>>, CacheError> {
        self.get_texts(SELECT_CONSULTED, ids)
    }

    /// The stored parts of entries (JSON text), by id; `None` for an unknown id.
    pub fn get_parts(&self, ids: &[i64]) -> Result<Vec<Option<String>>, CacheError> {
        self.get_texts(SELECT_PART, ids)
    }

    fn get_texts(&self, sql: &str, ids: &[i64]) -> Result<Vec<Option<String>>, CacheError> {
        let err = |source| self.sqlite_err(source);
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        let mut out = Vec::with_capacity(ids.len());
        {
            let mut stmt = tx.prepare_cached(sql).map_err(err)?;
            for id in ids {
                out.push(
                    stmt.query_row([id], |r| r.get::<_, String>(0))
                        .optional()
                        .map_err(err)?,
                );
            }
        }
        tx.finish().map_err(err)?;
        Ok(out)
    }

    /// Store resolved entries and the consulted sets and parts they point at, in one
    /// transaction.
    pub fn put_entries(
        &mut self,
        rows: &[EntryRow],
        consulted: &[(i64, String)],
        parts: &[(i64, String)],
        version: i64,
    ) -> Result<(), CacheError> {
        if rows.is_empty() && consulted.is_empty() && parts.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let err = |source| sqlite_err(path, source);
        let now = unix_now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        {
            let mut stmt = tx.prepare_cached(INSERT_CONSULTED).map_err(err)?;
            for (id, paths) in consulted {
                stmt.execute(params![id, paths]).map_err(err)?;
            }
            let mut stmt = tx.prepare_cached(INSERT_PART).map_err(err)?;
            for (id, json) in parts {
                stmt.execute(params![id, json]).map_err(err)?;
            }
            let mut stmt = tx.prepare_cached(UPSERT_ENTRY).map_err(err)?;
            for r in rows {
                stmt.execute(params![
                    r.key.path,
                    to_sql_u64(r.key.size),
                    r.key.mtime_ns,
                    to_sql_u64(r.key.inode),
                    version,
                    r.context,
                    r.consulted,
                    r.parts[0],
                    r.parts[1],
                    r.parts[2],
                    r.parts[3],
                    r.entry,
                    now
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Delete the rows whose path is one of `roots` or lies under one of them (on a path
    /// component boundary: `/a/b` covers `/a/b/c.ckpt`, not `/a/bc.ckpt`) and is not in
    /// `seen`: checkpoints deleted since the last run drop out. Returns how many were deleted.
    /// Roots are compared as strings, so give them in the same form as the keys' paths; an
    /// empty root is ignored.
    pub fn forget_missing(
        &mut self,
        roots: &[String],
        seen: &HashSet<String>,
    ) -> Result<usize, CacheError> {
        let doomed = self.missing_under(roots, seen)?;
        self.forget(&doomed)
    }

    /// The paths of rows under `roots` that are not in `seen`, sorted, each once. Only reads:
    /// a run asks its read-ahead connection, while it writes through the other, and takes
    /// the write lock ([`Cache::forget`]) only when something is to be forgotten.
    pub fn missing_under(
        &self,
        roots: &[String],
        seen: &HashSet<String>,
    ) -> Result<Vec<String>, CacheError> {
        let err = |source| self.sqlite_err(source);
        let mut doomed: Vec<String> = Vec::new();
        let mut select = self.conn.prepare_cached(SELECT_UNDER).map_err(err)?;
        for root in roots.iter().filter(|r| !r.is_empty()) {
            let base = trim_trailing_separators(root);
            for sep in SEPARATORS {
                // Every path that starts with `base` + `sep` sorts in [base+sep, base+(sep+1))
                // under SQLite's BINARY collation (memcmp on UTF-8): a range on the primary key.
                let mut lower = base.to_owned();
                lower.push(*sep);
                let mut upper = base.to_owned();
                upper.push(char::from(*sep as u8 + 1));
                // The root itself (a single checkpoint given as a root); "" for "/" matches none.
                let exact = if base.is_empty() { "\u{0}" } else { base };
                let mut rows = select.query(params![exact, lower, upper]).map_err(err)?;
                while let Some(row) = rows.next().map_err(err)? {
                    let p: String = row.get(0).map_err(err)?;
                    if !seen.contains(&p) {
                        doomed.push(p);
                    }
                }
            }
        }
        doomed.sort_unstable();
        doomed.dedup();
        Ok(doomed)
    }

    /// Remove the rows (facts and entries) of these paths, and the consulted sets and parts
    /// no entry uses any more. Returns how many paths were given; nothing is written for none.
    pub fn forget(&mut self, doomed: &[String]) -> Result<usize, CacheError> {
        if doomed.is_empty() {
            return Ok(0);
        }
        let path = &self.path;
        let err = |source| sqlite_err(path, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        {
            let mut delete = tx.prepare_cached(DELETE_ONE).map_err(err)?;
            let mut delete_entry = tx.prepare_cached(DELETE_ENTRY).map_err(err)?;
            for p in doomed {
                delete.execute([p]).map_err(err)?;
                delete_entry.execute([p]).map_err(err)?;
            }
            tx.execute(DELETE_UNUSED_CONSULTED, []).map_err(err)?;
            tx.execute(DELETE_UNUSED_PARTS, []).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(doomed.len())
    }

    /// Location, schema, number of rows and size on disk.
    pub fn info(&self) -> Result<CacheInfo, CacheError> {
        let err = |source| self.sqlite_err(source);
        let schema_version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        let entries: i64 = self
            .conn
            .query_row("SELECT count(*) FROM files", [], |r| r.get(0))
            .map_err(err)?;
        let size_bytes = [self.path.clone(), sibling(&self.path, "-wal")]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        Ok(CacheInfo {
            path: self.path.display().to_string(),
            schema_version,
            entries: u64::try_from(entries).unwrap_or(0),
            size_bytes,
        })
    }

    /// Remove the cache file and its `-wal`/`-shm`/`-journal` companions, only once the file
    /// is proven to be a ckpt cache: anything else at `path` is refused untouched
    /// ([`CacheError::NotOurs`]), and a symbolic link is refused rather than followed or
    /// removed. `Ok(false)` when there was nothing to remove.
    pub fn clear(path: &Path) -> Result<bool, CacheError> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(CacheError::NotOurs {
                    path: path.to_path_buf(),
                    reason: "a symbolic link; name the cache file itself".to_owned(),
                });
            }
            _ => {}
        }
        match ownership(path)? {
            Ownership::Missing => return Ok(false),
            Ownership::NotOurs(reason) => {
                return Err(CacheError::NotOurs {
                    path: path.to_path_buf(),
                    reason,
                });
            }
            Ownership::Ours | Ownership::Legacy => {}
        }
        for p in [
            path.to_path_buf(),
            sibling(path, "-wal"),
            sibling(path, "-shm"),
            sibling(path, "-journal"),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(CacheError::Io { path: p, source }),
            }
        }
        Ok(true)
    }

    fn sqlite_err(&self, source: rusqlite::Error) -> CacheError {
        sqlite_err(&self.path, source)
    }
}

/// The directory separators a root may be followed by (both on Windows).
#[cfg(windows)]
const SEPARATORS: &[char] = &['/', '\\'];
#[cfg(not(windows))]
const SEPARATORS: &[char] = &['/'];

fn trim_trailing_separators(root: &str) -> &str {
    root.trim_end_matches(SEPARATORS)
}

fn sqlite_err(path: &Path, source: rusqlite::Error) -> CacheError {
    CacheError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// SQLite integers are i64: store a u64 as its two's-complement bit pattern (lossless both ways).
fn to_sql_u64(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `path` with `suffix` appended to its file name (`catalog.sqlite3` -> `catalog.sqlite3-wal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn default_path_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let non_empty = |name: &str| env(name).filter(|v| !v.is_empty());
    let dir = if let Some(dir) = non_empty("CKPT_CACHE_DIR") {
        PathBuf::from(dir)
    } else if let Some(xdg) = non_empty("XDG_CACHE_HOME").map(PathBuf::from)
        // The XDG spec: a relative value is invalid and must be ignored.
        && xdg.is_absolute()
    {
        xdg.join("ckpt")
    } else if let Some(home) = non_empty("HOME") {
        PathBuf::from(home).join(".cache").join("ckpt")
    } else if let Some(local) = non_empty("LOCALAPPDATA") {
        PathBuf::from(local).join("ckpt")
    } else {
        std::env::temp_dir().join("ckpt-cache")
    };
    dir.join(FILE_NAME)
}

/// Whose file is at the cache path (see the module documentation).
enum Ownership {
    /// Nothing there: ckpt may create its cache.
    Missing,
    /// An SQLite database with ckpt's application id.
    Ours,
    /// A cache from a ckpt that did not yet set the application id (recognized by its `meta`
    /// table); it gets the id on its next read-write open.
    Legacy,
    /// Anything else, with the reason in words.
    NotOurs(String),
}

/// The 16 bytes every SQLite 3 database file starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Decide whose file is at `path` from the file type and the 100-byte database header alone,
/// plus — only for an SQLite file without an application id — one read-only query of its
/// `meta` table. Never writes, never blocks on a FIFO.
fn ownership(path: &Path) -> Result<Ownership, CacheError> {
    let io = |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ownership::Missing),
        Err(e) => return Err(io(e)),
    };
    if meta.is_dir() {
        return Ok(Ownership::NotOurs("it is a directory".to_owned()));
    }
    if !meta.is_file() {
        return Ok(Ownership::NotOurs(
            "it is not a regular file (a FIFO, socket or device)".to_owned(),
        ));
    }
    let mut file = open_no_block(path).map_err(io)?;
    // The file may have been swapped between the two looks: trust what was opened.
    if !file.metadata().map_err(io)?.is_file() {
        return Ok(Ownership::NotOurs("it is not a regular file".to_owned()));
    }
    let mut header = [0u8; 100];
    let mut got = 0;
    while got < header.len() {
        match std::io::Read::read(&mut file, &mut header[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    if got == 0 {
        return Ok(Ownership::NotOurs(
            "it is an empty file, and ckpt never leaves an empty cache".to_owned(),
        ));
    }
    if got < header.len() || &header[..16] != SQLITE_MAGIC {
        return Ok(Ownership::NotOurs(
            "it is not an SQLite database".to_owned(),
        ));
    }
    let app = i32::from_be_bytes([header[68], header[69], header[70], header[71]]);
    if app == APPLICATION_ID {
        return Ok(Ownership::Ours);
    }
    if app != 0 {
        return Ok(Ownership::NotOurs(format!(
            "it is another application's SQLite database (application_id {app:#010x})"
        )));
    }
    let created_by: Option<String> = open_read_only(path).ok().and_then(|conn| {
        conn.query_row("SELECT value FROM meta WHERE key = 'created_by'", [], |r| {
            r.get(0)
        })
        .ok()
    });
    Ok(match created_by {
        Some(by) if by.starts_with("ckpt ") => Ownership::Legacy,
        _ => Ownership::NotOurs(
            "it is an SQLite database ckpt did not create (no ckpt application id or meta table)"
                .to_owned(),
        ),
    })
}

/// Open for reading without blocking: a FIFO swapped in after the type check must not hang us.
fn open_no_block(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        /// `O_NONBLOCK` on Linux (all architectures Rust supports there).
        const O_NONBLOCK: i32 = 0o4000;
        o.custom_flags(O_NONBLOCK);
    }
    o.open(path)
}

/// A read-only connection that writes nothing at all. A plain read-only open of a WAL database
/// still creates its `-wal` and `-shm` files; when there is no `-wal` (no other connection is
/// live, and everything was checkpointed into the main file at the last close) the file is opened
/// `immutable`, which needs neither. With a `-wal` present another ckpt is at work (or died), its
/// companions exist already, and the normal read-only open reads the log too.
fn open_read_only(path: &Path) -> Result<Connection, rusqlite::Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if sibling(path, "-wal").exists() {
        Connection::open_with_flags(path, flags)?
    } else {
        let uri = format!("file:{}?immutable=1", uri_path(path));
        Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)?
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// `path` percent-encoded for an SQLite `file:` URI (everything but unreserved bytes and `/`).
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Build a fresh, complete cache under a temporary name beside `path` and link it into place.
/// A hard link never replaces an existing file, so whatever appeared at `path` in the meantime
/// (another ckpt's cache, a user's file) is kept; the caller looks at `path` again either way.
fn create_new(path: &Path) -> Result<(), CacheError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = sibling(path, &format!(".tmp-{}-{n}", std::process::id()));
    let io = |p: &Path, source| CacheError::Io {
        path: p.to_path_buf(),
        source,
    };
    // `create_new`: the temporary name is ours alone, never someone else's file.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io(path, e))?;
    let remove_tmp = || {
        for p in [
            tmp.clone(),
            sibling(&tmp, "-wal"),
            sibling(&tmp, "-shm"),
            sibling(&tmp, "-journal"),
        ] {
            let _ = std::fs::remove_file(p);
        }
    };
    let built = (|| -> Result<(), rusqlite::Error> {
        let mut conn = Connection::open_with_flags(
            &tmp,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        migrate(&mut conn).map_err(|e| match e {
            MigrateError::Sqlite(e) => e,
            MigrateError::Newer(_) => rusqlite::Error::InvalidQuery,
        })?;
        conn.close().map_err(|(_, e)| e)
    })();
    if let Err(source) = built {
        remove_tmp();
        return Err(sqlite_err(path, source));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let result = match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A filesystem without hard links: rename, which replaces, so only when nothing is
        // there (a narrow window remains; the link path above has none).
        Err(_) if !path.exists() => std::fs::rename(&tmp, path).map_err(|e| io(path, e)),
        Err(e) => Err(io(path, e)),
    };
    remove_tmp();
    result
}

/// Open a cache proven ours; if it is unusable (corrupt, not our tables) move it aside and
/// start a new one, with a warning.
fn open_owned(path: &Path) -> Result<(Cache, Option<String>), CacheError> {
    let reason = match open_and_init(path) {
        Ok(cache) => return Ok((cache, None)),
        Err(OpenFailure::Error(e)) => return Err(e),
        Err(OpenFailure::Corrupt(reason)) => reason,
    };
    let aside = move_aside(path)?;
    create_new(path)?;
    match ownership(path)? {
        Ownership::Ours | Ownership::Legacy => {}
        Ownership::NotOurs(reason) => {
            return Err(CacheError::NotOurs {
                path: path.to_path_buf(),
                reason,
            });
        }
        Ownership::Missing => {
            return Err(CacheError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other("the new cache disappeared as it was created"),
            });
        }
    }
    let cache = match open_and_init(path) {
        Ok(cache) => cache,
        Err(OpenFailure::Error(e)) => return Err(e),
        Err(OpenFailure::Corrupt(reason)) => {
            return Err(CacheError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(format!(
                    "a freshly created cache is unusable: {reason}"
                )),
            });
        }
    };
    let warning = format!(
        "cache {} was unusable ({reason}); moved it to {} and started a new one",
        path.display(),
        aside.display()
    );
    Ok((cache, Some(warning)))
}

/// Is this SQLite error a sign the file is not a (sound) database?
fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

fn open_and_init(path: &Path) -> Result<Cache, OpenFailure> {
    let fail = |source: rusqlite::Error| {
        if is_corruption(&source) {
            OpenFailure::Corrupt(source.to_string())
        } else {
            OpenFailure::Error(sqlite_err(path, source))
        }
    };
    // Never SQLITE_OPEN_CREATE: only `create_new` makes a cache, and only where nothing was.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(fail)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    // Pages are read through a memory map rather than copied out by `pread`: an unchanged
    // tree is answered by reading rows, and the copies were a seventh of that run's time.
    // (SQLite falls back to reads where mapping is not possible.)
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .map_err(fail)?;

    // Read-only checks first, so a newer ckpt's file is refused before anything is written.
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(fail)?;
    if found > SCHEMA_VERSION {
        return Err(OpenFailure::Error(CacheError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        }));
    }
    // journal_mode answers with the resulting mode. If WAL is unavailable (a filesystem
    // without shared memory, say) the rollback journal + busy timeout is still correct,
    // just less concurrent, so the answer is not checked.
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(fail)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail)?;
    // A WAL checkpoint syncs the disk twice; checkpointing every 1,000 pages (SQLite's
    // default) meant dozens of syncs in a first catalog of ten thousand checkpoints. Every
    // 4,096 pages (16 MiB at 4 KiB pages) it is done by a commit, while the other threads
    // read checkpoints; only what is left is copied when the run closes the cache (at
    // 16,384 pages, all of a first catalog's 35 MB was copied then, after the output).
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .map_err(fail)?;

    let mut cache = Cache {
        conn,
        path: path.to_path_buf(),
    };
    if found != SCHEMA_VERSION {
        migrate(&mut cache.conn).map_err(|e| match e {
            MigrateError::Sqlite(source) => fail(source),
            MigrateError::Newer(found) => OpenFailure::Error(CacheError::NewerSchema {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            }),
        })?;
    }
    // A cache from before the application id gets it now (it was proven ours by its meta table).
    let app: i32 = cache
        .conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(fail)?;
    if app != APPLICATION_ID {
        cache
            .conn
            .pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(fail)?;
    }
    // A file with our version number but not our tables (or a broken schema) is unusable:
    // preparing the statements we rely on finds that now rather than mid-run.
    for sql in [
        SELECT_ONE,
        UPSERT,
        SELECT_UNDER,
        DELETE_ONE,
        SELECT_ENTRY,
        UPSERT_ENTRY,
        SELECT_CONSULTED,
        INSERT_CONSULTED,
        DELETE_ENTRY,
        DELETE_UNUSED_CONSULTED,
        SELECT_PART,
        INSERT_PART,
        DELETE_UNUSED_PARTS,
    ] {
        if let Err(e) = cache.conn.prepare_cached(sql) {
            return Err(if is_corruption(&e) || is_schema_mismatch(&e) {
                OpenFailure::Corrupt(format!("unexpected schema: {e}"))
            } else {
                fail(e)
            });
        }
    }
    // The first page of each table is read, so a file whose pages were overwritten is found
    // here. This is not `PRAGMA quick_check`: that reads the whole file, which took longer
    // than answering an unchanged tree of ten thousand checkpoints from it. Damage deeper
    // in the file shows when a page is read, as SQLite reports it on every access; the
    // catalog then goes on without the cache and sets the file aside ([`Cache::set_aside`]).
    for table in TABLES {
        let probe = format!("SELECT 1 FROM {table} LIMIT 1");
        match cache.conn.query_row(&probe, [], |_| Ok(())) {
            Ok(()) | Err(rusqlite::Error::QueryReturnedNoRows) => {}
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(cache)
}

/// Every table of the current schema.
const TABLES: &[&str] = &["meta", "files", "entries", "consulted", "parts"];

/// A "no such table/column" style error from preparing our statements.
fn is_schema_mismatch(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::Unknown
    ) || matches!(e, rusqlite::Error::SqlInputError { .. })
}

#[derive(Debug)]
enum MigrateError {
    Sqlite(rusqlite::Error),
    Newer(i64),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sqlite(e)
    }
}

/// The tables v2 added: created by the v1 -> v2 step and by a cache made from scratch
/// (one text, so the two cannot differ).
macro_rules! v2_tables {
    () => {
        "CREATE TABLE entries (
        path      TEXT PRIMARY KEY,
        size      INTEGER NOT NULL,
        mtime_ns  INTEGER NOT NULL,
        inode     INTEGER NOT NULL,
        version   INTEGER NOT NULL,
        context   INTEGER NOT NULL,
        consulted INTEGER NOT NULL,
        p_model   INTEGER NOT NULL,
        p_hparams INTEGER NOT NULL,
        p_data    INTEGER NOT NULL,
        p_sources INTEGER NOT NULL,
        entry     TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE consulted (id INTEGER PRIMARY KEY, paths TEXT NOT NULL);
    CREATE TABLE parts (id INTEGER PRIMARY KEY, json TEXT NOT NULL);"
    };
}

/// The schema steps: `STEPS[i]` takes a database from version `i + 1` to `i + 2`. Version 0
/// (a new or foreign file) and any version without a path to [`SCHEMA_VERSION`] are rebuilt
/// from [`CREATE_CURRENT`] instead; it is only a cache. For v2, append the v1 -> v2 SQL here
/// (e.g. `ALTER TABLE files ADD COLUMN ...`) and update [`CREATE_CURRENT`] to the v2 tables.
const STEPS: &[&str] = &[
    // v1 -> v2: resolved entries and the paths their resolution consulted.
    v2_tables!(),
];

/// The current schema from scratch.
const CREATE_CURRENT: &str = concat!(
    "
    DROP TABLE IF EXISTS files;
    DROP TABLE IF EXISTS entries;
    DROP TABLE IF EXISTS consulted;
    DROP TABLE IF EXISTS parts;
    DROP TABLE IF EXISTS meta;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE files (
        path          TEXT PRIMARY KEY,
        size          INTEGER NOT NULL,
        mtime_ns      INTEGER NOT NULL,
        inode         INTEGER NOT NULL,
        facts_version INTEGER NOT NULL,
        facts         TEXT NOT NULL,
        updated_at    INTEGER NOT NULL
    );
",
    v2_tables!()
);

/// Bring the schema to [`SCHEMA_VERSION`] in one write transaction. The version is re-read
/// inside it, since another process may have migrated in the meantime.
fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    const _: () = assert!(STEPS.len() as i64 == SCHEMA_VERSION - 1);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(MigrateError::Newer(found));
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let has_meta: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if found >= 1 && has_meta.is_some() {
        // Each step is applied in order from the found version.
        for step in STEPS.iter().skip(usize::try_from(found - 1).unwrap_or(0)) {
            tx.execute_batch(step)?;
        }
    } else {
        tx.execute_batch(CREATE_CURRENT)?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('created_by', ?1), \
             ('created_at', ?2)",
            params![concat!("ckpt ", env!("CARGO_PKG_VERSION")), unix_now()],
        )?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1), \
         ('migrated_by', ?2)",
        params![
            SCHEMA_VERSION.to_string(),
            concat!("ckpt ", env!("CARGO_PKG_VERSION"))
        ],
    )?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Rename an unusable cache file (and its WAL companions, which belong to it and must not be
/// replayed into the new file) to `<name>.corrupt-<unix time>[-N]`. Returns the new name.
fn move_aside(path: &Path) -> Result<PathBuf, CacheError> {
    let stamp = unix_now();
    let mut aside = sibling(path, &format!(".corrupt-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        aside = sibling(path, &format!(".corrupt-{stamp}-{n}"));
        n += 1;
    }
    let io = |p: &Path, source| CacheError::Io {
        path: p.to_path_buf(),
        source,
    };
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        // Another process moved it first: it will have made (or will make) the new one.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(path, e)),
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let from = sibling(path, suffix);
        match std::fs::rename(&from, sibling(&aside, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&from, e)),
        }
    }
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn key(path: &str) -> FileKey {
        FileKey {
            path: path.to_owned(),
            size: 1234,
            mtime_ns: 1_700_000_000_123_456_789,
            inode: 42,
        }
    }

    /// A raw SQLite file at `path` carrying ckpt's application id, then `sql`: a cache of ours
    /// in whatever state `sql` leaves it.
    fn ours_with(path: &Path, sql: &str) {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.execute_batch(sql).unwrap();
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn open(path: &Path) -> Cache {
        let (cache, warning) = Cache::open(path).unwrap();
        assert_eq!(warning, None);
        cache
    }

    #[test]
    fn cache_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir").join(FILE_NAME);
        let mut cache = open(&path);
        assert_eq!(cache.path(), path);
        let a = key("/runs/a.ckpt");
        let b = key("/runs/b.ckpt");
        let big = FileKey {
            inode: u64::MAX,
            size: u64::MAX - 1,
            mtime_ns: -5,
            ..key("/runs/big.ckpt")
        };
        assert_eq!(
            cache.get_many(std::slice::from_ref(&a), 1).unwrap(),
            vec![None]
        );
        cache
            .put_many(
                &[
                    (a.clone(), r#"{"a":1}"#.to_owned()),
                    (big.clone(), "big".to_owned()),
                ],
                1,
            )
            .unwrap();
        assert_eq!(
            cache
                .get_many(&[a.clone(), b.clone(), big.clone()], 1)
                .unwrap(),
            vec![Some(r#"{"a":1}"#.to_owned()), None, Some("big".to_owned())]
        );
        // Replace.
        cache
            .put_many(&[(a.clone(), r#"{"a":2}"#.to_owned())], 1)
            .unwrap();
        drop(cache);
        // Persisted across opens; schema recorded in both places.
        let cache = open(&path);
        assert_eq!(
            cache.get_many(&[a], 1).unwrap(),
            vec![Some(r#"{"a":2}"#.to_owned())]
        );
        let info = cache.info().unwrap();
        assert_eq!(info.schema_version, SCHEMA_VERSION);
        assert_eq!(info.entries, 2);
        assert!(info.size_bytes > 0);
        assert_eq!(info.path, path.display().to_string());
        let meta: String = cache
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(meta, SCHEMA_VERSION.to_string());
        let mode: String = cache
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn cache_changed_key_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = open(&dir.path().join(FILE_NAME));
        let k = key("/runs/a.ckpt");
        cache.put_many(&[(k.clone(), "x".to_owned())], 1).unwrap();
        let changed = [
            FileKey {
                size: k.size + 1,
                ..k.clone()
            },
            FileKey {
                mtime_ns: k.mtime_ns + 1,
                ..k.clone()
            },
            FileKey {
                inode: k.inode + 1,
                ..k.clone()
            },
            FileKey {
                path: "/runs/a.ckpt2".to_owned(),
                ..k.clone()
            },
        ];
        assert_eq!(cache.get_many(&changed, 1).unwrap(), vec![None; 4]);
        assert_eq!(cache.get_many(&[k], 1).unwrap(), vec![Some("x".to_owned())]);
    }

    #[test]
    fn cache_facts_version_mismatch_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = open(&dir.path().join(FILE_NAME));
        let k = key("/runs/a.ckpt");
        cache.put_many(&[(k.clone(), "x".to_owned())], 1).unwrap();
        assert_eq!(
            cache.get_many(std::slice::from_ref(&k), 2).unwrap(),
            vec![None]
        );
        cache.put_many(&[(k.clone(), "y".to_owned())], 2).unwrap();
        assert_eq!(
            cache.get_many(std::slice::from_ref(&k), 1).unwrap(),
            vec![None]
        );
        assert_eq!(cache.get_many(&[k], 2).unwrap(), vec![Some("y".to_owned())]);
    }

    #[test]
    fn cache_from_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.ckpt");
        std::fs::write(&file, b"hello").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let p = file.to_str().unwrap();
        let k = FileKey::from_metadata(p, &meta);
        assert_eq!(k.path, p);
        assert_eq!(k.size, 5);
        assert!(k.mtime_ns > 1_600_000_000_000_000_000, "{}", k.mtime_ns);
        #[cfg(unix)]
        assert_ne!(k.inode, 0);
        // Rewriting with another size changes the key.
        std::fs::write(&file, b"hello world").unwrap();
        let k2 = FileKey::from_metadata(p, &std::fs::metadata(&file).unwrap());
        assert_ne!(k, k2);
    }

    #[test]
    fn cache_key_from_a_stat_is_the_key_from_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.ckpt");
        std::fs::write(&file, b"hello").unwrap();
        let p = file.to_str().unwrap();
        let from_meta = FileKey::from_metadata(p, &std::fs::metadata(&file).unwrap());
        assert_eq!(
            FileKey::from_stat(p, &ckpt_io::stat(&file).unwrap()),
            from_meta
        );
        let listed = crate::discover::Listed::of_metadata(&std::fs::metadata(&file).unwrap());
        assert_eq!(FileKey::from_stat(p, &listed.0), from_meta);
    }

    #[test]
    fn cache_key_of_an_object_is_its_url_size_time_and_etag_hash() {
        let id = ckpt_io::Identity {
            size: 500,
            mtime_ns: 1_700_000_000_000_000_000,
            version: 0x1234_5678_9abc_def0,
            etag: Some("\"e1\"".into()),
        };
        let url = "s3://bucket/run/last.ckpt";
        let k = FileKey::from_identity(url, &id);
        assert_eq!(
            k,
            FileKey {
                path: url.into(),
                size: 500,
                mtime_ns: 1_700_000_000_000_000_000,
                inode: 0x1234_5678_9abc_def0,
            }
        );
        let st = ckpt_io::Stat {
            kind: ckpt_io::Kind::File,
            identity: id,
        };
        assert_eq!(FileKey::from_stat(url, &st), k);
        // Stored and found again like a file's (the schema is the same; the path is a URL).
        let dir = tempfile::tempdir().unwrap();
        let mut cache = open(&dir.path().join(FILE_NAME));
        cache.put_many(&[(k.clone(), "{}".to_owned())], 1).unwrap();
        assert_eq!(
            cache.get_many(std::slice::from_ref(&k), 1).unwrap(),
            vec![Some("{}".to_owned())]
        );
        // Another ETag (hashed into `inode`) is another object.
        let other = FileKey { inode: 1, ..k };
        assert_eq!(cache.get_many(&[other], 1).unwrap(), vec![None]);
        // Rows under a bucket's prefix are found by the same range as a folder's.
        let seen = HashSet::new();
        assert_eq!(
            cache
                .missing_under(&["s3://bucket/run".into()], &seen)
                .unwrap(),
            vec![url.to_owned()]
        );
        assert!(
            cache
                .missing_under(&["s3://bucket/ru".into()], &seen)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn cache_forget_missing_respects_component_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = open(&dir.path().join(FILE_NAME));
        let paths = [
            "/a/b/c.ckpt",
            "/a/b/d/e.ckpt",
            "/a/b/kept.ckpt",
            "/a/bc.ckpt",
            "/a/b.ckpt",
            "/a/b",
            "/x/y.ckpt",
        ];
        let rows: Vec<_> = paths.iter().map(|p| (key(p), p.to_string())).collect();
        cache.put_many(&rows, 1).unwrap();
        let seen: HashSet<String> = ["/a/b/kept.ckpt".to_owned()].into();
        let n = cache.forget_missing(&["/a/b/".to_owned()], &seen).unwrap();
        assert_eq!(n, 3); // c.ckpt, d/e.ckpt, and "/a/b" itself (a file root)
        let left: Vec<bool> = cache
            .get_many(&paths.map(key), 1)
            .unwrap()
            .iter()
            .map(Option::is_some)
            .collect();
        assert_eq!(left, [false, false, true, true, true, false, true]);
        // Nothing else under the root: no-op.
        assert_eq!(
            cache.forget_missing(&["/a/b".to_owned()], &seen).unwrap(),
            0
        );
        // An empty root covers nothing; "/" covers everything.
        assert_eq!(
            cache
                .forget_missing(&[String::new()], &HashSet::new())
                .unwrap(),
            0
        );
        assert_eq!(
            cache
                .forget_missing(&["/".to_owned()], &HashSet::new())
                .unwrap(),
            4
        );
        assert_eq!(cache.info().unwrap().entries, 0);
    }

    #[test]
    fn cache_garbage_file_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        // 4 KB of pseudo-random bytes (xorshift; no rand dependency): a checkpoint, say.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let garbage: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        std::fs::write(&path, &garbage).unwrap();
        for err in [
            Cache::open(&path).unwrap_err(),
            Cache::read_info(&path).unwrap_err(),
            Cache::clear(&path).unwrap_err(),
        ] {
            assert!(matches!(err, CacheError::NotOurs { .. }), "{err:?}");
            assert!(err.to_string().contains("not an SQLite database"), "{err}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
        assert_eq!(names_in(dir.path()), [FILE_NAME]);
    }

    #[test]
    fn cache_ours_but_corrupt_is_moved_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let mut cache = open(&path);
            let rows: Vec<_> = (0..200)
                .map(|i| (key(&format!("/r/{i}")), "x".repeat(100)))
                .collect();
            cache.put_many(&rows, 1).unwrap();
        }
        // Keep the 100-byte header (ours), garble every page after the first.
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 8192);
        for b in &mut bytes[4096..] {
            *b = 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        let (mut cache, warning) = Cache::open(&path).unwrap();
        let warning = warning.unwrap();
        assert!(warning.contains("corrupt-"), "{warning}");
        assert!(warning.contains(&path.display().to_string()), "{warning}");
        let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read(&aside[0]).unwrap(), bytes);
        // The new one works.
        cache.put_many(&[(key("/a"), "x".to_owned())], 1).unwrap();
        assert_eq!(
            cache.get_many(&[key("/a")], 1).unwrap(),
            vec![Some("x".to_owned())]
        );
    }

    #[test]
    fn cache_foreign_databases_and_non_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Another program's database: no application id, no meta table.
        let plain = dir.path().join("plain.db");
        Connection::open(&plain)
            .unwrap()
            .execute_batch("CREATE TABLE files (path TEXT); PRAGMA user_version = 1;")
            .unwrap();
        // Another application's id, even with tables like ours.
        let other = dir.path().join("other.db");
        {
            let conn = Connection::open(&other).unwrap();
            conn.pragma_update(None, "application_id", 0x4750_4B47)
                .unwrap();
            conn.execute_batch("CREATE TABLE meta (key TEXT, value TEXT);")
                .unwrap();
        }
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let before = names_in(dir.path());
        let snapshot: Vec<Vec<u8>> = [&plain, &other]
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        for (p, why) in [
            (&plain, "ckpt did not create"),
            (&other, "another application"),
            (&empty, "empty file"),
            (&sub, "directory"),
        ] {
            for err in [
                Cache::open(p).unwrap_err(),
                Cache::read_info(p).unwrap_err(),
                Cache::clear(p).unwrap_err(),
            ] {
                assert!(matches!(err, CacheError::NotOurs { .. }), "{err:?}");
                assert!(err.to_string().contains(why), "{err}");
            }
        }
        assert_eq!(names_in(dir.path()), before);
        assert_eq!(std::fs::read(&plain).unwrap(), snapshot[0]);
        assert_eq!(std::fs::read(&other).unwrap(), snapshot[1]);
    }

    #[test]
    fn cache_from_before_the_application_id_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            // What ckpt 0.1 wrote: our tables and meta, application_id 0.
            let mut conn = Connection::open(&path).unwrap();
            migrate(&mut conn).unwrap();
            let app: i32 = conn
                .query_row("PRAGMA application_id", [], |r| r.get(0))
                .unwrap();
            assert_eq!(app, 0);
        }
        assert_eq!(Cache::read_info(&path).unwrap().unwrap().entries, 0);
        let cache = open(&path);
        let app: i32 = cache
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(app, APPLICATION_ID);
    }

    #[test]
    fn cache_read_info_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(Cache::read_info(&path).unwrap().is_none());
        assert!(names_in(dir.path()).is_empty());
        {
            let mut cache = open(&path);
            cache.put_many(&[(key("/a"), "x".to_owned())], 1).unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let info = Cache::read_info(&path).unwrap().unwrap();
        assert_eq!(info.entries, 1);
        assert_eq!(names_in(dir.path()), [FILE_NAME]);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn cache_foreign_schema_is_rebuilt() {
        // A SQLite file claiming our version but without our tables.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        ours_with(
            &path,
            &format!("CREATE TABLE other (x); PRAGMA user_version = {SCHEMA_VERSION};"),
        );
        let (cache, warning) = Cache::open(&path).unwrap();
        assert!(warning.unwrap().contains("unexpected schema"));
        assert_eq!(cache.info().unwrap().entries, 0);
    }

    #[test]
    fn cache_v1_is_migrated_keeping_its_facts() {
        // What ckpt wrote before resolved entries were cached: meta and files, version 1.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        ours_with(
            &path,
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('created_by', 'ckpt 0.1.0');
             CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL,
                 mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,
                 facts_version INTEGER NOT NULL, facts TEXT NOT NULL,
                 updated_at INTEGER NOT NULL);
             INSERT INTO files VALUES ('/a', 1234, 1700000000123456789, 42, 7, 'x', 0);
             PRAGMA user_version = 1;",
        );
        let (mut cache, warning) = Cache::open(&path).unwrap();
        assert_eq!(warning, None);
        assert_eq!(cache.info().unwrap().schema_version, SCHEMA_VERSION);
        assert_eq!(
            cache.get_many(&[key("/a")], 7).unwrap(),
            vec![Some("x".to_owned())]
        );
        // The new tables work.
        let row = EntryRow {
            key: key("/a"),
            context: 5,
            consulted: 9,
            parts: [0, 11, 0, 0],
            entry: "{}".into(),
        };
        cache
            .put_entries(&[row], &[(9, "[]".into())], &[(11, "{}".into())], 3)
            .unwrap();
        let hit = cache.get_entries(&[(key("/a"), 5)], 3).unwrap();
        assert_eq!(
            hit[0].as_ref().map(|h| (h.consulted, h.parts)),
            Some((9, [0, 11, 0, 0]))
        );
        assert_eq!(
            cache.get_entries(&[(key("/a"), 6)], 3).unwrap()[0]
                .as_ref()
                .map(|h| h.consulted),
            None
        );
        assert_eq!(
            cache.get_consulted(&[9, 10]).unwrap(),
            vec![Some("[]".into()), None]
        );
        assert_eq!(cache.get_parts(&[11]).unwrap(), vec![Some("{}".into())]);
        // Forgetting the checkpoint forgets its entry and what only it pointed at.
        assert_eq!(
            cache
                .forget_missing(&["/".into()], &HashSet::new())
                .unwrap(),
            1
        );
        assert_eq!(cache.get_consulted(&[9]).unwrap(), vec![None]);
        assert_eq!(cache.get_parts(&[11]).unwrap(), vec![None]);
    }

    #[test]
    fn cache_older_schema_is_rebuilt() {
        // Version 0 with stale tables of the same names (e.g. a pre-release layout).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        ours_with(&path, "CREATE TABLE files (path TEXT, blob BLOB);");
        let (mut cache, warning) = Cache::open(&path).unwrap();
        assert_eq!(warning, None);
        cache.put_many(&[(key("/a"), "x".to_owned())], 1).unwrap();
        assert_eq!(cache.info().unwrap().schema_version, SCHEMA_VERSION);
    }

    #[test]
    fn cache_newer_schema_is_refused_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        ours_with(&path, "CREATE TABLE future (x); PRAGMA user_version = 99;");
        let before = std::fs::read(&path).unwrap();
        let err = Cache::open(&path).unwrap_err();
        match &err {
            CacheError::NewerSchema {
                path: p,
                found,
                supported,
            } => {
                assert_eq!(p, &path);
                assert_eq!(*found, 99);
                assert_eq!(*supported, SCHEMA_VERSION);
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("newer ckpt (schema 99"), "{msg}");
        assert!(msg.contains("--no-cache"), "{msg}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME]);
    }

    #[test]
    fn cache_two_handles_can_both_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut one = open(&path);
        let mut two = open(&path);
        one.put_many(&[(key("/one"), "1".to_owned())], 1).unwrap();
        two.put_many(&[(key("/two"), "2".to_owned())], 1).unwrap();
        let want = vec![Some("1".to_owned()), Some("2".to_owned())];
        assert_eq!(one.get_many(&[key("/one"), key("/two")], 1).unwrap(), want);
        assert_eq!(two.get_many(&[key("/one"), key("/two")], 1).unwrap(), want);

        // Concurrent writers in threads: the busy timeout serialises them, none fails.
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut c = open(&path);
                    for i in 0..20 {
                        let rows: Vec<_> = (0..50)
                            .map(|j| (key(&format!("/t{t}/{i}/{j}")), "v".to_owned()))
                            .collect();
                        c.put_many(&rows, 1).unwrap();
                        c.get_many(&[key(&format!("/t{t}/{i}/0"))], 1).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(one.info().unwrap().entries, 2 + 4 * 20 * 50);
    }

    #[test]
    fn cache_clear_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(!Cache::clear(&path).unwrap()); // nothing there: fine
        {
            let mut cache = open(&path);
            cache.put_many(&[(key("/a"), "x".to_owned())], 1).unwrap();
        }
        std::fs::write(sibling(&path, "-wal"), b"").unwrap();
        std::fs::write(sibling(&path, "-shm"), b"").unwrap();
        assert!(Cache::clear(&path).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // And it can be recreated.
        let cache = open(&path);
        assert_eq!(cache.info().unwrap().entries, 0);
    }

    #[test]
    fn cache_default_path_from_env() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            default_path_from(env(&[
                ("CKPT_CACHE_DIR", "/custom"),
                ("XDG_CACHE_HOME", "/xdg"),
                ("HOME", "/home/u"),
            ])),
            Path::new("/custom").join(FILE_NAME)
        );
        assert_eq!(
            default_path_from(env(&[
                ("CKPT_CACHE_DIR", ""),
                ("XDG_CACHE_HOME", "/xdg"),
                ("HOME", "/home/u"),
            ])),
            Path::new("/xdg/ckpt").join(FILE_NAME)
        );
        // A relative XDG_CACHE_HOME is ignored, as the spec says.
        assert_eq!(
            default_path_from(env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/home/u")])),
            Path::new("/home/u/.cache/ckpt").join(FILE_NAME)
        );
        assert_eq!(
            default_path_from(env(&[("HOME", "/home/u")])),
            Path::new("/home/u/.cache/ckpt").join(FILE_NAME)
        );
        assert!(default_path_from(env(&[])).ends_with(FILE_NAME));
    }

    /// Timings by hand: `cargo test -p ckpt-catalog --release cache_bench -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore = "micro benchmark; run by hand"]
    fn cache_bench_10k() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let n = 10_000;
        let facts = format!(r#"{{"format":"lightning","params":{}}}"#, "1".repeat(300));
        let keys: Vec<FileKey> = (0..n)
            .map(|i| FileKey {
                path: format!(
                    "/data/runs/exp{}/version_{}/checkpoints/epoch={i}.ckpt",
                    i % 50,
                    i % 7
                ),
                size: 1_000_000 + i as u64,
                mtime_ns: 1_700_000_000_000_000_000 + i as i64,
                inode: 1000 + i as u64,
            })
            .collect();
        let rows: Vec<_> = keys.iter().map(|k| (k.clone(), facts.clone())).collect();

        let t = Instant::now();
        let (mut cache, _) = Cache::open(&path).unwrap();
        eprintln!("open (new):           {:?}", t.elapsed());
        let t = Instant::now();
        cache.put_many(&rows, 1).unwrap();
        eprintln!("put_many 10k (insert): {:?}", t.elapsed());
        let t = Instant::now();
        cache.put_many(&rows, 1).unwrap();
        eprintln!("put_many 10k (update): {:?}", t.elapsed());
        drop(cache);

        let t = Instant::now();
        let (mut cache, _) = Cache::open(&path).unwrap();
        eprintln!("open (10k rows):      {:?}", t.elapsed());
        let t = Instant::now();
        let got = cache.get_many(&keys, 1).unwrap();
        eprintln!("get_many 10k (hits):  {:?}", t.elapsed());
        assert!(got.iter().all(Option::is_some));
        let t = Instant::now();
        let got = cache.get_many(&keys, 2).unwrap();
        eprintln!("get_many 10k (misses): {:?}", t.elapsed());
        assert!(got.iter().all(Option::is_none));
        let seen: HashSet<String> = keys.iter().map(|k| k.path.clone()).collect();
        let t = Instant::now();
        let gone = cache
            .forget_missing(&["/data/runs".to_owned()], &seen)
            .unwrap();
        eprintln!("forget_missing 10k:   {:?} ({gone} deleted)", t.elapsed());
        let t = Instant::now();
        let info = cache.info().unwrap();
        eprintln!("info:                 {:?} ({info:?})", t.elapsed());
    }
}
