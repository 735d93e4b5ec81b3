//! A consistent view of the store for one search. Every read through it
//! sees the database as of its first read (one read transaction on one
//! connection, a WAL snapshot), so the candidates an index gives and the
//! objects read after them agree: an object overwritten mid-search is seen
//! either as it was or as it is, never lost between the two.

use sqlx::Sqlite;

use super::index::{self, CandidateIds, CandidateKeys, Candidates, IndexDef};
use super::scan::{self, Position, SortField};
use super::{MetaError, ObjectRecord};

pub struct View {
    tx: sqlx::Transaction<'static, Sqlite>,
}

impl View {
    pub(super) fn new(tx: sqlx::Transaction<'static, Sqlite>) -> Self {
        View { tx }
    }

    /// Ends this snapshot; the next read starts a new one, on the same
    /// connection.
    pub async fn renew(&mut self) -> Result<(), MetaError> {
        // Within the transaction sqlx tracks: it still rolls back on drop.
        sqlx::query("COMMIT").execute(&mut *self.tx).await?;
        sqlx::query("BEGIN").execute(&mut *self.tx).await?;
        Ok(())
    }

    pub async fn list_indexes(&mut self) -> Result<Vec<IndexDef>, MetaError> {
        index::list(&mut *self.tx).await
    }

    /// The newest version id: how far indexes have to go.
    pub async fn head(&mut self) -> Result<i64, MetaError> {
        index::head(&mut *self.tx).await
    }

    /// Up to `limit` live objects of `bucket` in `sort` order after
    /// `after`, each with its position; fewer than `limit` means no more.
    pub async fn scan(
        &mut self,
        bucket: &str,
        sort: &SortField,
        descending: bool,
        after: Option<&Position>,
        limit: u32,
    ) -> Result<Vec<(ObjectRecord, Position)>, MetaError> {
        super::sql::require_bucket(&mut self.tx, bucket).await?;
        scan::scan(&mut self.tx, bucket, sort, descending, after, limit, None).await
    }

    /// Like [`View::scan`], over only the candidate versions `ids`.
    pub async fn scan_ids(
        &mut self,
        bucket: &str,
        sort: &SortField,
        descending: bool,
        after: Option<&Position>,
        limit: u32,
        ids: &CandidateIds,
    ) -> Result<Vec<(ObjectRecord, Position)>, MetaError> {
        scan::scan(&mut self.tx, bucket, sort, descending, after, limit, Some(&ids.json)).await
    }

    /// The live objects of `bucket` among versions `ids`, in that order.
    pub async fn live_in_order(&mut self, bucket: &str, ids: &[i64]) -> Result<Vec<ObjectRecord>, MetaError> {
        scan::live_in_order(&mut self.tx, bucket, ids).await
    }

    /// Up to `limit` version ids of a candidate set.
    pub async fn candidate_ids(&mut self, c: &Candidates, limit: u32) -> Result<CandidateIds, MetaError> {
        index::candidate_ids(&mut self.tx, c, limit).await
    }

    /// Up to `max` candidates after `after` counted, the first `take` in
    /// key order with their keys (see [`index::candidate_keys`]).
    pub async fn candidate_keys(
        &mut self,
        c: &Candidates,
        after: Option<(&str, Option<i64>)>,
        descending: bool,
        max: u32,
        take: u32,
    ) -> Result<CandidateKeys, MetaError> {
        index::candidate_keys(&mut self.tx, c, after, descending, max, take).await
    }
}
