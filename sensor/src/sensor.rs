//! Loading the BPF object, attaching it, and the reader thread that turns ring-buffer
//! records into events.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aya::maps::lpm_trie::Key;
use aya::maps::{LpmTrie, MapData, PerCpuArray, ProgramArray, RingBuf};
use aya::programs::RawTracePoint;
use aya::{Ebpf, EbpfLoader};
use riposte_detect::runtime::ProcessEvent;
use rustix::event::{PollFd, PollFlags, poll};
use tokio::sync::mpsc;

use crate::error::Hint;
use crate::filter::{MAX_PATTERN_LEN, PathFilter};
use crate::table::{Clock, Table};
use crate::{Error, record};

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sensor.bpf.o"));

/// (program, raw tracepoint).
const PROGRAMS: [(&str, &str); 4] = [
    ("riposte_exec", "sched_process_exec"),
    ("riposte_fork", "sched_process_fork"),
    ("riposte_exit", "sched_process_exit"),
    ("riposte_sys_enter", "sys_enter"),
];

/// The futimens handler, reached by a tail call from sys_enter.
const FUTIMENS: &str = "riposte_futimens";

/// Events go to the receiver in batches of up to this many, one wakeup each rather than
/// one per event.
const BATCH_LEN: usize = 256;

/// How often at most a growing drop count is logged.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long the reader waits between drains when the kernel does not wake it: the kernel
/// wakes it only once 64 KiB are pending (see `emit` in sensor.bpf.c), so this bounds the
/// latency of a quiet node's events.
const POLL_TIMEOUT: Duration = Duration::from_millis(20);

/// How the sensor is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Which file paths produce file events.
    pub path_filter: PathFilter,
    /// The ring buffer's size: a power of two, a multiple of the page size.
    pub ring_buffer_bytes: u32,
    /// Events decoded but not yet received (rounded up to whole batches of 256); when
    /// full, the reader waits and the ring buffer absorbs (then drops, counted) what comes
    /// meanwhile.
    pub channel_capacity: usize,
    /// Most processes the table keeps.
    pub max_processes: usize,
    /// Most ancestor names an event carries.
    pub max_ancestors: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            path_filter: PathFilter::default(),
            ring_buffer_bytes: 8 << 20,
            channel_capacity: 16_384,
            max_processes: 65_536,
            max_ancestors: 8,
        }
    }
}

/// The running sensor: its programs stay attached until it is dropped.
pub struct Sensor {
    events: mpsc::Receiver<Vec<ProcessEvent>>,
    /// The rest of the batch being received.
    pending: std::collections::VecDeque<ProcessEvent>,
    drops: Arc<PerCpuArray<MapData, u64>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    // Owns the programs' links: dropping it detaches them.
    _ebpf: Ebpf,
}

impl Sensor {
    /// Loads and attaches the BPF programs, seeds the process table from /proc and starts
    /// the reader thread. Needs root (or the capabilities the README lists).
    pub fn start(options: Options) -> Result<Sensor, Error> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("events", options.ring_buffer_bytes)
            .load(OBJECT)
            .map_err(|source| Error::Load { hint: Hint::of(&source), source })?;

        fill_filter(&mut ebpf, "path_prefixes", options.path_filter.prefix_keys())?;
        fill_filter(&mut ebpf, "path_suffixes", options.path_filter.suffix_keys())?;

        let drops = ebpf.take_map("drops").ok_or(Error::Missing("map drops"))?;
        let drops = Arc::new(PerCpuArray::try_from(drops).map_err(|source| Error::Map { map: "drops", source })?);
        let ring = ebpf.take_map("events").ok_or(Error::Missing("map events"))?;
        let ring = RingBuf::try_from(ring).map_err(Error::RingBuffer)?;

        // The table is seeded before the programs attach, so that a process is read from
        // /proc or seen by its exec, and the exec (later in the buffer) wins.
        let clock = Clock::now();
        let mut table = Table::new(clock, options.max_processes, options.max_ancestors);
        table.seed().map_err(|source| Error::Proc { path: "/proc".into(), source })?;

        for (program, tracepoint) in PROGRAMS {
            let prog: &mut RawTracePoint = ebpf
                .program_mut(program)
                .ok_or(Error::Missing("program"))?
                .try_into()
                .map_err(|source| Error::LoadProgram { program, hint: Hint::default(), source })?;
            prog.load().map_err(|source| Error::LoadProgram { program, hint: Hint::of(&source), source })?;
            prog.attach(tracepoint).map_err(|source| Error::Attach {
                program,
                tracepoint,
                hint: Hint::of(&source),
                source,
            })?;
        }

        // Loaded, not attached: sys_enter tail-calls it for futimens.
        let futimens: &mut RawTracePoint = ebpf
            .program_mut(FUTIMENS)
            .ok_or(Error::Missing("program riposte_futimens"))?
            .try_into()
            .map_err(|source| Error::LoadProgram { program: FUTIMENS, hint: Hint::default(), source })?;
        futimens.load().map_err(|source| Error::LoadProgram { program: FUTIMENS, hint: Hint::of(&source), source })?;
        let futimens = futimens
            .fd()
            .map_err(|source| Error::LoadProgram { program: FUTIMENS, hint: Hint::default(), source })?
            .try_clone()
            .map_err(Error::TailCall)?;
        let mut tail_calls: ProgramArray<&mut MapData> = ebpf
            .map_mut("tail_calls")
            .ok_or(Error::Missing("map tail_calls"))?
            .try_into()
            .map_err(|source| Error::Map { map: "tail_calls", source })?;
        tail_calls.set(0, &futimens, 0).map_err(|source| Error::Map { map: "tail_calls", source })?;

        let (tx, events) = mpsc::channel(options.channel_capacity.div_ceil(BATCH_LEN).max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader { ring, table, tx, drops: drops.clone(), stop: stop.clone() };
        let reader = std::thread::Builder::new()
            .name("riposte-sensor".into())
            .spawn(move || reader.run())
            .map_err(Error::Thread)?;
        Ok(Sensor { events, pending: Default::default(), drops, stop, reader: Some(reader), _ebpf: ebpf })
    }

    /// The next event; `None` once the reader has stopped.
    pub async fn recv(&mut self) -> Option<ProcessEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            self.pending = self.events.recv().await?.into();
        }
    }

    /// The next event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<ProcessEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            self.pending = self.events.try_recv().ok()?.into();
        }
    }

    /// Records the kernel could not put in the ring buffer (it was full), since the start.
    pub fn dropped(&self) -> u64 {
        dropped(&self.drops)
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblocks a reader waiting for room in the channel.
        self.events.close();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn dropped(drops: &PerCpuArray<MapData, u64>) -> u64 {
    drops.get(&0, 0).map(|per_cpu| per_cpu.iter().sum()).unwrap_or(0)
}

fn fill_filter(
    ebpf: &mut Ebpf,
    map: &'static str,
    keys: impl Iterator<Item = (u32, [u8; MAX_PATTERN_LEN])>,
) -> Result<(), Error> {
    let mut trie: LpmTrie<&mut MapData, [u8; MAX_PATTERN_LEN], u8> = ebpf
        .map_mut(map)
        .ok_or(Error::Missing("path filter map"))?
        .try_into()
        .map_err(|source| Error::Map { map, source })?;
    for (bits, data) in keys {
        trie.insert(&Key::new(bits, data), 1, 0).map_err(|source| Error::Map { map, source })?;
    }
    Ok(())
}

/// The reader thread. A thread rather than a task on the caller's runtime: decoding
/// an exec reads /proc (the working directory, an unknown parent), which is blocking I/O,
/// and the ring buffer should be drained however busy the runtime is.
struct Reader {
    ring: RingBuf<MapData>,
    table: Table,
    tx: mpsc::Sender<Vec<ProcessEvent>>,
    drops: Arc<PerCpuArray<MapData, u64>>,
    stop: Arc<AtomicBool>,
}

impl Reader {
    fn run(mut self) {
        let timeout = rustix::time::Timespec { tv_sec: 0, tv_nsec: POLL_TIMEOUT.as_nanos() as i64 };
        let mut logged_drops = 0;
        let mut last_log = Instant::now() - DROP_LOG_INTERVAL;
        while !self.stop.load(Ordering::Relaxed) {
            let mut fds = [PollFd::new(&self.ring, PollFlags::IN)];
            if let Err(e) = poll(&mut fds, Some(&timeout))
                && e != rustix::io::Errno::INTR
            {
                tracing::error!(error = %e, "polling the sensor's ring buffer failed; the sensor stops");
                return;
            }
            let mut batch = Vec::new();
            while let Some(item) = self.ring.next() {
                let record = record::decode(&item);
                drop(item);
                match record {
                    Ok(record) => batch.extend(self.table.apply(record)),
                    Err(e) => tracing::warn!(error = %e, "undecodable sensor record"),
                }
                if batch.len() >= BATCH_LEN && self.tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                    return; // the receiver is gone
                }
            }
            if !batch.is_empty() && self.tx.blocking_send(batch).is_err() {
                return;
            }
            if last_log.elapsed() >= DROP_LOG_INTERVAL {
                let drops = dropped(&self.drops);
                if drops > logged_drops {
                    tracing::warn!(
                        dropped = drops,
                        since_last = drops - logged_drops,
                        "sensor ring buffer full: events lost"
                    );
                    logged_drops = drops;
                    last_log = Instant::now();
                }
            }
        }
    }
}
