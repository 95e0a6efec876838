//! The admin API's bearer token: the configured one, checked at start (at least
//! [`MIN_TOKEN_BYTES`] bytes of printable ASCII, or the node refuses to start), or one
//! generated into `<data-dir>/admin.token` (mode 0600). Called by `main` before anything
//! else starts; the CLI reads the generated file through [`token_path`].

use std::path::{Path, PathBuf};

/// The shortest admin token a node accepts, in bytes.
pub const MIN_TOKEN_BYTES: usize = 32;

/// Random bytes in a generated token (hex-encoded: twice as many characters).
const GENERATED_BYTES: usize = 32;

/// Why the node has no usable admin token (it does not start then).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the admin token (--admin-token / MINOTAUR_ADMIN_TOKEN) is {len} bytes long; at \
         least {MIN_TOKEN_BYTES} are required: set a longer random secret (e.g. `head -c 32 \
         /dev/urandom | base64`), or leave it unset to have one generated into \
         <data-dir>/admin.token"
    )]
    TooShort { len: usize },
    #[error(
        "the admin token (--admin-token / MINOTAUR_ADMIN_TOKEN) must be printable ASCII \
         without spaces: it travels in an HTTP `Authorization` header"
    )]
    NotPrintable,
    #[error("writing the generated admin token to {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A token the admin listener may be started with. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminToken({} bytes)", self.0.len())
    }
}

impl AdminToken {
    /// Checks a configured token (surrounding whitespace, e.g. a file's newline, is
    /// dropped first).
    pub fn parse(token: &str) -> Result<AdminToken, TokenError> {
        let token = token.trim();
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotPrintable);
        }
        if token.len() < MIN_TOKEN_BYTES {
            return Err(TokenError::TooShort { len: token.len() });
        }
        Ok(AdminToken(token.to_owned()))
    }

    /// The configured token (an empty one counts as unset), or a generated one written
    /// to `<data_dir>/admin.token` with mode 0600.
    pub fn resolve(configured: Option<&str>, data_dir: &Path) -> Result<AdminToken, TokenError> {
        if let Some(t) = configured.filter(|t| !t.is_empty()) {
            return AdminToken::parse(t);
        }
        let token = hex::encode(rand::random::<[u8; GENERATED_BYTES]>());
        let path = token_path(data_dir);
        std::fs::create_dir_all(data_dir)
            .and_then(|()| write_private(&path, &token))
            .map_err(|source| TokenError::Write {
                path: path.clone(),
                source,
            })?;
        tracing::info!(path = %path.display(), "admin token generated");
        Ok(AdminToken(token))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a generated admin token is written.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

#[cfg(unix)]
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(token.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    std::fs::write(path, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_unprintable_tokens_are_refused() {
        let at_limit = "a".repeat(MIN_TOKEN_BYTES);
        assert_eq!(AdminToken::parse(&at_limit).unwrap().as_str(), at_limit);
        let short = "a".repeat(MIN_TOKEN_BYTES - 1);
        assert!(matches!(
            AdminToken::parse(&short),
            Err(TokenError::TooShort { len: 31 })
        ));
        // Whitespace around does not count towards the length.
        assert!(matches!(
            AdminToken::parse(&format!("  {short}\n")),
            Err(TokenError::TooShort { len: 31 })
        ));
        assert_eq!(
            AdminToken::parse(&format!("{at_limit}\n"))
                .unwrap()
                .as_str(),
            at_limit
        );
        for bad in [format!("{short} b"), format!("{short}é")] {
            assert!(
                matches!(AdminToken::parse(&bad), Err(TokenError::NotPrintable)),
                "{bad:?}"
            );
        }
        let message = AdminToken::parse("change-me").unwrap_err().to_string();
        assert!(message.contains("9 bytes") && message.contains("at least 32"));
    }

    #[test]
    fn a_generated_token_is_long_enough_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let t = AdminToken::resolve(None, dir).unwrap();
        assert_eq!(t.as_str().len(), 2 * GENERATED_BYTES);
        assert!(AdminToken::parse(t.as_str()).is_ok());
        let path = token_path(dir);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), t.as_str());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // An empty configured token counts as unset; the debug form hides the secret.
        let again = AdminToken::resolve(Some(""), dir).unwrap();
        assert_ne!(again, t);
        assert!(!format!("{again:?}").contains(again.as_str()));
    }
}
