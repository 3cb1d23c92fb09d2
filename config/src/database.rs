//! The identity of a configuration database: a random ID created once, which the helm
//! deployer writes onto every release it installs, so that a deployer facing a wiped or
//! replaced database can tell that the releases it finds were not made from this one.
//!
//! The record lives under a raw etcd key (`database-identity<prefix>`), not under a
//! configuration path, so `sdpcfg ls` does not show it and `sdpcfg delete -R /` does
//! not remove it; a backup of the etcd data carries it, so restoring a backup restores
//! the identity. Each global prefix has its own record.

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::client::{Config, Retry};
use crate::error::{Error, Result};

/// Attempts of a read-modify-write of the record before giving up.
const ATTEMPTS: u32 = 10;

/// What the database says about itself and about releases made elsewhere.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseRecord {
    /// The database's identity: 32 random hex digits.
    pub id: String,
    /// When the record was created (RFC 3339).
    #[serde(default)]
    pub created: String,
    /// Releases without a database label (installed before the guard existed) belong to
    /// this database: it held deployment entries when the record was created.
    #[serde(default)]
    pub unlabelled_are_ours: bool,
    /// Releases an operator adopted (`sdpcfg guard adopt`): this database's now,
    /// whatever label they carry.
    #[serde(default)]
    pub adopted: Vec<String>,
    /// Releases an operator asked to remove (`sdpcfg guard prune`): uninstalled while
    /// they carry another database's label (or none).
    #[serde(default)]
    pub pruned: Vec<String>,
    /// Fields written by others, kept.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl DatabaseRecord {
    /// A new record with a fresh random ID.
    pub fn new(unlabelled_are_ours: bool) -> Self {
        DatabaseRecord {
            id: format!("{:032x}", rand::random::<u128>()),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            unlabelled_are_ours,
            ..Default::default()
        }
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<DatabaseRecord>(bytes)
            .ok()
            .filter(|r| !r.id.is_empty())
    }

    fn to_text(&self) -> String {
        crate::json::to_python_string_of(self).unwrap_or_default()
    }
}

/// Configuration path where the helm deployer reports the releases its guard holds
/// (absent when it holds none).
pub const GUARD_PATH: &str = "/deployer/guard";

/// Why the deployer's guard holds a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeldReason {
    /// Labelled with another configuration database's identity.
    OtherDatabase,
    /// Installed before releases were labelled, and this database held no deployment
    /// entries when its identity was created (it is probably new or wiped).
    UnlabelledOnNewDatabase,
}

impl HeldReason {
    /// In words.
    pub fn describe(self) -> &'static str {
        match self {
            HeldReason::OtherDatabase => "installed from another configuration database",
            HeldReason::UnlabelledOnNewDatabase => {
                "installed before the guard existed, and this configuration database had no deployments when it got its identity"
            }
        }
    }
}

/// One release held by the guard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRelease {
    /// Release name.
    pub release: String,
    /// Why it is held.
    pub reason: HeldReason,
    /// Whether a deployment entry of this database maps to it.
    #[serde(default)]
    pub entry: bool,
}

/// What the deployer writes at [`GUARD_PATH`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardReport {
    /// This database's identity.
    pub database: String,
    /// The releases held, by name.
    pub held: Vec<HeldRelease>,
    /// Releases being uninstalled after `sdpcfg guard prune`.
    #[serde(default)]
    pub pruning: Vec<String>,
    /// What is going on and what to do, in words.
    #[serde(default)]
    pub message: String,
}

impl GuardReport {
    /// Parse the stored text.
    ///
    /// # Errors
    /// Not a guard report.
    pub fn parse(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    /// The stored text (Python formatting).
    pub fn to_json(&self) -> String {
        crate::json::to_python_string_of(self).unwrap_or_default()
    }
}

impl Config {
    fn database_key(&self) -> Vec<u8> {
        format!("database-identity{}", self.keys().prefix()).into_bytes()
    }

    /// The record and its `mod_revision`, if there is one (an unreadable record counts
    /// as none).
    ///
    /// # Errors
    /// [`Error::RequestFailed`].
    pub async fn database_record(&self) -> Result<Option<(DatabaseRecord, i64)>> {
        let key = self.database_key();
        let resp = self
            .request("get", Retry::Idempotent, |mut c| {
                let key = key.clone();
                async move { c.kv.get(key, None).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .first()
            .and_then(|kv| DatabaseRecord::parse(kv.value()).map(|r| (r, kv.mod_revision()))))
    }

    /// The record, created now (with `unlabelled_are_ours`) if there is none. When two
    /// processes race, both get the one that was stored first.
    ///
    /// # Errors
    /// [`Error::RequestFailed`], [`Error::RetriesExhausted`].
    pub async fn database_record_or_create(
        &self,
        unlabelled_are_ours: bool,
    ) -> Result<DatabaseRecord> {
        for _ in 0..ATTEMPTS {
            if let Some((record, _)) = self.database_record().await? {
                return Ok(record);
            }
            let record = DatabaseRecord::new(unlabelled_are_ours);
            // Absent, or present but unreadable (then replaced): compare on version 0.
            let absent = Compare::version(self.database_key(), CompareOp::Equal, 0);
            if self.put_record_if(absent, &record).await? {
                return Ok(record);
            }
        }
        Err(Error::RetriesExhausted { attempts: ATTEMPTS })
    }

    /// Change the record with `change` (read, change, write back if unchanged meanwhile);
    /// `None` when there is no record.
    ///
    /// # Errors
    /// [`Error::RequestFailed`], [`Error::RetriesExhausted`].
    pub async fn update_database_record(
        &self,
        mut change: impl FnMut(&mut DatabaseRecord),
    ) -> Result<Option<DatabaseRecord>> {
        for _ in 0..ATTEMPTS {
            let Some((mut record, revision)) = self.database_record().await? else {
                return Ok(None);
            };
            change(&mut record);
            let unchanged = Compare::mod_revision(self.database_key(), CompareOp::Equal, revision);
            if self.put_record_if(unchanged, &record).await? {
                return Ok(Some(record));
            }
        }
        Err(Error::RetriesExhausted { attempts: ATTEMPTS })
    }

    /// Store `record` if `compare` holds; whether it was stored. Sent again after a
    /// member failure: the compare makes a repeat harmless (it fails, and the callers
    /// read what is stored).
    async fn put_record_if(&self, compare: Compare, record: &DatabaseRecord) -> Result<bool> {
        let txn = Txn::new().when([compare]).and_then([TxnOp::put(
            self.database_key(),
            record.to_text(),
            None,
        )]);
        let resp = self
            .request("txn", Retry::Idempotent, |mut c| {
                let txn = txn.clone();
                async move { c.kv.txn(txn).await }
            })
            .await?;
        Ok(resp.succeeded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_unknown_fields_and_refuse_an_empty_id() {
        let text = br#"{"id": "ab", "created": "t", "other": 1}"#;
        let record = DatabaseRecord::parse(text).unwrap_or_default();
        assert_eq!(record.id, "ab");
        assert!(!record.unlabelled_are_ours && record.adopted.is_empty());
        assert!(record.to_text().contains("\"other\": 1"));
        assert!(DatabaseRecord::parse(br#"{"id": ""}"#).is_none());
        assert!(DatabaseRecord::parse(b"junk").is_none());
        let fresh = DatabaseRecord::new(true);
        assert_eq!(fresh.id.len(), 32);
        assert_ne!(fresh.id, DatabaseRecord::new(true).id);
    }
}
