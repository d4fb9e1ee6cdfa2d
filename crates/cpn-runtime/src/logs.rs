//! Task output as the server keeps it: per attempt, one file per stream plus one with both
//! streams in arrival order. Executors send bytes with their offset in the stream, so a
//! re-sent chunk is appended only past what is already stored.

use cpn_api_types::tasks::LogStream;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Mutex;

pub struct LogStore {
    root: PathBuf,
    /// Bytes kept per attempt, both streams together (the `all` file's length).
    cap: u64,
    // Appends are rare and small next to their fsync-free writes; one lock keeps the
    // offset check and the append of a stream together.
    lock: Mutex<()>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Bytes of the stream the executor may consider delivered: the stored length, or,
    /// once the attempt's output is capped, everything it sent.
    pub length: u64,
    /// The attempt's output reached the cap: nothing more is stored.
    pub capped: bool,
}

fn file_name(stream: LogStream) -> &'static str {
    match stream {
        LogStream::All => "all",
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
    }
}

pub(crate) use cpn_api_types::agent::truncation_marker;

impl LogStore {
    pub fn new(root: PathBuf, cap: u64) -> LogStore {
        LogStore {
            root,
            cap,
            lock: Mutex::new(()),
        }
    }

    fn path(&self, task: &str, attempt: u32, stream: LogStream) -> PathBuf {
        self.root
            .join(task)
            .join(format!("{attempt}.{}", file_name(stream)))
    }

    /// The file whose presence says the attempt's output was capped.
    fn capped_path(&self, task: &str, attempt: u32) -> PathBuf {
        self.root.join(task).join(format!("{attempt}.capped"))
    }

    /// Whether the attempt's output reached the cap.
    pub fn is_capped(&self, task: &str, attempt: u32) -> bool {
        self.capped_path(task, attempt).exists()
    }

    /// Appends the part of `bytes` (which starts at `offset` of the stream) not stored yet,
    /// up to the attempt's cap; past it, writes the truncation marker once and drops the
    /// rest.
    pub fn append(
        &self,
        task: &str,
        attempt: u32,
        stream: LogStream,
        offset: u64,
        bytes: &[u8],
    ) -> std::io::Result<Appended> {
        let _guard = self.lock.lock().expect("log lock is never poisoned");
        let path = self.path(task, attempt, stream);
        std::fs::create_dir_all(path.parent().expect("log paths have a parent"))?;
        let sent_to = offset + bytes.len() as u64;
        if self.is_capped(task, attempt) {
            return Ok(Appended {
                length: sent_to,
                capped: true,
            });
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let have = file.metadata()?.len();
        if offset > have {
            // A gap: the executor must resend from `have`.
            return Ok(Appended {
                length: have,
                capped: false,
            });
        }
        let skip = (have - offset) as usize;
        if skip >= bytes.len() {
            return Ok(Appended {
                length: have,
                capped: false,
            });
        }
        let new = &bytes[skip..];
        let mut all = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(task, attempt, LogStream::All))?;
        let room = self.cap.saturating_sub(all.metadata()?.len());
        if (new.len() as u64) <= room {
            file.write_all(new)?;
            all.write_all(new)?;
            return Ok(Appended {
                length: have + new.len() as u64,
                capped: false,
            });
        }
        let kept = &new[..room as usize];
        let marker = truncation_marker(self.cap);
        for f in [&mut file, &mut all] {
            f.write_all(kept)?;
            f.write_all(marker.as_bytes())?;
        }
        std::fs::write(self.capped_path(task, attempt), b"")?;
        tracing::warn!(task, attempt, cap = self.cap, "task output capped");
        Ok(Appended {
            length: sent_to,
            capped: true,
        })
    }

    /// How many bytes of a stream are stored.
    pub fn len(&self, task: &str, attempt: u32, stream: LogStream) -> u64 {
        std::fs::metadata(self.path(task, attempt, stream)).map_or(0, |m| m.len())
    }

    /// Bytes of a stream from `from`, at most `max`.
    pub fn read(
        &self,
        task: &str,
        attempt: u32,
        stream: LogStream,
        from: u64,
        max: usize,
    ) -> std::io::Result<Vec<u8>> {
        let path = self.path(task, attempt, stream);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(from))?;
        let mut buf = Vec::new();
        file.take(max as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resent_chunks_are_stored_once_and_gaps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogStore::new(dir.path().to_path_buf(), 1 << 20);
        let len = |r: std::io::Result<Appended>| r.unwrap().length;
        assert_eq!(len(logs.append("t", 1, LogStream::Stdout, 0, b"hello ")), 6);
        assert_eq!(
            len(logs.append("t", 1, LogStream::Stdout, 0, b"hello world")),
            11
        );
        assert_eq!(len(logs.append("t", 1, LogStream::Stdout, 20, b"x")), 11);
        assert_eq!(len(logs.append("t", 1, LogStream::Stderr, 0, b"oops")), 4);
        let read = |s| String::from_utf8(logs.read("t", 1, s, 0, 1 << 20).unwrap()).unwrap();
        assert_eq!(read(LogStream::Stdout), "hello world");
        assert_eq!(read(LogStream::All), "hello worldoops");
        assert_eq!(logs.read("t", 1, LogStream::Stdout, 6, 3).unwrap(), b"wor");
        assert!(
            logs.read("t", 2, LogStream::Stdout, 0, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn output_past_the_cap_is_dropped_after_one_marker() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 2 << 20;
        let logs = LogStore::new(dir.path().to_path_buf(), cap);
        let chunk = vec![b'x'; 1 << 20];
        let a = logs.append("t", 1, LogStream::Stdout, 0, &chunk).unwrap();
        assert_eq!(
            a,
            Appended {
                length: 1 << 20,
                capped: false
            }
        );
        let a = logs
            .append("t", 1, LogStream::Stderr, 0, &chunk[..1000])
            .unwrap();
        assert!(!a.capped);
        // Past the cap: what fits is kept, then the marker, and the rest is acknowledged.
        let a = logs
            .append("t", 1, LogStream::Stdout, 1 << 20, &chunk)
            .unwrap();
        assert_eq!(
            a,
            Appended {
                length: 2 << 20,
                capped: true
            }
        );
        let a = logs
            .append("t", 1, LogStream::Stderr, 1000, b"more")
            .unwrap();
        assert_eq!(
            a,
            Appended {
                length: 1004,
                capped: true
            }
        );
        let marker = truncation_marker(cap);
        assert_eq!(logs.len("t", 1, LogStream::All), cap + marker.len() as u64);
        let all = logs.read("t", 1, LogStream::All, 0, 4 << 20).unwrap();
        assert!(String::from_utf8_lossy(&all).ends_with(&marker));
        assert_eq!(
            String::from_utf8_lossy(&all)
                .matches("output truncated")
                .count(),
            1
        );
        assert!(logs.is_capped("t", 1));
        assert!(!logs.is_capped("t", 2), "the cap is per attempt");
    }
}
