//! The web console's local users: one row per user name, the record as JSON (the role by name,
//! the argon2id hash in PHC form). The table is created by the first write; reading before that
//! finds no user.

use super::{Result, Store, StoreError};
use crate::roles::Role;
use redb::{ReadableTable, TableDefinition, TableError};
use serde::{Deserialize, Serialize};

const WEB_USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("web_users");

/// A stored console user. The hash never leaves the controller and is not shown by `Debug`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebUserRecord {
    pub name: String,
    pub role: Role,
    /// argon2id, PHC string format.
    pub password_hash: String,
    pub created_unix_ms: u64,
}

impl std::fmt::Debug for WebUserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebUserRecord")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("created_unix_ms", &self.created_unix_ms)
            .finish_non_exhaustive()
    }
}

/// What adding a user came to.
#[derive(Debug, PartialEq, Eq)]
pub enum WebUserAdd {
    Added,
    Exists,
    /// `only_if_none` was asked and a user exists already (a first-run setup raced another).
    NotFirst,
}

/// What removing a user came to.
#[derive(Debug, PartialEq, Eq)]
pub enum WebUserRemoval {
    Removed,
    NotFound,
    /// The last admin stays: nobody could manage users any more.
    LastAdmin,
}

fn decode(bytes: &[u8]) -> Result<WebUserRecord> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        table: "web_users".into(),
        msg: e.to_string(),
    })
}

fn encode(rec: &WebUserRecord) -> Result<Vec<u8>> {
    serde_json::to_vec(rec).map_err(|e| StoreError::Commit(e.to_string()))
}

impl Store {
    /// Every console user, by name.
    pub fn web_users(&self) -> Result<Vec<WebUserRecord>> {
        self.read(|txn| {
            let t = match txn.open_table(WEB_USERS) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                let (_, v) = row?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
    }

    pub fn web_user(&self, name: &str) -> Result<Option<WebUserRecord>> {
        self.read(|txn| {
            let t = match txn.open_table(WEB_USERS) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            t.get(name)?.map(|v| decode(v.value())).transpose()
        })
    }

    /// Adds a user unless one of that name exists; with `only_if_none`, only when there is no
    /// user at all (the first-run admin), checked in the same transaction.
    pub async fn add_web_user(&self, rec: WebUserRecord, only_if_none: bool) -> Result<WebUserAdd> {
        self.submit(move |txn| {
            let mut t = txn.open_table(WEB_USERS)?;
            if only_if_none && t.iter()?.next().is_some() {
                return Ok(WebUserAdd::NotFirst);
            }
            if t.get(rec.name.as_str())?.is_some() {
                return Ok(WebUserAdd::Exists);
            }
            t.insert(rec.name.as_str(), encode(&rec)?.as_slice())?;
            Ok(WebUserAdd::Added)
        })
        .await
    }

    pub async fn remove_web_user(&self, name: &str) -> Result<WebUserRemoval> {
        let name = name.to_string();
        self.submit(move |txn| {
            let mut t = txn.open_table(WEB_USERS)?;
            let rec = match t.get(name.as_str())? {
                Some(v) => decode(v.value())?,
                None => return Ok(WebUserRemoval::NotFound),
            };
            if rec.role == Role::Admin && admins(&t)? <= 1 {
                return Ok(WebUserRemoval::LastAdmin);
            }
            t.remove(name.as_str())?;
            Ok(WebUserRemoval::Removed)
        })
        .await
    }
}

fn admins(t: &redb::Table<&str, &[u8]>) -> Result<usize> {
    let mut n = 0;
    for row in t.iter()? {
        let (_, v) = row?;
        if decode(v.value())?.role == Role::Admin {
            n += 1;
        }
    }
    Ok(n)
}
