//! What a sync plans and reports, held compactly until it is written or read: each
//! record (a planned change, a per-user result) encoded with postcard (a compact binary
//! serde format: lengths as varints, no field names), the first few MiB in memory and
//! the rest in an unnamed file (in `spill_dir`, by default the data folder) that goes
//! when the log does. A sync of a
//! million users keeps a few bytes per record in memory (where each one starts), not
//! the records, so that its memory does not grow with the directory.

use std::fs::File;
use std::marker::PhantomData;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes kept in memory before they go to the file.
const IN_MEMORY: usize = 4 << 20;

/// Why a record could not be kept or read back.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A record does not encode or decode (not expected: every field encodes).
    #[error("cannot encode or decode a record: {0}")]
    Codec(#[from] postcard::Error),
    /// The folder of the spilled records cannot take them (full, not writable).
    #[error("cannot keep the sync's plan in {} (spill_dir): {source}", folder.display())]
    Spill {
        /// The folder.
        folder: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Clone for RecordError {
    fn clone(&self) -> Self {
        match self {
            RecordError::Codec(err) => RecordError::Codec(err.clone()),
            RecordError::Spill { folder, source } => RecordError::Spill {
                folder: folder.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
        }
    }
}

/// Records of type `T` in the order they were pushed, read back by index or range.
pub(crate) struct RecordLog<T> {
    /// Where each record starts in the log's bytes, and where the last one ends.
    bounds: Vec<u64>,
    /// The log's bytes from `spilled` on.
    tail: Vec<u8>,
    /// How many of the log's first bytes are in `file`.
    spilled: u64,
    file: Option<File>,
    /// Where the file is made (`None`: the temporary folder).
    folder: Option<Arc<Path>>,
    /// Bytes the tail may hold before it goes to the file.
    in_memory: usize,
    /// The encoding of the record being pushed, reused.
    scratch: Vec<u8>,
    /// The first failure to spill: the log takes nothing more, and says so.
    broken: Option<RecordError>,
    records: PhantomData<fn() -> T>,
}

impl<T> Default for RecordLog<T> {
    fn default() -> Self {
        Self::with_memory(IN_MEMORY)
    }
}

impl<T> std::fmt::Debug for RecordLog<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordLog")
            .field("records", &self.len())
            .field("spilled", &self.spilled)
            .finish()
    }
}

impl<T> RecordLog<T> {
    /// A log keeping `in_memory` bytes before it writes to a file.
    pub(crate) fn with_memory(in_memory: usize) -> Self {
        Self {
            bounds: vec![0],
            tail: Vec::new(),
            spilled: 0,
            file: None,
            folder: None,
            in_memory,
            scratch: Vec::new(),
            broken: None,
            records: PhantomData,
        }
    }

    /// The same log, spilling into `folder` (`None`: the temporary folder).
    pub(crate) fn in_folder(mut self, folder: Option<Arc<Path>>) -> Self {
        self.folder = folder;
        self
    }

    /// The folder it spills into.
    fn folder(&self) -> PathBuf {
        self.folder
            .as_deref()
            .map_or_else(std::env::temp_dir, Path::to_path_buf)
    }

    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        self.bounds.len() - 1
    }
}

impl<T: Serialize + DeserializeOwned> RecordLog<T> {
    /// Appends `record`. A record that does not encode is refused alone; a failure
    /// to spill breaks the log (see [`RecordLog::check`]).
    pub(crate) fn push(&mut self, record: &T) -> Result<(), RecordError> {
        if let Some(broken) = &self.broken {
            return Err(broken.clone());
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let encoded = postcard::to_extend(record, scratch)?;
        self.tail.extend_from_slice(&encoded);
        self.scratch = encoded;
        self.bounds.push(self.spilled + self.tail.len() as u64);
        if self.tail.len() >= self.in_memory
            && let Err(source) = self.spill()
        {
            let err = RecordError::Spill {
                folder: self.folder(),
                source,
            };
            self.broken = Some(err.clone());
            return Err(err);
        }
        Ok(())
    }

    fn spill(&mut self) -> std::io::Result<()> {
        let file = match &self.file {
            Some(file) => file,
            None => self.file.insert(match &self.folder {
                Some(folder) => tempfile::tempfile_in(folder)?,
                None => tempfile::tempfile()?,
            }),
        };
        file.write_all_at(&self.tail, self.spilled)?;
        self.spilled += self.tail.len() as u64;
        self.tail.clear();
        Ok(())
    }

    /// Breaks the log with `err` (unless it is broken already): it takes nothing more.
    pub(crate) fn break_with(&mut self, err: RecordError) {
        self.broken.get_or_insert(err);
    }

    /// Whether every record pushed was kept.
    pub(crate) fn check(&self) -> Result<(), RecordError> {
        self.broken.clone().map_or(Ok(()), Err)
    }

    /// Records `range`, decoded.
    pub(crate) fn read(&self, range: Range<usize>) -> Result<Vec<T>, RecordError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let start = self.bounds[range.start];
        let bytes = self.bytes(start..self.bounds[range.end])?;
        self.bounds[range.start..=range.end]
            .windows(2)
            .map(|record| {
                let at = |offset: u64| (offset - start) as usize;
                Ok(postcard::from_bytes(&bytes[at(record[0])..at(record[1])])?)
            })
            .collect()
    }

    /// Record `index`, decoded.
    pub(crate) fn get(&self, index: usize) -> Result<T, RecordError> {
        self.read(index..index + 1)?.pop().ok_or(RecordError::Codec(
            postcard::Error::DeserializeUnexpectedEnd,
        ))
    }

    /// The log's bytes `range`, from the file and the tail.
    fn bytes(&self, range: Range<u64>) -> Result<std::borrow::Cow<'_, [u8]>, RecordError> {
        let spill = |source| RecordError::Spill {
            folder: self.folder(),
            source,
        };
        if range.start >= self.spilled {
            let at = |offset: u64| (offset - self.spilled) as usize;
            return Ok(self.tail[at(range.start)..at(range.end)].into());
        }
        let mut bytes = vec![0; (range.end - range.start) as usize];
        let from_file = (range.end.min(self.spilled) - range.start) as usize;
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| spill(std::io::Error::other("the records' file is gone (a bug)")))?;
        file.read_exact_at(&mut bytes[..from_file], range.start)
            .map_err(spill)?;
        let rest = bytes.len() - from_file;
        bytes[from_file..].copy_from_slice(&self.tail[..rest]);
        Ok(bytes.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AttributeChange, AvatarChange, Change, UserFields, UserId};

    #[test]
    fn changes_round_trip() {
        let fields = UserFields {
            username: "ann".into(),
            email: None,
            display_name: Some("Ann \"A\" Ü".into()),
            language: None,
            active: true,
            ldap_id: Some("id".into()),
            ldap_dn: Some("uid=ann".into()),
            attributes: [("dept".to_owned(), ["a".to_owned(), "b".to_owned()].into())].into(),
        };
        let changes = vec![
            Change::Create {
                fields: fields.clone(),
                avatar: None,
                mapped: None,
            },
            Change::Update {
                id: UserId(3),
                fields,
                attribute_changes: vec![AttributeChange {
                    key: "dept".into(),
                    added: ["b".to_owned()].into(),
                    removed: Default::default(),
                }],
                avatar: AvatarChange::Clear,
                mapped: None,
            },
            Change::Delete { id: UserId(4) },
        ];
        let mut log = RecordLog::default();
        for change in &changes {
            log.push(change).unwrap();
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.read(0..3).unwrap(), changes);
        assert_eq!(log.read(2..3).unwrap(), changes[2..]);
        assert_eq!(log.get(1).unwrap(), changes[1]);
        assert!(log.read(1..1).unwrap().is_empty());
    }

    #[test]
    fn records_past_the_memory_go_to_a_file_and_read_back_across_it() {
        let mut log = RecordLog::with_memory(64 << 10);
        let change = |i: usize, picture: usize| Change::Create {
            fields: UserFields {
                username: format!("user{i}"),
                email: None,
                display_name: None,
                language: None,
                active: true,
                ldap_id: Some(format!("id-{i}")),
                ldap_dn: None,
                attributes: Default::default(),
            },
            avatar: (picture > 0).then(|| crate::store::Avatar {
                bytes: vec![7; picture],
                sha256: "ab".into(),
            }),
            mapped: Some(crate::store::MappedDigest([i as u8; 16])),
        };
        let all: Vec<_> = (0..30_000)
            .map(|i| change(i, if i == 12_345 { 3 << 20 } else { i % 100 }))
            .collect();
        for one in &all {
            log.push(one).unwrap();
        }
        log.check().unwrap();
        assert!(log.spilled > 3 << 20, "{} bytes spilled", log.spilled);
        assert!(log.tail.len() < 64 << 10);
        assert_eq!(log.len(), all.len());
        assert_eq!(log.read(0..all.len()).unwrap(), all);
        assert_eq!(log.read(12_345..12_346).unwrap(), all[12_345..12_346]);
        // A range from the file into the tail.
        let last = all.len() - 1;
        assert_eq!(
            log.read(last - 2_000..all.len()).unwrap(),
            all[last - 2_000..]
        );
        assert_eq!(log.get(last).unwrap(), all[last]);
    }
}
