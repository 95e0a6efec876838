//! The error type of the reconcile and document layers ([`crate::reconcile`], [`crate::doc`]).

use automerge::AutomergeError;

/// What can go wrong while writing or reading a session document.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The bytes given as a snapshot are not one well-formed MessagePack value.
    #[error("invalid MessagePack: {0}")]
    InvalidMsgpack(String),
    /// A MessagePack map holds the same key twice; Automerge maps cannot represent that.
    #[error("MessagePack map has a duplicate key at {path}")]
    DuplicateKey { path: String },
    /// The value nests deeper than [`crate::reconcile::MAX_DEPTH`].
    #[error("value nests deeper than {0} levels")]
    TooDeep(usize),
    /// The property asked for is not in the document.
    #[error("missing value at {0}")]
    Missing(String),
    /// The document bytes do not load, or the document does not have the session schema.
    #[error("corrupt session document: {0}")]
    Corrupt(String),
    /// Automerge refused an operation (a bug on our side or a foreign document).
    #[error("automerge: {0}")]
    Automerge(#[from] AutomergeError),
}
