//! The log file's I/O behind a small trait, so the same log code runs on a
//! real file (production) and on a simulated disk (the crash simulator,
//! feature `sim`, [`crate::sim_disk`]).
//!
//! The redb file needs no trait of ours: redb has its own
//! (`redb::StorageBackend`); the real directory uses redb's file backend
//! and the simulated disk implements the trait for its files.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

/// The operations the write-ahead log performs on its file.
pub trait LogFile: Send + core::fmt::Debug {
    /// The whole file, from offset 0 (once, at open).
    fn read_all(&mut self) -> std::io::Result<Vec<u8>>;
    /// Writes `data` at `offset` (not durable until a sync).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()>;
    /// Makes the data written so far durable (`fdatasync`): the group
    /// commit's one sync.
    fn sync_data(&mut self) -> std::io::Result<()>;
    /// Makes data and metadata (the file's length) durable (`fsync`): after
    /// the file grew.
    fn sync_all(&mut self) -> std::io::Result<()>;
}

impl LogFile for File {
    fn read_all(&mut self) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.seek(SeekFrom::Start(0))?;
        self.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.write_all(data)
    }

    fn sync_data(&mut self) -> std::io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&mut self) -> std::io::Result<()> {
        File::sync_all(self)
    }
}
