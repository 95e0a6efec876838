//! A session's *journal*: the guest events applied since its stored document, so that an
//! acknowledgement needs only a few dozen bytes made durable, not a snapshot or a document
//! save. The guest is deterministic (no clock, no randomness but the seed kept in its
//! state), so the document's state followed by these events in order rebuilds exactly the
//! state that was acknowledged.
//!
//! Invariants, kept by both stores (redb here, PostgreSQL in `minotaur-cluster`):
//! - records are appended in the order the session wrote them and read back in that order;
//! - any write of the document (full, incremental or delete) drops every record in the same
//!   transaction: a record that exists always applies on top of the stored document;
//! - the events of one session's records all ran under the rules of the module the document
//!   names (a rules swap writes the document before anything else is journaled).
//!
//! The same record format is what a replay of a session reads.

use minotaur_abi::Event;
use serde::{Deserialize, Serialize};

use crate::StateError;

/// One journal append: the events of one or more batches, in order, and the session's tick
/// after them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRecord {
    pub tick: u64,
    pub events: Vec<Event>,
}

impl JournalRecord {
    /// The stored form: MessagePack (compact: structs as arrays).
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("a journal record always serializes")
    }

    /// The inverse of [`JournalRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<JournalRecord, StateError> {
        rmp_serde::from_slice(bytes)
            .map_err(|e| StateError::Corrupt(format!("journal record: {e}")))
    }
}

/// What a session's journal holds when it is loaded: apply `snapshot` (if any) instead of
/// the document's state, then every record's events in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journal {
    /// A raw guest snapshot after tick `.0`, newer than the document: what stores written
    /// before the event journal hold. Nothing writes one any more; it is read so that an
    /// upgraded node loses no acknowledged input, and dropped by the next document write.
    pub snapshot: Option<(u64, Vec<u8>)>,
    /// Records appended since the document (or the snapshot), oldest first.
    pub records: Vec<JournalRecord>,
}

impl Journal {
    /// Nothing newer than the document.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.records.is_empty()
    }

    /// The session's tick after the journal (`None` if it holds nothing).
    pub fn tick(&self) -> Option<u64> {
        let records = self.records.iter().map(|r| r.tick).max();
        let snapshot = self.snapshot.as_ref().map(|(t, _)| *t);
        records.max(snapshot)
    }

    /// Every event in order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.records.iter().flat_map(|r| r.events.iter())
    }

    /// Reads the legacy snapshot form: 8 bytes of little-endian tick, then the snapshot.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<(u64, Vec<u8>), StateError> {
        let (tick, state) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| StateError::Corrupt("journal snapshot shorter than its tick".into()))?;
        Ok((u64::from_le_bytes(*tick), state.to_vec()))
    }

    /// Builds a journal from stored pieces, decoding each record.
    pub fn from_stored(
        snapshot: Option<&[u8]>,
        records: impl IntoIterator<Item = impl AsRef<[u8]>>,
    ) -> Result<Journal, StateError> {
        Ok(Journal {
            snapshot: snapshot.map(Journal::decode_snapshot).transpose()?,
            records: records
                .into_iter()
                .map(|r| JournalRecord::decode(r.as_ref()))
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_stays_small() {
        let record = JournalRecord {
            tick: 1234,
            events: vec![
                Event::Tick { n: 1234, dt_ms: 50 },
                Event::Input {
                    player: 3,
                    data: vec![0x92, 0x01, 0x02],
                },
            ],
        };
        let bytes = record.encode();
        assert_eq!(JournalRecord::decode(&bytes).unwrap(), record);
        // A few dozen bytes for a tick and an input, not a snapshot.
        assert!(bytes.len() < 40, "{} bytes", bytes.len());
    }

    #[test]
    fn garbage_is_a_corrupt_error_not_a_panic() {
        assert!(JournalRecord::decode(&[0xc1, 0xff, 0x00]).is_err());
        assert!(Journal::decode_snapshot(&[1, 2, 3]).is_err());
        let j = Journal::from_stored(
            Some(&[7, 0, 0, 0, 0, 0, 0, 0, 0xc0][..]),
            [[0x92u8, 5, 0x90]],
        )
        .unwrap();
        assert_eq!(j.snapshot, Some((7, vec![0xc0])));
        assert_eq!(
            j.records,
            vec![JournalRecord {
                tick: 5,
                events: vec![]
            }]
        );
        assert_eq!(j.tick(), Some(7));
    }
}
