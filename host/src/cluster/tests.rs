//! openraft's storage conformance suite on the SQLite log store and state
//! machine.

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;

use super::log_store::{LogStore, open};
use super::state::StateMachine;
use super::types::TypeConfig;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, Arc<StateMachine>, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, Arc<StateMachine>), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::write(TypeConfig::err_from_error(&e)))?;
        let pool = open(Some(&dir.path().join("raft.db")))
            .await
            .map_err(|e| StorageError::write(TypeConfig::err_from_error(&e)))?;
        let sm = StateMachine::open(pool.clone())
            .await
            .map_err(|e| StorageError::write(TypeConfig::err_from_error(&e)))?;
        Ok((dir, LogStore::new(pool), sm))
    }
}

#[test]
fn the_sqlite_store_passes_openraft_conformance() {
    TypeConfig::run(async {
        Suite::test_all(Builder).await.unwrap();
    });
}
