//! `status`: the overview of blocks and deployments, read once, or with `--watch`
//! redrawn on every change (from the one watch the overview follows: nothing is read
//! from etcd per redraw).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use sdp_config::Config;
use sdp_config::overview::{self, BlockSummary, NO_STATUS, Snapshot};

use crate::args::{Format, StatusOptions};
use crate::show::cancel_on_signals;
use crate::table::{self, Style};

/// How often a terminal display is redrawn without a change, so that ages move on.
const AGE_TICK: Duration = Duration::from_secs(5);

/// Where the output goes: a terminal (redraw in place, colours, its width) or not.
struct Screen {
    terminal: bool,
    style: Style,
}

impl Screen {
    fn detect() -> Screen {
        let terminal = std::io::stdout().is_terminal();
        let width = if terminal {
            terminal_size::terminal_size().map(|(w, _)| usize::from(w.0))
        } else {
            std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.trim().parse().ok())
        };
        // https://no-color.org: set and not empty means no colours.
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Screen {
            terminal,
            style: Style {
                colour: terminal && !no_color,
                width: width.filter(|w| *w > 0),
            },
        }
    }
}

/// Does `b` pass the `--status` and `--workflow` filters?
fn matches(b: &BlockSummary, options: &StatusOptions) -> bool {
    let status_ok = options.statuses.is_empty()
        || options.statuses.iter().any(|s| match &b.status {
            Some(status) => status.eq_ignore_ascii_case(s),
            None => s == NO_STATUS,
        });
    let workflow_ok = options.workflows.is_empty()
        || b.workflow.as_deref().is_some_and(|w| {
            let mut parts = w.splitn(3, ':');
            let (kind, id) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            options
                .workflows
                .iter()
                .any(|want| want == w || *want == format!("{kind}:{id}") || want == id)
        });
    status_ok && workflow_ok
}

fn filtered(s: &Snapshot, options: &StatusOptions) -> (Snapshot, bool) {
    let filtering = !options.statuses.is_empty() || !options.workflows.is_empty();
    if filtering {
        (s.filtered(|b| matches(b, options), false), true)
    } else {
        (s.clone(), false)
    }
}

/// The text of one drawing.
fn draw(s: &Snapshot, options: &StatusOptions, style: Style, watching: bool) -> Result<String> {
    let (s, filtering) = filtered(s, options);
    Ok(match options.format {
        // One document per line while watching, for line-oriented readers.
        Some(Format::Json) if watching => format!("{}\n", serde_json::to_string(&s)?),
        Some(Format::Json) => format!("{}\n", serde_json::to_string_pretty(&s)?),
        Some(Format::Yaml) if watching => format!("---\n{}", serde_yaml::to_string(&s)?),
        Some(Format::Yaml) => serde_yaml::to_string(&s)?,
        None => table::render(&s, options.now.unwrap_or_else(Utc::now), style, filtering),
    })
}

fn write_out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Run `status`.
///
/// # Errors
/// The first listing failed, or standard output is closed.
pub async fn status(db: &Config, options: StatusOptions) -> Result<()> {
    let screen = Screen::detect();
    // Read once first: a one-shot answer, and etcd's error at once (the follower below
    // would retry quietly).
    let first = overview::read(db).await?;
    if !options.watch {
        return write_out(&draw(&first, &options, screen.style, false)?);
    }
    let stop = cancel_on_signals()?;
    let follower = overview::follow(db, stop.clone());
    let redraw_in_place = screen.terminal && options.format.is_none();
    let mut snapshots = follower.snapshots();
    let mut current = Arc::new(first);
    let mut last: Option<String> = None;
    loop {
        let text = draw(&current, &options, Screen::detect().style, true)?;
        if redraw_in_place {
            // Home, each line cleared to its end, the rest of the screen cleared.
            let body = text.replace('\n', "\x1b[K\n");
            write_out(&format!(
                "\x1b[H{body}(watching revision {}; Ctrl-C to stop)\x1b[K\n\x1b[J",
                current.revision
            ))?;
        } else if last.as_ref() != Some(&text) {
            // Appended: only what differs from the last drawing.
            write_out(&text)?;
            if options.format.is_none() {
                write_out("\n")?;
            }
        }
        last = Some(text);
        tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            changed = snapshots.changed() => {
                // The follower also stops on Ctrl-C: that is the end, not an error.
                if changed.is_err() {
                    anyhow::ensure!(stop.is_cancelled(), "the overview stopped following etcd");
                    return Ok(());
                }
                let next = snapshots.borrow_and_update().clone();
                // Revision 0: the follower has not listed yet.
                if next.revision > 0 {
                    current = next;
                }
            }
            () = tokio::time::sleep(AGE_TICK), if redraw_in_place => {}
        }
    }
}
