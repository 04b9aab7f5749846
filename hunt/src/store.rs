//! The embedded store: rows held in memory a few seconds, then committed as Parquet files
//! under `<root>/<Table>/date=YYYY-MM-DD/hour=HH/`, kept for a retention and under a byte
//! cap, and compacted.
//!
//! Crash safety comes from how a file is committed: written under a hidden name (`.` first,
//! which Trino and Hive skip), synced, renamed into place, and its directory synced. A killed
//! writer leaves at most a hidden file, removed at the next open; every visible file is
//! whole. A file is named `part-<writer>-<first>-<last>.parquet` by the flush generations it
//! holds: compaction writes the merged file first and removes its inputs after, so a crash in
//! between leaves files whose generations a larger file covers, which the next open removes
//! instead of counting their rows twice.
//!
//! Files that a running hunt reads are not deleted under it: a hunt holds the files of its
//! snapshot, and a file dropped by retention or compaction is deleted once no hunt holds it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tracing::{debug, info, warn};

use crate::bucket::Mirror;
use crate::error::{Error, Result, io};
use crate::partition::{MICROS_PER_HOUR, Partition};
use crate::record::{Record, to_batch};
use crate::schema::Table;

/// How the store keeps what it is given.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    pub root: PathBuf,
    /// Names this process's files, so that writers sharing a layout never collide: letters,
    /// digits, `-` and `.` (the pod's or the node's name, say).
    pub writer: String,
    /// How long rows stay in memory before they are committed.
    pub flush_interval: Duration,
    /// A table's rows in memory that start a flush before the interval is up.
    pub flush_rows: usize,
    /// Rows in memory past which new rows are refused (counted), when the disk cannot keep up.
    pub max_memory_rows: usize,
    /// Partitions whose hour ended longer ago than this are deleted.
    pub retention: Duration,
    /// The files' total size past which the oldest partitions are deleted.
    pub max_bytes: u64,
    /// A partition with this many files of this writer is merged into one.
    pub compact_files: usize,
    /// The lowest flush generation to use: above those a bucket holds of this writer, when the
    /// store mirrors to one ([`crate::bucket::Mirror::next_generation`]).
    pub first_generation: u64,
}

impl StoreSettings {
    pub fn new(root: impl Into<PathBuf>, writer: impl Into<String>) -> StoreSettings {
        StoreSettings {
            root: root.into(),
            writer: writer.into(),
            flush_interval: Duration::from_secs(10),
            flush_rows: 50_000,
            max_memory_rows: 1_000_000,
            retention: Duration::from_secs(30 * 24 * 3600),
            max_bytes: 50 << 30,
            compact_files: 8,
            first_generation: 0,
        }
    }
}

/// The writer and the first and last flush generations a file holds, from its name.
pub(crate) type Generations = (String, u64, u64);

/// A committed Parquet file.
#[derive(Debug)]
pub struct DataFile {
    pub path: PathBuf,
    pub partition: Partition,
    pub bytes: u64,
    /// The writer and flush generations its name carries; `None` for a file another program
    /// put there, which is read but never compacted.
    generations: Option<Generations>,
}

/// What a hunt reads of one table: the committed files of the partitions in its window and
/// the rows still in memory (all of them; the hunt filters by time).
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub files: Vec<Arc<DataFile>>,
    pub recent: Option<RecordBatch>,
}

/// What a flush committed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub rows: usize,
    pub files: usize,
    pub bytes: u64,
}

/// What maintenance removed and merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintained {
    pub expired_partitions: usize,
    pub capped_partitions: usize,
    pub compacted_partitions: usize,
    pub deleted_files: usize,
}

/// Sizes, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub files: usize,
    pub bytes: u64,
    pub memory_rows: usize,
    pub refused_rows: u64,
    pub failed_bucket_syncs: u64,
}

#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    settings: StoreSettings,
    state: Mutex<State>,
    /// One flush or maintenance at a time; appends and snapshots go on meanwhile.
    writing: tokio::sync::Mutex<()>,
    /// Held for the life of the store: a second writer on the same root is refused.
    _lock: File,
    refused: AtomicU64,
    failed_bucket_syncs: AtomicU64,
    /// The epoch micros at open: with a counter, makes ReportIds unique across restarts.
    opened_at: i64,
}

#[derive(Default)]
struct State {
    /// Rows not yet handed to a flush, by table.
    pending: BTreeMap<Table, Vec<(u64, Record)>>,
    /// Rows a running flush is writing: still visible to hunts until their files are listed.
    flushing: BTreeMap<Table, Arc<Vec<(u64, Record)>>>,
    files: BTreeMap<Partition, Vec<Arc<DataFile>>>,
    /// Files no longer listed, deleted once no snapshot holds them.
    obsolete: Vec<Arc<DataFile>>,
    next_generation: u64,
    next_row: u64,
    memory_rows: usize,
}

/// Each writer's lock, in the root: one process per writer id, several writers per layout.
fn lock_file(writer: &str) -> String {
    format!(".riposte-hunt-{writer}.lock")
}

impl Store {
    /// Opens (or creates) the store at `settings.root`: takes its lock, removes what a killed
    /// writer left (hidden files, superseded inputs of a compaction), lists the files.
    pub fn open(settings: StoreSettings) -> Result<Store> {
        // A node's name may have dots; a leading one would hide the files from Trino.
        let writer = &settings.writer;
        if !writer.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !writer.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(Error::WriterId(writer.clone()));
        }
        fs::create_dir_all(&settings.root).map_err(io("creating", &settings.root))?;
        let lock_path = settings.root.join(lock_file(&settings.writer));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("opening", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::StoreLocked(settings.root.clone())),
            Err(fs::TryLockError::Error(e)) => return Err(io("locking", &lock_path)(e)),
        }
        // Every table's directory exists from the start: what another engine's tables
        // point at, even before their first row.
        for table in Table::ALL {
            let directory = settings.root.join(table.name());
            fs::create_dir_all(&directory).map_err(io("creating", &directory))?;
        }
        let mut state = State { next_generation: settings.first_generation, ..State::default() };
        for table in Table::ALL {
            for file in scan_table(&settings.root, table, &settings.writer, Scan::Recover)? {
                if let Some((_, _, last)) = &file.generations {
                    state.next_generation = state.next_generation.max(last + 1);
                }
                state.files.entry(file.partition).or_default().push(Arc::new(file));
            }
        }
        let opened_at = now_micros();
        info!(
            root = %settings.root.display(),
            files = state.files.values().map(Vec::len).sum::<usize>(),
            "hunting store opened"
        );
        Ok(Store {
            shared: Arc::new(Shared {
                settings,
                state: Mutex::new(state),
                writing: tokio::sync::Mutex::new(()),
                _lock: lock,
                refused: AtomicU64::new(0),
                failed_bucket_syncs: AtomicU64::new(0),
                opened_at,
            }),
        })
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.shared.settings
    }

    /// Keeps rows in memory until the next flush. Rows past the memory bound are refused and
    /// counted ([`Usage::refused_rows`]); returns how many were kept.
    pub fn append(&self, records: impl IntoIterator<Item = Record>) -> usize {
        let max = self.shared.settings.max_memory_rows;
        let mut state = self.state();
        let mut kept = 0;
        let mut refused = 0;
        for record in records {
            if state.memory_rows >= max {
                refused += 1;
                continue;
            }
            let row = state.next_row;
            state.next_row += 1;
            state.memory_rows += 1;
            state.pending.entry(record.table).or_default().push((row, record));
            kept += 1;
        }
        drop(state);
        if refused > 0 {
            self.shared.refused.fetch_add(refused, Ordering::Relaxed);
        }
        kept
    }

    /// Whether a table holds enough rows in memory to flush before the interval.
    pub fn wants_flush(&self) -> bool {
        let rows = self.shared.settings.flush_rows;
        self.state().pending.values().any(|p| p.len() >= rows)
    }

    /// Commits every row in memory as Parquet files, one per table and hour. A row is
    /// acknowledged, and survives a crash, once the flush that took it has returned.
    pub async fn flush(&self) -> Result<Flushed> {
        let _writing = self.shared.writing.lock().await;
        let (batches, generation) = {
            let mut state = self.state();
            let pending = std::mem::take(&mut state.pending);
            if pending.is_empty() {
                return Ok(Flushed::default());
            }
            let generation = state.next_generation;
            state.next_generation += 1;
            let mut batches = Vec::new();
            for (table, rows) in pending {
                let rows = Arc::new(rows);
                state.flushing.insert(table, rows.clone());
                batches.push((table, rows));
            }
            (batches, generation)
        };
        let shared = self.shared.clone();
        let work = batches.clone();
        let written = tokio::task::spawn_blocking(move || -> Result<Vec<DataFile>> {
            let mut files = Vec::new();
            for (table, rows) in &work {
                let mut by_hour: BTreeMap<Partition, Vec<&(u64, Record)>> = BTreeMap::new();
                for row in rows.iter() {
                    by_hour.entry(Partition::of(*table, row.1.time)).or_default().push(row);
                }
                for (partition, rows) in by_hour {
                    let batch = to_batch(*table, &shared.report_prefix(), rows.iter().map(|(id, r)| (*id, r)))?;
                    let name = file_name(&shared.settings.writer, generation, generation);
                    files.push(commit(
                        &shared.settings.root,
                        partition,
                        &name,
                        &[batch],
                        generation_of(&shared.settings.writer, generation, generation),
                    )?);
                }
            }
            Ok(files)
        })
        .await
        .map_err(|_| Error::WriterStopped)?;
        let mut state = self.state();
        let files = match written {
            Ok(files) => files,
            Err(error) => {
                // Nothing was listed: put the rows back in front, to be tried again.
                for (table, rows) in batches {
                    state.flushing.remove(&table);
                    let mut rows = Arc::try_unwrap(rows).unwrap_or_else(|shared| (*shared).clone());
                    rows.append(state.pending.entry(table).or_default());
                    state.pending.insert(table, rows);
                }
                return Err(error);
            }
        };
        let mut flushed = Flushed { rows: 0, files: files.len(), bytes: 0 };
        for (table, rows) in &batches {
            state.flushing.remove(table);
            flushed.rows += rows.len();
        }
        state.memory_rows -= flushed.rows;
        for file in files {
            flushed.bytes += file.bytes;
            state.files.entry(file.partition).or_default().push(Arc::new(file));
        }
        debug!(rows = flushed.rows, files = flushed.files, bytes = flushed.bytes, "hunting rows committed");
        Ok(flushed)
    }

    /// Deletes partitions past the retention, then the oldest ones while the files exceed the
    /// byte cap, merges partitions with many small files, and deletes the files no hunt holds.
    pub async fn maintain(&self, now_micros: i64) -> Result<Maintained> {
        let _writing = self.shared.writing.lock().await;
        let settings = &self.shared.settings;
        let mut done = Maintained::default();
        {
            let mut state = self.state();
            let cutoff = now_micros - i64::try_from(settings.retention.as_micros()).unwrap_or(i64::MAX);
            let expired: Vec<Partition> = state.files.keys().filter(|p| p.end_micros() <= cutoff).copied().collect();
            done.expired_partitions = expired.len();
            for partition in expired {
                state.retire(partition);
            }
            let mut total: u64 = state.files.values().flatten().map(|f| f.bytes).sum();
            while total > settings.max_bytes {
                let Some(oldest) = state.files.keys().min_by_key(|p| (p.hour, p.table)).copied() else { break };
                total -= state.files[&oldest].iter().map(|f| f.bytes).sum::<u64>();
                state.retire(oldest);
                done.capped_partitions += 1;
            }
        }
        self.list_other_writers().await?;
        if done.capped_partitions > 0 {
            warn!(
                partitions = done.capped_partitions,
                max_bytes = settings.max_bytes,
                "the hunting store reached its byte cap: its oldest partitions were deleted"
            );
        }
        let candidates: Vec<(Partition, Vec<Arc<DataFile>>)> = {
            let state = self.state();
            let current = now_micros.div_euclid(MICROS_PER_HOUR);
            state
                .files
                .iter()
                .filter(|(p, _)| p.hour < current)
                .map(|(p, files)| {
                    (*p, files.iter().filter(|f| f.owned_by(&settings.writer)).cloned().collect::<Vec<_>>())
                })
                .filter(|(_, own)| own.len() >= settings.compact_files)
                .collect()
        };
        for (partition, inputs) in candidates {
            let shared = self.shared.clone();
            let merge_inputs = inputs.clone();
            let merged = tokio::task::spawn_blocking(move || compact(&shared.settings, partition, &merge_inputs))
                .await
                .map_err(|_| Error::WriterStopped)??;
            let mut state = self.state();
            let listed = state.files.entry(partition).or_default();
            listed.retain(|f| !inputs.iter().any(|i| Arc::ptr_eq(i, f)));
            listed.push(Arc::new(merged));
            state.obsolete.extend(inputs);
            done.compacted_partitions += 1;
        }
        done.deleted_files = self.delete_unheld()?;
        Ok(done)
    }

    /// Lists again the files of the other writers sharing the layout (replicas on one
    /// ReadWriteMany volume): what they committed, merged or deleted since.
    async fn list_other_writers(&self) -> Result<()> {
        let (root, writer) = (self.shared.settings.root.clone(), self.shared.settings.writer.clone());
        let others = tokio::task::spawn_blocking(move || -> Result<Vec<DataFile>> {
            let mut files = Vec::new();
            for table in Table::ALL {
                files.extend(scan_table(&root, table, &writer, Scan::Others)?);
            }
            Ok(files)
        })
        .await
        .map_err(|_| Error::WriterStopped)??;
        let writer = &self.shared.settings.writer;
        let mut state = self.state();
        for files in state.files.values_mut() {
            files.retain(|f| f.owned_by(writer));
        }
        for file in others {
            state.files.entry(file.partition).or_default().push(Arc::new(file));
        }
        state.files.retain(|_, files| !files.is_empty());
        Ok(())
    }

    /// The files of `table` whose hour overlaps `[from, to)`, and its rows in memory.
    pub fn snapshot(&self, table: Table, from_micros: i64, to_micros: i64) -> Result<Snapshot> {
        let state = self.state();
        let first = Partition::of(table, from_micros);
        let files = state
            .files
            .range(first..)
            .filter(|(p, _)| p.table == table && p.start_micros() < to_micros)
            .flat_map(|(_, files)| files.iter().cloned())
            .collect();
        let flushing = state.flushing.get(&table).map(|rows| rows.iter()).into_iter().flatten();
        let pending = state.pending.get(&table).map(|rows| rows.iter()).into_iter().flatten();
        let rows: Vec<&(u64, Record)> =
            flushing.chain(pending).filter(|(_, r)| r.time >= from_micros && r.time < to_micros).collect();
        let recent = if rows.is_empty() {
            None
        } else {
            Some(to_batch(table, &self.shared.report_prefix(), rows.iter().map(|(id, r)| (*id, r)))?)
        };
        Ok(Snapshot { files, recent })
    }

    /// This writer's committed files: their partition, generations and path.
    pub fn own_files(&self) -> Vec<(Partition, Generations, PathBuf)> {
        let state = self.state();
        state
            .files
            .values()
            .flatten()
            .filter_map(|f| {
                f.generations
                    .as_ref()
                    .filter(|(writer, ..)| *writer == self.shared.settings.writer)
                    .map(|g| (f.partition, g.clone(), f.path.clone()))
            })
            .collect()
    }

    pub fn usage(&self) -> Usage {
        let state = self.state();
        Usage {
            files: state.files.values().map(Vec::len).sum(),
            bytes: state.files.values().flatten().map(|f| f.bytes).sum(),
            memory_rows: state.memory_rows,
            refused_rows: self.shared.refused.load(Ordering::Relaxed),
            failed_bucket_syncs: self.shared.failed_bucket_syncs.load(Ordering::Relaxed),
        }
    }

    /// Flushes every interval (or sooner when a table fills up) and maintains every minute,
    /// until `stop` resolves; then flushes what is left. With a mirror, the bucket is synced
    /// after each of them: a failed sync is logged and retried at the next, the files staying
    /// in the store meanwhile.
    pub async fn run(self, mut mirror: Option<Mirror>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut flush = tokio::time::interval(self.shared.settings.flush_interval);
        let mut maintain = tokio::time::interval(Duration::from_secs(60));
        let mut check = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = flush.tick() => self.flush_logged().await,
                _ = check.tick() => if self.wants_flush() { self.flush_logged().await } else { continue },
                _ = maintain.tick() => {
                    if let Err(error) = self.maintain(now_micros()).await {
                        warn!(%error, "hunting store maintenance failed; retried in a minute");
                    }
                }
            }
            self.sync_logged(mirror.as_mut()).await;
        }
        self.flush_logged().await;
        self.sync_logged(mirror.as_mut()).await;
    }

    async fn flush_logged(&self) {
        if let Err(error) = self.flush().await {
            warn!(%error, "committing hunting rows failed; they stay in memory and are tried again");
        }
    }

    async fn sync_logged(&self, mirror: Option<&mut Mirror>) {
        if let Some(mirror) = mirror
            && let Err(error) = mirror.sync(self, now_micros()).await
        {
            self.shared.failed_bucket_syncs.fetch_add(1, Ordering::Relaxed);
            warn!(%error, "copying the hunting store's files to its bucket failed; tried again at the next flush");
        }
    }

    fn delete_unheld(&self) -> Result<usize> {
        let unheld: Vec<Arc<DataFile>> = {
            let mut state = self.state();
            let (unheld, held) =
                std::mem::take(&mut state.obsolete).into_iter().partition(|f| Arc::strong_count(f) == 1);
            state.obsolete = held;
            unheld
        };
        for file in &unheld {
            match fs::remove_file(&file.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("deleting", &file.path)(e)),
            }
            remove_empty_directories(&self.shared.settings.root, &file.path);
        }
        Ok(unheld.len())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Shared {
    /// What every ReportId of this process starts with: the writer and when it opened the
    /// store, so that row numbers, which restart with the process, never repeat an id.
    fn report_prefix(&self) -> String {
        format!("{}-{:x}-", self.settings.writer, self.opened_at)
    }
}

impl State {
    fn retire(&mut self, partition: Partition) {
        if let Some(files) = self.files.remove(&partition) {
            self.obsolete.extend(files);
        }
    }
}

impl DataFile {
    fn owned_by(&self, writer: &str) -> bool {
        self.generations.as_ref().is_some_and(|(w, _, _)| w == writer)
    }
}

pub(crate) fn file_name(writer: &str, first: u64, last: u64) -> String {
    format!("part-{writer}-{first:012}-{last:012}.parquet")
}

fn generation_of(writer: &str, first: u64, last: u64) -> Option<Generations> {
    Some((writer.to_owned(), first, last))
}

/// The writer and generations a file's name carries, if it is one of ours.
pub(crate) fn parse_file_name(name: &str) -> Option<Generations> {
    let stem = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (rest, last) = stem.rsplit_once('-')?;
    let (writer, first) = rest.rsplit_once('-')?;
    Some((writer.to_owned(), first.parse().ok()?, last.parse().ok()?))
}

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("3 is a valid zstd level")))
        .build()
}

/// Writes batches as one file of `partition`, crash-safely (see the module's comment).
fn commit(
    root: &Path,
    partition: Partition,
    name: &str,
    batches: &[RecordBatch],
    generations: Option<Generations>,
) -> Result<DataFile> {
    let directory = partition.directory(root);
    fs::create_dir_all(&directory).map_err(io("creating", &directory))?;
    let hidden = directory.join(format!(".{name}.tmp"));
    let path = directory.join(name);
    let file = File::create(&hidden).map_err(io("creating", &hidden))?;
    let mut writer = ArrowWriter::try_new(file, partition.table.schema(), Some(properties()))?;
    for batch in batches {
        writer.write(batch)?;
    }
    let mut file = writer.into_inner()?;
    file.flush().map_err(io("writing", &hidden))?;
    file.sync_all().map_err(io("syncing", &hidden))?;
    let bytes = file.metadata().map_err(io("reading the size of", &hidden))?.len();
    drop(file);
    fs::rename(&hidden, &path).map_err(io("renaming into place", &path))?;
    sync_directory(&directory)?;
    Ok(DataFile { path, partition, bytes, generations })
}

fn sync_directory(directory: &Path) -> Result<()> {
    File::open(directory).and_then(|d| d.sync_all()).map_err(io("syncing", directory))
}

/// Merges one writer's files of a partition into one, named by the generations they span.
fn compact(settings: &StoreSettings, partition: Partition, inputs: &[Arc<DataFile>]) -> Result<DataFile> {
    let first = inputs.iter().filter_map(|f| f.generations.as_ref()).map(|(_, first, _)| *first).min().unwrap_or(0);
    let last = inputs.iter().filter_map(|f| f.generations.as_ref()).map(|(_, _, last)| *last).max().unwrap_or(0);
    let mut batches = Vec::new();
    for input in inputs {
        let file = File::open(&input.path).map_err(io("opening", &input.path))?;
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
            batches.push(batch?);
        }
    }
    let name = file_name(&settings.writer, first, last);
    let merged = commit(&settings.root, partition, &name, &batches, generation_of(&settings.writer, first, last))?;
    debug!(%partition, inputs = inputs.len(), bytes = merged.bytes, "hunting partition compacted");
    Ok(merged)
}

/// How a table's directories are read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// At open: every committed file, after removing what this writer left when killed (its
    /// hidden files, the inputs of its interrupted compaction).
    Recover,
    /// Every minute: the committed files of the other writers sharing the layout.
    Others,
}

fn scan_table(root: &Path, table: Table, writer: &str, scan: Scan) -> Result<Vec<DataFile>> {
    let table_dir = root.join(table.name());
    let mut found = Vec::new();
    for (date, date_path) in subdirectories(&table_dir)? {
        for (hour, hour_path) in subdirectories(&date_path)? {
            let Some(partition) = Partition::parse(table, &date, &hour) else {
                if scan == Scan::Recover {
                    warn!(path = %hour_path.display(), "not a partition directory of the hunting store; left alone");
                }
                continue;
            };
            let mut files = Vec::new();
            for entry in fs::read_dir(&hour_path).map_err(io("listing", &hour_path))? {
                let entry = entry.map_err(io("listing", &hour_path))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if let Some(hidden) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) {
                    // This writer's uncommitted write: the rows it held were never
                    // acknowledged. Another writer's may be in progress.
                    if scan == Scan::Recover && parse_file_name(hidden).is_some_and(|(w, _, _)| w == writer) {
                        fs::remove_file(&path).map_err(io("removing an uncommitted", &path))?;
                    }
                    continue;
                }
                if !name.ends_with(".parquet") {
                    continue;
                }
                let generations = parse_file_name(&name);
                let ours = generations.as_ref().is_some_and(|(w, _, _)| w == writer);
                if scan == Scan::Others && ours {
                    continue;
                }
                let bytes = entry.metadata().map_err(io("reading the size of", &path))?.len();
                files.push(DataFile { generations, path, partition, bytes });
            }
            let superseded: Vec<usize> = (0..files.len())
                .filter(|&i| {
                    let Some(inner) = files[i].generations.as_ref() else { return false };
                    files.iter().any(|other| other.generations.as_ref().is_some_and(|outer| covers(outer, inner)))
                })
                .collect();
            for (offset, index) in superseded.into_iter().enumerate() {
                let file = files.remove(index - offset);
                if file.owned_by(writer) {
                    info!(path = %file.path.display(), "removing the input of a compaction that a crash interrupted");
                    fs::remove_file(&file.path).map_err(io("removing", &file.path))?;
                }
            }
            found.extend(files);
        }
    }
    Ok(found)
}

/// Whether `outer` is a larger file of the same writer holding every generation of `inner`:
/// `inner` was an input of the compaction that wrote `outer`.
pub(crate) fn covers(outer: &Generations, inner: &Generations) -> bool {
    outer.0 == inner.0 && outer.1 <= inner.1 && inner.2 <= outer.2 && (outer.1, outer.2) != (inner.1, inner.2)
}

fn subdirectories(path: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("listing", path)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("listing", path))?;
        if entry.file_type().map_err(io("listing", path))?.is_dir() {
            found.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Removes the hour and date directories a deletion emptied (a failure is harmless).
fn remove_empty_directories(root: &Path, file: &Path) {
    for directory in file.ancestors().skip(1).take(2) {
        if directory == root || fs::remove_dir(directory).is_err() {
            break;
        }
    }
}

pub fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
