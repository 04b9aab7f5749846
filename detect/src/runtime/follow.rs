//! Lines of sensor output: JSON lines handed in as bytes, and [`Follower`], which reads
//! the export file a Tetragon DaemonSet writes (`--export-filename`) as it grows.
//!
//! The follower is the one piece of this crate that does I/O: it opens and reads one file
//! with `std::fs`, and nothing else. It is blocking and never sleeps: [`Follower::poll`]
//! returns what is there now, and the caller decides how to wait (a thread with a sleep,
//! or `tokio::task::spawn_blocking` on an interval), so it works under any runtime.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// The non-blank lines of `input`, numbered from 1, without their line ending.
pub(crate) fn lines(input: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    input
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
}

/// A JSON value as an error message shows it: whole when short, else its start.
pub(crate) fn shown(json: &str) -> String {
    const MAX: usize = 80;
    if json.len() <= MAX {
        return json.to_owned();
    }
    let end = (0..=MAX).rev().find(|&i| json.is_char_boundary(i)).unwrap_or(0);
    format!("{}...", &json[..end])
}

/// Where to begin in the file that exists when the follower starts. Files that appear
/// later (created after the first poll, or after a rotation) are read from their beginning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Every line the file holds.
    Beginning,
    /// Only lines written from now on.
    End,
}

/// Follows one file through appends, rotations and truncations, yielding complete lines.
///
/// Tetragon rotates its export file with lumberjack: when the file reaches its size limit
/// it is closed, renamed to `<name>-<timestamp>.<ext>`, and a new file is created under the
/// old name. The follower keeps reading the file it opened (renaming does not change what
/// an open file is), and when it is at that file's end and the name points to another file
/// (another inode), it reads the old one to its end once more, then continues with the new
/// one from its start: no line is lost or read twice across a rotation. A file that
/// shrank under the same name was truncated (`copytruncate`): reading starts again at its
/// beginning, and a partial line held from before is dropped, since it will never end; a
/// truncated file that grew back past the follower's position before the next poll cannot
/// be told from an appended one (the usual limit of `copytruncate`), so rotate by rename.
///
/// A line is yielded only once its newline arrives, except the last bytes of a rotated
/// file, which ended there. A line longer than the limit is skipped up to its newline and
/// reported once as [`Error::LineTooLong`]; the lines after it still come.
pub struct Follower {
    path: PathBuf,
    start: Start,
    max_line: usize,
    current: Option<Opened>,
    pending: Vec<u8>,
    skipping: bool,
    ready: VecDeque<Result<Vec<u8>, Error>>,
    buffer: Box<[u8]>,
}

#[derive(PartialEq)]
enum Step {
    /// Bytes were read (or the file started over).
    Read,
    Idle,
    /// The name points to a new file; the old one is read to its end.
    Rotated,
}

struct Opened {
    file: File,
    identity: (u64, u64),
    offset: u64,
    /// Lines ended so far in this file, for error messages.
    lines: u64,
}

impl Follower {
    /// Follows `path`, which need not exist yet; lines longer than `max_line` bytes are
    /// skipped.
    pub fn new(path: impl Into<PathBuf>, start: Start, max_line: usize) -> Follower {
        Follower {
            path: path.into(),
            start,
            max_line,
            current: None,
            pending: Vec::new(),
            skipping: false,
            ready: VecDeque::new(),
            buffer: vec![0; 64 * 1024].into_boxed_slice(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next complete line (without its newline), or `None` when there is none yet.
    /// An error is about one line or one read; polling again continues.
    pub fn poll(&mut self) -> Option<Result<Vec<u8>, Error>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            match self.advance() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(source) => return Some(Err(Error::FollowFile { path: self.path.clone(), source })),
            }
        }
    }

    /// Reads what is there, or moves to the next file; `false` when there is nothing new.
    fn advance(&mut self) -> std::io::Result<bool> {
        let Some(mut opened) = self.current.take() else {
            return self.open(self.start);
        };
        match self.step(&mut opened) {
            Ok(Step::Rotated) => self.open(Start::Beginning),
            // On an error too the file stays open where it was: polling again goes on.
            other => {
                self.current = Some(opened);
                other.map(|step| step == Step::Read)
            }
        }
    }

    fn step(&mut self, opened: &mut Opened) -> std::io::Result<Step> {
        if self.read_some(opened)? {
            return Ok(Step::Read);
        }
        let metadata = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            // Renamed away and the new file not created yet: keep the old one until it is.
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Step::Idle),
            Err(error) => return Err(error),
        };
        if (metadata.dev(), metadata.ino()) != opened.identity {
            // Lines may have been written between our last read and the rename.
            while self.read_some(opened)? {}
            if !self.skipping && !self.pending.is_empty() {
                self.ready.push_back(Ok(std::mem::take(&mut self.pending)));
            }
            self.skipping = false;
            return Ok(Step::Rotated);
        }
        if metadata.len() < opened.offset {
            opened.file.seek(SeekFrom::Start(0))?;
            opened.offset = 0;
            opened.lines = 0;
            self.pending.clear();
            self.skipping = false;
            return Ok(Step::Read);
        }
        Ok(Step::Idle)
    }

    fn open(&mut self, start: Start) -> std::io::Result<bool> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                // A file that appears later is new: all of it is to be read.
                self.start = Start::Beginning;
                return Ok(false);
            }
            Err(error) => return Err(error),
        };
        let metadata = file.metadata()?;
        let offset = match start {
            Start::Beginning => 0,
            Start::End => file.seek(SeekFrom::End(0))?,
        };
        // Later files (after a rotation) are new: all of them is to be read.
        self.start = Start::Beginning;
        self.current = Some(Opened { file, identity: (metadata.dev(), metadata.ino()), offset, lines: 0 });
        Ok(true)
    }

    /// One read; `false` at the end of the file.
    fn read_some(&mut self, opened: &mut Opened) -> std::io::Result<bool> {
        let n = loop {
            match opened.file.read(&mut self.buffer) {
                Ok(n) => break n,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        };
        if n == 0 {
            return Ok(false);
        }
        opened.offset += n as u64;
        let mut rest = &self.buffer[..n];
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            opened.lines += 1;
            if self.skipping {
                self.skipping = false;
            } else if self.pending.len() + end > self.max_line {
                self.pending.clear();
                self.ready.push_back(Err(self.too_long(opened.lines)));
            } else {
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(&rest[..end]);
                self.ready.push_back(Ok(line));
            }
            rest = &rest[end + 1..];
        }
        if !self.skipping {
            if self.pending.len() + rest.len() > self.max_line {
                self.pending.clear();
                self.skipping = true;
                self.ready.push_back(Err(self.too_long(opened.lines + 1)));
            } else {
                self.pending.extend_from_slice(rest);
            }
        }
        Ok(true)
    }

    fn too_long(&self, line: u64) -> Error {
        Error::LineTooLong { path: self.path.clone(), line, limit: self.max_line }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_numbered_and_blank_ones_skipped() {
        let lines: Vec<_> = lines(b"{}\r\n\n  \n{\"a\":1}\n").collect();
        assert_eq!(lines, [(1, &b"{}"[..]), (4, &b"{\"a\":1}"[..])]);
    }

    #[test]
    fn long_values_are_shortened_on_a_character_boundary() {
        assert_eq!(shown("\"x\""), "\"x\"");
        let long = "é".repeat(60);
        let shown = shown(&long);
        assert!(shown.ends_with("...") && shown.len() <= 83, "{shown}");
    }
}
