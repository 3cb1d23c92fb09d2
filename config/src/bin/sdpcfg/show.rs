//! `get`, `ls`/`list` and their `watch` forms: read in one transaction, print, and with
//! `watch` wait until anything read changes (the Python tool's `txn.loop(wait=True)`).

use anyhow::Result;
use sdp_config::{Committed, Config, Error};
use tokio_util::sync::CancellationToken;

use crate::output::Out;

/// Recursion depth of `-R`, as in the Python tool.
pub const RECURSE: usize = 8;

/// What to read and print.
#[derive(Debug, Clone)]
pub enum View {
    /// One key.
    Get { path: String },
    /// Keys starting with a prefix, maybe with values.
    List {
        path: String,
        values: bool,
        recursive: bool,
    },
}

/// Print the view once, or with `watch` again after every change until SIGINT or
/// SIGTERM (then return quietly).
///
/// # Errors
/// A failed read, or signal handlers that cannot be installed.
pub async fn show(db: &Config, view: View, watch: bool, out: Out) -> Result<()> {
    if !watch {
        let (lines, _) = read(db, &view, out.quiet).await?;
        return print(out, &lines);
    }
    let cancel = cancel_on_signals()?;
    // A key listing is printed again only when keys come or go, not when a value
    // changes (the Python tool does not wake up for value changes of listed keys).
    let reprint_unchanged = !matches!(view, View::List { values: false, .. });
    let mut last: Option<Vec<String>> = None;
    loop {
        let (lines, committed) = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            read = read(db, &view, out.quiet) => read?,
        };
        if reprint_unchanged || last.as_ref() != Some(&lines) {
            print(out, &lines)?;
        }
        last = Some(lines);
        match db.wait_for_change(&committed.reads, &cancel).await {
            Ok(()) => {}
            Err(Error::Cancelled) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn print(out: Out, lines: &[String]) -> Result<()> {
    for line in lines {
        out.line(line)?;
    }
    Ok(())
}

/// A token cancelled by SIGINT (Ctrl-C) or SIGTERM. The handlers are installed before
/// this returns, so a signal arriving after the first output is never fatal.
///
/// # Errors
/// The handlers cannot be installed.
pub fn cancel_on_signals() -> Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        token.cancel();
    });
    Ok(cancel)
}

async fn read(db: &Config, view: &View, quiet: bool) -> Result<(Vec<String>, Committed)> {
    match view {
        View::Get { path } => {
            let p = path.clone();
            let (value, committed) = db
                .transact_reads(move |txn| {
                    let p = p.clone();
                    Box::pin(async move { txn.get(&p).await })
                })
                .await?;
            Ok((vec![render_get(path, value.as_deref(), quiet)], committed))
        }
        View::List {
            path,
            values,
            recursive,
        } => {
            let (p, values, recurse) =
                (path.clone(), *values, if *recursive { RECURSE } else { 0 });
            let (entries, committed) = db
                .transact_reads(move |txn| {
                    let p = p.clone();
                    Box::pin(async move {
                        if values {
                            txn.list_values(&p, recurse).await
                        } else {
                            Ok(txn
                                .list_keys(&p, recurse)
                                .await?
                                .into_iter()
                                .map(|k| (k, String::new()))
                                .collect())
                        }
                    })
                })
                .await?;
            Ok((render_list(path, &entries, values, quiet), committed))
        }
    }
}

/// `<path> = <value>` (or `None`); quiet: the bare value.
pub fn render_get(path: &str, value: Option<&str>, quiet: bool) -> String {
    let value = value.unwrap_or("None");
    if quiet {
        value.to_string()
    } else {
        format!("{path} = {value}")
    }
}

/// The Python tool's listing output for `(key, value)` pairs.
pub fn render_list(
    path: &str,
    entries: &[(String, String)],
    values: bool,
    quiet: bool,
) -> Vec<String> {
    let pick = |e: &(String, String)| if values { e.1.clone() } else { e.0.clone() };
    if quiet {
        return vec![entries.iter().map(pick).collect::<Vec<_>>().join(" ")];
    }
    if !values {
        let keys: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        return vec![format!("Keys with {path} prefix: {}", keys.join(", "))];
    }
    std::iter::once(format!("Keys with {path} prefix:"))
        .chain(entries.iter().map(|(k, v)| format!("{k} = {v}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<(String, String)> {
        vec![
            ("/pb/a".into(), "{}".into()),
            ("/pb/b".into(), "x y".into()),
        ]
    }

    #[test]
    fn get_prints_none_for_a_missing_key() {
        assert_eq!(render_get("/x", None, false), "/x = None");
        assert_eq!(render_get("/x", None, true), "None");
        assert_eq!(render_get("/x", Some(""), false), "/x = ");
    }

    #[test]
    fn listings_look_like_the_python_tool() {
        assert_eq!(
            render_list("/pb/", &entries(), false, false),
            ["Keys with /pb/ prefix: /pb/a, /pb/b"]
        );
        assert_eq!(
            render_list("/pb/", &[], false, false),
            ["Keys with /pb/ prefix: "]
        );
        assert_eq!(
            render_list("/pb/", &entries(), false, true),
            ["/pb/a /pb/b"]
        );
        assert_eq!(
            render_list("/pb/", &entries(), true, false),
            ["Keys with /pb/ prefix:", "/pb/a = {}", "/pb/b = x y"]
        );
        assert_eq!(render_list("/pb/", &entries(), true, true), ["{} x y"]);
        assert_eq!(render_list("/pb/", &[], true, true), [""]);
    }
}
