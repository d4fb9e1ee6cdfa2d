//! Task output as the server keeps it: per attempt, one file per stream plus one with both
//! streams in arrival order. Executors send bytes with their offset in the stream, so a
//! re-sent chunk is appended only past what is already stored.

use cpn_api_types::tasks::LogStream;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Mutex;

pub struct LogStore {
    root: PathBuf,
    // Appends are rare and small next to their fsync-free writes; one lock keeps the
    // offset check and the append of a stream together.
    lock: Mutex<()>,
}

fn file_name(stream: LogStream) -> &'static str {
    match stream {
        LogStream::All => "all",
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
    }
}

impl LogStore {
    pub fn new(root: PathBuf) -> LogStore {
        LogStore {
            root,
            lock: Mutex::new(()),
        }
    }

    fn path(&self, task: &str, attempt: u32, stream: LogStream) -> PathBuf {
        self.root
            .join(task)
            .join(format!("{attempt}.{}", file_name(stream)))
    }

    /// Appends the part of `bytes` (which starts at `offset` of the stream) not stored yet;
    /// returns the stream's stored length.
    pub fn append(
        &self,
        task: &str,
        attempt: u32,
        stream: LogStream,
        offset: u64,
        bytes: &[u8],
    ) -> std::io::Result<u64> {
        let _guard = self.lock.lock().expect("log lock is never poisoned");
        let path = self.path(task, attempt, stream);
        std::fs::create_dir_all(path.parent().expect("log paths have a parent"))?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let have = file.metadata()?.len();
        if offset > have {
            // A gap: the executor must resend from `have`.
            return Ok(have);
        }
        let skip = (have - offset) as usize;
        if skip < bytes.len() {
            let new = &bytes[skip..];
            file.write_all(new)?;
            let mut all = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(task, attempt, LogStream::All))?;
            all.write_all(new)?;
            return Ok(have + new.len() as u64);
        }
        Ok(have)
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
        let logs = LogStore::new(dir.path().to_path_buf());
        assert_eq!(
            logs.append("t", 1, LogStream::Stdout, 0, b"hello ")
                .unwrap(),
            6
        );
        assert_eq!(
            logs.append("t", 1, LogStream::Stdout, 0, b"hello world")
                .unwrap(),
            11
        );
        assert_eq!(
            logs.append("t", 1, LogStream::Stdout, 20, b"x").unwrap(),
            11
        );
        assert_eq!(
            logs.append("t", 1, LogStream::Stderr, 0, b"oops").unwrap(),
            4
        );
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
}
