//! Run an [`Action`] against the database: the writing commands live here, the
//! reading ones in [`crate::show`], `edit` in [`crate::edit`].

use std::collections::HashSet;

use anyhow::{Result, anyhow};
use sdp_config::Config;
use sdp_config::entity::{Deployment, ProcessingBlock, WorkflowRef};
use serde_json::{Map, Value};

use crate::input::Action;
use crate::output::Out;
use crate::show::{self, RECURSE, View};

/// Keys deleted per transaction by `delete -R` (etcd takes at most 128 operations).
pub const DELETE_CHUNK: usize = 100;

/// Most deployments `retry` takes at once: one transaction, at most three operations
/// each (etcd takes at most 128).
pub const MAX_RETRY: usize = 40;

/// Highest processing block sequence number of a day (`NNNN`), as the Python tools.
const LAST_PB_NUMBER: u32 = 9998;

/// Run one action.
///
/// # Errors
/// Whatever the database or the command refused, as one message.
pub async fn run(db: &Config, action: Action, out: Out) -> Result<()> {
    match action {
        Action::Get { path, watch } => show::show(db, View::Get { path }, watch, out).await,
        Action::List {
            path,
            values,
            recursive,
            watch,
        } => {
            show::show(
                db,
                View::List {
                    path,
                    values,
                    recursive,
                },
                watch,
                out,
            )
            .await
        }
        Action::Create { path, value } => {
            db.transact(move |txn| {
                let (path, value) = (path.clone(), value.clone());
                Box::pin(async move { txn.create(&path, &value).await })
            })
            .await?;
            Ok(out.confirm("OK")?)
        }
        Action::Update { path, value } => {
            db.transact(move |txn| {
                let (path, value) = (path.clone(), value.clone());
                Box::pin(async move { txn.update(&path, &value).await })
            })
            .await?;
            Ok(out.confirm("OK")?)
        }
        Action::Delete {
            path,
            recursive: false,
        } => {
            db.transact(move |txn| {
                let path = path.clone();
                Box::pin(async move { txn.delete(&path).await })
            })
            .await?;
            Ok(out.confirm("OK")?)
        }
        Action::Delete {
            path,
            recursive: true,
        } => delete_recursive(db, &path, out).await,
        Action::Edit { path } => crate::edit::edit(db, &path, out).await,
        Action::Process {
            workflow,
            parameters,
            wait,
        } => {
            let date = chrono::Local::now().format("%Y%m%d").to_string();
            let id = create_processing_block(db, workflow, parameters, &date).await?;
            out.confirm(&format!("OK, pb_id = {id}"))?;
            if let Some(limit) = wait {
                let status = crate::wait::until_started(db, &id, limit).await?;
                out.line(&format!("{id} {status}"))?;
            }
            Ok(())
        }
        Action::Status(options) => crate::status::status(db, options).await,
        Action::Workflows { format } => crate::workflows::workflows(db, format, out).await,
        Action::Retry { ids } => retry(db, ids, out).await,
        Action::Guard(action) => crate::guard::guard(db, action, out).await,
        Action::Deploy { path, value } => {
            // Like the Python tool, prints nothing on success.
            db.transact(move |txn| {
                let (path, value) = (path.clone(), value.clone());
                Box::pin(async move { txn.create(&path, &value).await })
            })
            .await?;
            Ok(())
        }
    }
}

/// `delete -R <path>`: the key itself and the keys below it, 8 levels deep, as the
/// Python tool lists them, but only below `<path>/` (never `<path>x`). Each deleted key
/// is printed, then `OK`. At most [`DELETE_CHUNK`] keys per transaction.
async fn delete_recursive(db: &Config, path: &str, out: Out) -> Result<()> {
    // `/pb/a` → the key `/pb/a` plus `/pb/a/…` down to the depth `/pb/a` + 8.
    // `/pb/a/` (or `/`) → only keys below it, down to the same depth as the Python tool.
    let (own, below, levels) = match path.strip_suffix('/') {
        Some(_) => (None, path.to_string(), RECURSE),
        None => (Some(path.to_string()), format!("{path}/"), RECURSE - 1),
    };
    loop {
        let (own, below) = (own.clone(), below.clone());
        let (deleted, more) = db
            .transact(move |txn| {
                let (own, below) = (own.clone(), below.clone());
                Box::pin(async move {
                    let mut keys = Vec::new();
                    if let Some(own) = own
                        && txn.get(&own).await?.is_some()
                    {
                        keys.push(own);
                    }
                    keys.extend(txn.list_keys(&below, levels).await?);
                    keys.sort();
                    let more = keys.len() > DELETE_CHUNK;
                    keys.truncate(DELETE_CHUNK);
                    for key in &keys {
                        txn.delete(key).await?;
                    }
                    Ok((keys, more))
                })
            })
            .await?;
        for key in &deleted {
            out.confirm(key)?;
        }
        if !more {
            return Ok(out.confirm("OK")?);
        }
    }
}

/// `retry <deploy_id>...`: delete each deployment's state (the deployer then tries it
/// again from attempt 1), in one transaction that deletes nothing unless every
/// deployment exists. Prints one line per deployment (none with `-q`).
async fn retry(db: &Config, ids: Vec<String>, out: Out) -> Result<()> {
    let outcome = db
        .transact(move |txn| {
            let ids = ids.clone();
            Box::pin(async move {
                let mut unknown = Vec::new();
                let mut with_state = Vec::new();
                for id in &ids {
                    if txn.get(&Deployment::path(id)).await?.is_none() {
                        unknown.push(id.clone());
                    } else {
                        let state = txn.get(&Deployment::state_path(id)).await?;
                        with_state.push((id.clone(), state.is_some()));
                    }
                }
                if !unknown.is_empty() {
                    return Ok(Err(unknown));
                }
                for (id, has_state) in &with_state {
                    if *has_state {
                        txn.delete(&Deployment::state_path(id)).await?;
                    }
                }
                Ok(Ok(with_state))
            })
        })
        .await?;
    let done = outcome.map_err(|unknown| {
        let paths: Vec<String> = unknown.iter().map(|id| Deployment::path(id)).collect();
        let verb = if paths.len() == 1 { "does" } else { "do" };
        anyhow!(
            "no such deployment: {} {verb} not exist; nothing retried",
            paths.join(", ")
        )
    })?;
    for (id, had_state) in done {
        if had_state {
            out.confirm(&format!(
                "{id}: state deleted; the deployer tries again from attempt 1"
            ))?;
        } else {
            out.confirm(&format!(
                "{id}: no state to delete; the deployer has not reported on it yet"
            ))?;
        }
    }
    Ok(())
}

/// Create a processing block with the first free ID of the day; returns the ID.
/// Concurrent callers get different IDs: the listing is part of the transaction.
async fn create_processing_block(
    db: &Config,
    workflow: WorkflowRef,
    parameters: Map<String, Value>,
    date: &str,
) -> Result<String> {
    let prefix = format!("{}-{date}-", workflow.kind.as_str());
    let created = db
        .transact(move |txn| {
            let (prefix, workflow, parameters) =
                (prefix.clone(), workflow.clone(), parameters.clone());
            Box::pin(async move {
                let used = txn.list_keys(&ProcessingBlock::path(&prefix), 0).await?;
                let Some(id) = first_free_id(&prefix, &used) else {
                    return Ok(None);
                };
                let mut pb = ProcessingBlock::new(id.clone(), workflow);
                pb.parameters = parameters;
                txn.create(&ProcessingBlock::path(&id), &pb.to_json())
                    .await?;
                Ok(Some(id))
            })
        })
        .await?;
    created.ok_or_else(|| {
        anyhow!("no processing block ID left for today: all of 0000 to {LAST_PB_NUMBER} are used")
    })
}

/// The first `<prefix><NNNN>` whose path is not among `used`.
pub fn first_free_id(prefix: &str, used: &[String]) -> Option<String> {
    let used: HashSet<&str> = used.iter().map(String::as_str).collect();
    (0..=LAST_PB_NUMBER)
        .map(|n| format!("{prefix}{n:04}"))
        .find(|id| !used.contains(ProcessingBlock::path(id).as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_unused_number_of_the_day_is_taken() {
        let p = "realtime-20191121-";
        assert_eq!(first_free_id(p, &[]).unwrap(), "realtime-20191121-0000");
        let used = vec![
            "/pb/realtime-20191121-0000".to_string(),
            "/pb/realtime-20191121-0002".to_string(),
        ];
        assert_eq!(first_free_id(p, &used).unwrap(), "realtime-20191121-0001");
        let all: Vec<String> = (0..=LAST_PB_NUMBER)
            .map(|n| format!("/pb/{p}{n:04}"))
            .collect();
        assert_eq!(first_free_id(p, &all), None);
    }
}
