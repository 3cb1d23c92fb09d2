//! The `status` table: one line per block and one per deployment under it (blocks
//! aligned with blocks, deployments with deployments, so that long deployment IDs do
//! not push the blocks' reasons off the screen), the last column (reason or message)
//! cut to the terminal width, statuses coloured on a terminal, then a totals line. A pure function of the snapshot, the
//! time and the style, so its output is tested as text.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sdp_config::overview::{BlockSummary, DeploymentSummary, NO_STATUS, Snapshot, short_age};

/// How the table is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Colour statuses (a terminal, without `NO_COLOR`).
    pub colour: bool,
    /// Cut lines to this many characters (the terminal's width).
    pub width: Option<usize>,
}

const SEP: &str = "  ";
const BRANCH: &str = "└─ ";
const BLOCK_HEADER: [&str; 6] = ["ID", "WORKFLOW", "STATUS", "AGE", "OWNER", "REASON"];
const DEPLOYMENT_HEADER: [&str; 5] = ["└─ DEPLOYMENT", "CHART", "RELEASE", "WORKLOAD", "MESSAGE"];
const NO_BLOCK: &str = "(no block)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Colour {
    Green,
    Yellow,
    Red,
    Grey,
}

impl Colour {
    fn code(self) -> &'static str {
        match self {
            Colour::Green => "32",
            Colour::Yellow => "33",
            Colour::Red => "31",
            Colour::Grey => "90",
        }
    }

    /// The colour of a block status, release status or workload phase.
    fn of_status(status: &str) -> Option<Colour> {
        match status {
            "RUNNING" | "FINISHED" | "DEPLOYED" => Some(Colour::Green),
            "STARTING" | "WAITING" | "PENDING" | "INSTALLING" | "UPGRADING" => Some(Colour::Yellow),
            "FAILED" => Some(Colour::Red),
            "CANCELLED" | "UNINSTALLING" | "NONE" => Some(Colour::Grey),
            _ => None,
        }
    }
}

/// One line of the table: cells, each maybe coloured.
struct Row {
    /// A block line (or a header or group line in the blocks' columns), or a
    /// deployment line.
    block: bool,
    cells: Vec<String>,
    colours: Vec<Option<Colour>>,
}

impl Row {
    fn plain(block: bool, cells: &[&str]) -> Row {
        Row {
            block,
            cells: cells.iter().map(|c| c.to_string()).collect(),
            colours: vec![None; cells.len()],
        }
    }
}

fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// Text on one line: runs of whitespace (newlines included) become one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn block_row(b: &BlockSummary, now: DateTime<Utc>) -> Row {
    let status = or_dash(&b.status);
    let owner = match &b.owner {
        Some(o) => format!("alive {o}"),
        None => "none".into(),
    };
    let age = b
        .since_time()
        .map_or_else(|| "-".into(), |since| short_age(now - since));
    let colours = vec![
        None,
        None,
        Colour::of_status(&status),
        None,
        b.owner.as_ref().map(|_| Colour::Green),
        None,
    ];
    Row {
        block: true,
        cells: vec![
            b.id.clone(),
            or_dash(&b.workflow),
            status,
            age,
            owner,
            one_line(b.reason.as_deref().unwrap_or("")),
        ],
        colours,
    }
}

fn deployment_row(d: &DeploymentSummary) -> Row {
    let chart = match (&d.chart, &d.kind) {
        (Some(chart), _) => chart.clone(),
        (None, Some(kind)) => format!("({kind})"),
        (None, None) => "-".into(),
    };
    let release = or_dash(&d.status);
    let workload = or_dash(&d.workload_phase);
    // What is wrong with the workload says more than the release's progress line.
    let message = d.workload_message.as_ref().or(d.message.as_ref());
    let colours = vec![
        None,
        None,
        Colour::of_status(&release),
        Colour::of_status(&workload),
        None,
    ];
    Row {
        block: false,
        cells: vec![
            format!("{BRANCH}{}", d.id),
            chart,
            release,
            workload,
            one_line(message.map_or("", String::as_str)),
        ],
        colours,
    }
}

/// The table and the totals line, each line ending in a newline.
pub fn render(s: &Snapshot, now: DateTime<Utc>, style: Style, filtered: bool) -> String {
    let mut rows = Vec::new();
    for b in &s.blocks {
        rows.push(block_row(b, now));
        rows.extend(s.deployments_of(b).map(deployment_row));
    }
    if !s.orphans.is_empty() {
        rows.push(Row::plain(true, &[NO_BLOCK]));
        rows.extend(s.orphan_deployments().map(deployment_row));
    }
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str(if filtered {
            "No processing block matches.\n"
        } else {
            "No processing blocks or deployments.\n"
        });
    } else {
        let mut all = vec![
            Row::plain(true, &BLOCK_HEADER),
            Row::plain(false, &DEPLOYMENT_HEADER),
        ];
        all.append(&mut rows);
        let blocks = column_widths(all.iter().filter(|r| r.block));
        let deployments = column_widths(all.iter().filter(|r| !r.block));
        for row in &all {
            let widths = if row.block { &blocks } else { &deployments };
            out.push_str(&line(row, widths, style));
            out.push('\n');
        }
    }
    out.push_str(&totals(s, filtered));
    out.push('\n');
    out
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Widths of the columns of these rows (the last cell of a row is not padded, so it
/// does not count).
fn column_widths<'a>(rows: impl Iterator<Item = &'a Row>) -> Vec<usize> {
    let mut w: Vec<usize> = Vec::new();
    for row in rows {
        let padded = row.cells.len().saturating_sub(1);
        if w.len() < padded {
            w.resize(padded, 0);
        }
        for (width, cell) in w.iter_mut().zip(&row.cells[..padded]) {
            *width = (*width).max(chars(cell));
        }
    }
    w
}

fn paint(text: &str, colour: Option<Colour>, style: Style) -> String {
    match colour {
        Some(c) if style.colour && !text.is_empty() => format!("\x1b[{}m{text}\x1b[0m", c.code()),
        _ => text.to_string(),
    }
}

fn line(row: &Row, widths: &[usize], style: Style) -> String {
    let mut out = String::new();
    let mut used = 0;
    let Some((last, padded)) = row.cells.split_last() else {
        return out;
    };
    for (i, (cell, width)) in padded.iter().zip(widths).enumerate() {
        out.push_str(&paint(cell, row.colours[i], style));
        out.push_str(&" ".repeat(width.saturating_sub(chars(cell))));
        out.push_str(SEP);
        used += width + SEP.len();
    }
    let last = match style.width {
        Some(width) => cut(last, width.saturating_sub(used)),
        None => last.clone(),
    };
    out.push_str(&paint(&last, row.colours[padded.len()], style));
    out.trim_end().to_string()
}

/// `text` in at most `room` characters, `…` marking a cut.
fn cut(text: &str, room: usize) -> String {
    if chars(text) <= room {
        return text.to_string();
    }
    if room == 0 {
        return String::new();
    }
    let kept: String = text.chars().take(room - 1).collect();
    format!("{kept}…")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `: 1 FAILED, 2 RUNNING` (absent statuses named `none_word`), or nothing.
fn by_status(counts: &BTreeMap<String, usize>, none_word: &str) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(status, n)| {
            let status = if status == NO_STATUS {
                none_word
            } else {
                status
            };
            format!("{n} {status}")
        })
        .collect();
    format!(" ({})", parts.join(", "))
}

/// `Total: 3 blocks (1 FAILED, 2 RUNNING), 1 owner alive; 4 deployments (…), workloads
/// (…), 1 of no block`.
fn totals(s: &Snapshot, filtered: bool) -> String {
    let t = &s.totals;
    let mut line = format!(
        "{}: {}{}, {} alive; {}{}",
        if filtered { "Shown" } else { "Total" },
        plural(t.blocks, "block", "blocks"),
        by_status(&t.blocks_by_status, "no state"),
        plural(t.owners_alive, "owner", "owners"),
        plural(t.deployments, "deployment", "deployments"),
        by_status(&t.deployments_by_status, "not reported"),
    );
    if !t.workloads_by_phase.is_empty() {
        line.push_str(&format!(
            ", workloads{}",
            by_status(&t.workloads_by_phase, "none")
        ));
    }
    if t.orphans > 0 {
        line.push_str(&format!(", {} of no block", t.orphans));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdp_config::overview::Overview;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn snapshot() -> Snapshot {
        Overview::from_pairs(
            5,
            [
                (
                    "/pb/pb-1",
                    r#"{"workflow":{"type":"batch","id":"x","version":"1"}}"#,
                ),
                (
                    "/pb/pb-1/state",
                    r#"{"status":"FAILED","since":"2026-12-01T11:55:00Z","reason":"the reason\nis long"}"#,
                ),
                (
                    "/deploy/pb-1-workflow",
                    r#"{"type":"helm","args":{"chart":"workflow"}}"#,
                ),
                ("/deploy/lone", r#"{"type":"process-direct"}"#),
            ],
        )
        .snapshot()
    }

    #[test]
    fn rows_align_and_the_last_column_is_cut_to_the_width() {
        let style = Style {
            colour: false,
            width: Some(45),
        };
        let text = render(&snapshot(), now(), style, false);
        let expected = "\
ID    WORKFLOW   STATUS  AGE  OWNER  REASON
└─ DEPLOYMENT     CHART             RELEASE  WORKLOAD
pb-1  batch:x:1  FAILED  5m   none   the rea…
└─ pb-1-workflow  workflow          -        -
(no block)
└─ lone           (process-direct)  -        -
Total: 1 block (1 FAILED), 0 owners alive; 2 deployments (2 not reported), 1 of no block
";
        assert_eq!(text, expected);
    }

    #[test]
    fn colours_wrap_statuses_only_when_asked() {
        let style = Style {
            colour: true,
            width: None,
        };
        let text = render(&snapshot(), now(), style, false);
        assert!(text.contains("\x1b[31mFAILED\x1b[0m"), "{text}");
        assert!(text.contains("the reason is long"), "{text}");
        let plain = render(
            &snapshot(),
            now(),
            Style {
                colour: false,
                width: None,
            },
            false,
        );
        assert!(!plain.contains('\x1b'));
    }

    #[test]
    fn an_empty_system_says_so() {
        let style = Style {
            colour: false,
            width: None,
        };
        assert_eq!(
            render(&Snapshot::default(), now(), style, false),
            "No processing blocks or deployments.\nTotal: 0 blocks, 0 owners alive; 0 deployments\n"
        );
    }

    #[test]
    fn cutting_marks_the_cut() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abc", 0), "");
    }
}
