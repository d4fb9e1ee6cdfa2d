//! Versioned documents and journals: the store of design and orchestration (issue #6).
//!
//! A document is a JSON body in a named collection (`templates`, `plans`, `workflows`, …)
//! with an owner, a state and a version that every update must name (compare-and-set), and
//! every version kept. A journal is an append-only list of entries per owner id (a
//! workflow's steps), appended atomically with an optional document update, so a workflow's
//! state and its journal never disagree after a crash.

use crate::{NewEvent, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct DocRecord {
    pub collection: String,
    pub id: String,
    pub tenant: String,
    pub owner: String,
    pub name: String,
    /// A lifecycle state the server defines (`draft`, `published`, `running`, …).
    pub state: String,
    /// 1 when created, bumped by every update.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct DocQuery {
    pub tenant: Option<String>,
    pub state: Option<String>,
    pub name: Option<String>,
    /// Start after this id (ids are time-ordered).
    pub after: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DocVersion {
    pub version: u64,
    pub at: DateTime<Utc>,
    pub state: String,
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    /// Position in the journal, from 1.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub entry: serde_json::Value,
}

#[async_trait]
pub trait DocStore: Send + Sync + 'static {
    /// Stores a new document at version 1 (`AlreadyExists` if the id is taken).
    async fn create_doc(&self, doc: DocRecord, events: Vec<NewEvent>) -> Result<DocRecord>;
    async fn get_doc(&self, collection: &str, id: &str) -> Result<Option<DocRecord>>;
    async fn list_docs(&self, collection: &str, query: DocQuery) -> Result<Vec<DocRecord>>;
    /// Replaces name, state and body if the stored version is `doc.version` (else
    /// `StaleVersion`); the answer has the new version.
    async fn update_doc(&self, doc: DocRecord, events: Vec<NewEvent>) -> Result<DocRecord>;
    /// Every version, oldest first.
    async fn doc_history(&self, collection: &str, id: &str) -> Result<Vec<DocVersion>>;
    async fn delete_doc(&self, collection: &str, id: &str) -> Result<()>;
    /// Appends entries to a journal and, in the same transaction, applies `update` (a
    /// compare-and-set like `update_doc`). Nothing is written if the update is stale.
    async fn append_journal(
        &self,
        journal: &str,
        entries: Vec<serde_json::Value>,
        update: Option<DocRecord>,
        events: Vec<NewEvent>,
    ) -> Result<Option<DocRecord>>;
    async fn journal(&self, journal: &str) -> Result<Vec<JournalEntry>>;
}
