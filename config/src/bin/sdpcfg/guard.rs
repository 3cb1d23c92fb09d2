//! `guard [adopt|prune]`: what the helm deployer's database guard holds, and the
//! operator's two answers. Both answers go into the database's identity record, which
//! the deployer reads at every resync: adopted releases become this database's, pruned
//! ones are uninstalled by the deployer. Only the releases the guard reports as held at
//! that moment are named, so a release held later needs its own decision.

use anyhow::{Result, bail};
use sdp_config::Config;
use sdp_config::database::{GUARD_PATH, GuardReport};

use crate::args::GuardAction;
use crate::output::Out;

/// Run `guard`, `guard adopt` or `guard prune`.
///
/// # Errors
/// etcd failures; adopt or prune while the database has no identity yet.
pub async fn guard(db: &Config, action: GuardAction, out: Out) -> Result<()> {
    let report = read_report(db).await?;
    let held: Vec<String> = report.held.iter().map(|h| h.release.clone()).collect();
    match action {
        GuardAction::Show => show(db, &report, out).await,
        _ if held.is_empty() => Ok(out.confirm("Nothing is held by the deployer's guard.")?),
        GuardAction::Adopt | GuardAction::Prune => {
            let adopt = action == GuardAction::Adopt;
            let names = held.clone();
            let updated = db
                .update_database_record(move |record| {
                    let (add, remove) = if adopt {
                        (&mut record.adopted, &mut record.pruned)
                    } else {
                        (&mut record.pruned, &mut record.adopted)
                    };
                    remove.retain(|r| !names.contains(r));
                    for name in &names {
                        if !add.contains(name) {
                            add.push(name.clone());
                        }
                    }
                    add.sort();
                })
                .await?;
            if updated.is_none() {
                bail!(
                    "this configuration database has no identity yet (the deployer creates it when it starts leading); nothing changed"
                );
            }
            let what = if adopt {
                "adopted: the deployer relabels them as this database's at their next helm call and uninstalls those without a deployment entry at its next resync"
            } else {
                "pruned: the deployer uninstalls them at its next resync"
            };
            out.confirm(&format!(
                "OK, {} release(s) {what}: {}",
                held.len(),
                held.join(", ")
            ))?;
            Ok(())
        }
    }
}

async fn read_report(db: &Config) -> Result<GuardReport> {
    let text = db
        .transact(|t| Box::pin(async move { t.get(GUARD_PATH).await }))
        .await?;
    Ok(match text {
        Some(text) => GuardReport::parse(&text)
            .map_err(|e| anyhow::anyhow!("{GUARD_PATH} is not a guard report: {e}"))?,
        None => GuardReport::default(),
    })
}

async fn show(db: &Config, report: &GuardReport, out: Out) -> Result<()> {
    match db.database_record().await? {
        Some((record, _)) => out.line(&format!(
            "Configuration database: {} (identity created {})",
            record.id, record.created
        ))?,
        None => out.line("Configuration database: no identity yet (the deployer creates it when it starts leading)")?,
    }
    if report.held.is_empty() {
        out.line("Held by the deployer's guard: nothing")?;
    } else {
        out.line(&format!(
            "Held by the deployer's guard: {} release(s)",
            report.held.len()
        ))?;
        for h in &report.held {
            let entry = if h.entry { "has an entry" } else { "no entry" };
            out.line(&format!(
                "  {}  {entry}; {}",
                h.release,
                h.reason.describe()
            ))?;
        }
        out.line("Keep them: restore or recreate the deployment entries you want kept, then `sdpcfg guard adopt` (held releases without an entry are then uninstalled).")?;
        out.line("Remove them: `sdpcfg guard prune`.")?;
    }
    if !report.pruning.is_empty() {
        out.line(&format!("Being pruned: {}", report.pruning.join(", ")))?;
    }
    Ok(())
}
