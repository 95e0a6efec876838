//! Content hash of a game module: the key of the module cache and the name by
//! which modules travel between nodes. Used by the runtime, the host and the state.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::LoadError;

/// Content hash of a module (sha256 of the wasm bytes). Display = lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleHash(pub [u8; 32]);

impl ModuleHash {
    /// Hash of these wasm bytes.
    pub fn of(wasm: &[u8]) -> Self {
        ModuleHash(Sha256::digest(wasm).into())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse 64 hex characters (either case); anything else is [`LoadError::BadHash`].
    pub fn from_hex(s: &str) -> Result<Self, LoadError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| LoadError::BadHash(format!("`{s}` is not a module hash: {e}")))?;
        Ok(ModuleHash(out))
    }
}

impl fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_matches_sha256() {
        let h = ModuleHash::of(b"abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.to_string(), h.to_hex());
        assert_eq!(ModuleHash::from_hex(&h.to_hex()).unwrap(), h);
        assert_eq!(ModuleHash::from_hex(&h.to_hex().to_uppercase()).unwrap(), h);
    }

    #[test]
    fn bad_hex_is_refused() {
        for bad in ["", "zz", &"a".repeat(63), &"a".repeat(66)] {
            let err = ModuleHash::from_hex(bad).unwrap_err();
            assert_eq!(err.code(), "bad_module_hash", "{bad}");
        }
    }
}
