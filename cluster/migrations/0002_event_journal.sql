-- Minotaur cluster schema, version 2: the event journal. An acknowledged batch makes its
-- guest events durable (a few dozen bytes per input) instead of the whole guest snapshot;
-- the document's state followed by a session's records in `seq` order rebuilds the
-- acknowledged state (the guest is deterministic). Every document write of a session
-- deletes its records in the same transaction, so records that exist apply on top of it.
--
-- No foreign key to minotaur_sessions: an append is fenced by a FOR SHARE lock on the
-- session's directory row (owner and epoch checked under it), and the key check would take
-- a second lock on the same row. Records of an ended session are deleted by its last write.
CREATE TABLE minotaur_session_journal (
    session text   NOT NULL,
    seq     bigserial,
    record  bytea  NOT NULL,
    PRIMARY KEY (session, seq)
);

-- `minotaur_sessions.journal` (version 1's raw snapshot) is no longer written; nodes still
-- read it (a session acknowledged by a version-1 node keeps its progress) and every
-- document write clears it.
COMMENT ON COLUMN minotaur_sessions.journal IS
    'legacy (schema 1): raw guest snapshot newer than doc; read, never written since schema 2';
