//! Where modules (by content hash) and game records live: the embedded store alone, the
//! cluster database in a cluster (so that every node offers the same games and can load
//! any session's module). Used by the catalog at start, by publish, and when a session
//! arrives whose module this node has not compiled yet.

use minotaur_cluster::Db;
use minotaur_state::{GameRecord, Store};

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error(transparent)]
    Store(#[from] minotaur_state::StoreError),
    #[error(transparent)]
    Db(#[from] minotaur_cluster::DbError),
}

/// See the module doc. Cheap to clone.
#[derive(Clone)]
pub enum Records {
    Embedded(Store),
    Cluster(Db),
}

impl Records {
    /// Every game record, by name.
    pub async fn games(&self) -> Result<Vec<(String, GameRecord)>, RecordsError> {
        match self {
            Records::Embedded(s) => {
                let s = s.clone();
                Ok(blocking(move || s.games()).await?)
            }
            Records::Cluster(db) => Ok(db.games().await?),
        }
    }

    pub async fn set_game(&self, name: &str, rec: &GameRecord) -> Result<(), RecordsError> {
        match self {
            Records::Embedded(s) => {
                let (s, name, rec) = (s.clone(), name.to_owned(), rec.clone());
                Ok(blocking(move || s.set_game(&name, &rec)).await?)
            }
            Records::Cluster(db) => Ok(db.set_game(name, rec).await?),
        }
    }

    pub async fn get_module(&self, hash: &str) -> Result<Option<Vec<u8>>, RecordsError> {
        match self {
            Records::Embedded(s) => {
                let (s, hash) = (s.clone(), hash.to_owned());
                Ok(blocking(move || s.get_module(&hash)).await?)
            }
            Records::Cluster(db) => Ok(db.get_module(hash).await?),
        }
    }

    pub async fn put_module(&self, hash: &str, wasm: &[u8]) -> Result<(), RecordsError> {
        match self {
            Records::Embedded(s) => {
                let (s, hash, wasm) = (s.clone(), hash.to_owned(), wasm.to_vec());
                Ok(blocking(move || s.put_module(&hash, &wasm)).await?)
            }
            Records::Cluster(db) => Ok(db.put_module(hash, wasm).await?),
        }
    }
}

/// Runs a store call on a blocking thread (redb does file I/O).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, minotaur_state::StoreError> + Send + 'static,
) -> Result<T, minotaur_state::StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("store call panicked")
}
