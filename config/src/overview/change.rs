//! Change records for a "recent changes" feed: what happened to which block or
//! deployment, in one line, computed by comparing its summary before and after.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use super::summary::{BlockSummary, DeploymentSummary};

/// Longest summary line, in characters.
const MAX_SUMMARY: usize = 300;

/// One change to one block or deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// When the follower applied it (serialised as RFC 3339, milliseconds, UTC).
    #[serde(serialize_with = "rfc3339")]
    pub time: DateTime<Utc>,
    /// The etcd revision of the change.
    pub revision: i64,
    /// Appeared, changed or disappeared.
    pub kind: ChangeKind,
    /// A block or a deployment.
    pub entity: Entity,
    /// Its ID.
    pub id: String,
    /// One line for a person, e.g. `block realtime-20261201-0000: status STARTING → RUNNING`.
    pub summary: String,
}

/// What happened to the entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// It appeared.
    Added,
    /// A shown field changed.
    Changed,
    /// It disappeared.
    Removed,
}

/// Which kind of entity changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Entity {
    /// A processing block (`/pb/<id>` and its state and owner).
    Block,
    /// A deployment (`/deploy/<id>` and its state).
    Deployment,
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Text on one line (runs of whitespace become one space), cut to `max` characters.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

fn or_none(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("none")
}

/// `field a → b` when the field differs.
fn transition(out: &mut Vec<String>, field: &str, old: &Option<String>, new: &Option<String>) {
    if old != new {
        out.push(format!("{field} {} → {}", or_none(old), or_none(new)));
    }
}

/// `field: text` when the text differs and is present.
fn text_change(out: &mut Vec<String>, field: &str, old: &Option<String>, new: &Option<String>) {
    if old != new
        && let Some(new) = new
    {
        out.push(format!("{field}: {new}"));
    }
}

fn finish(kind: ChangeKind, head: String, parts: Vec<String>) -> Option<(ChangeKind, String)> {
    let line = if parts.is_empty() {
        head
    } else {
        format!("{head}: {}", parts.join("; "))
    };
    Some((kind, one_line(&line, MAX_SUMMARY)))
}

/// The change between two versions of a block (`None`: absent), if any shown field
/// differs. Its list of deployments is not compared: those report their own changes.
pub(crate) fn block(
    old: Option<&BlockSummary>,
    new: Option<&BlockSummary>,
) -> Option<(ChangeKind, String)> {
    match (old, new) {
        (None, None) => None,
        (Some(o), None) => finish(
            ChangeKind::Removed,
            format!("block {} removed", o.id),
            vec![],
        ),
        (None, Some(n)) => {
            let mut parts = vec![format!("workflow {}", or_none(&n.workflow))];
            if let Some(s) = &n.status {
                parts.push(format!("status {s}"));
            }
            finish(ChangeKind::Added, format!("block {} added", n.id), parts)
        }
        (Some(o), Some(n)) => {
            let mut parts = Vec::new();
            transition(&mut parts, "workflow", &o.workflow, &n.workflow);
            transition(&mut parts, "status", &o.status, &n.status);
            text_change(&mut parts, "reason", &o.reason, &n.reason);
            match (&o.owner, &n.owner) {
                (None, Some(w)) => parts.push(format!("owner alive ({w})")),
                (Some(_), None) => parts.push("owner gone".into()),
                (Some(a), Some(b)) if a != b => parts.push(format!("owner now {b}")),
                _ => {}
            }
            if parts.is_empty() {
                return None;
            }
            finish(ChangeKind::Changed, format!("block {}", n.id), parts)
        }
    }
}

/// The change between two versions of a deployment, if any shown field differs (the
/// block it belongs to is not compared: it follows from the names).
pub(crate) fn deployment(
    old: Option<&DeploymentSummary>,
    new: Option<&DeploymentSummary>,
) -> Option<(ChangeKind, String)> {
    match (old, new) {
        (None, None) => None,
        (Some(o), None) => finish(
            ChangeKind::Removed,
            format!("deployment {} removed", o.id),
            vec![],
        ),
        (None, Some(n)) => {
            let mut parts = vec![or_none(&n.kind).to_string()];
            if let Some(c) = &n.chart {
                parts.push(format!("chart {c}"));
            }
            if let Some(s) = &n.status {
                parts.push(format!("status {s}"));
            }
            finish(
                ChangeKind::Added,
                format!("deployment {} added", n.id),
                parts,
            )
        }
        (Some(o), Some(n)) => {
            let mut parts = Vec::new();
            transition(&mut parts, "type", &o.kind, &n.kind);
            transition(&mut parts, "chart", &o.chart, &n.chart);
            transition(&mut parts, "status", &o.status, &n.status);
            transition(&mut parts, "workload", &o.workload_phase, &n.workload_phase);
            text_change(&mut parts, "message", &o.message, &n.message);
            text_change(
                &mut parts,
                "workload message",
                &o.workload_message,
                &n.workload_message,
            );
            if parts.is_empty() {
                return None;
            }
            finish(ChangeKind::Changed, format!("deployment {}", n.id), parts)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::overview::summary::OwnerSummary;

    fn b(status: Option<&str>) -> BlockSummary {
        BlockSummary {
            id: "pb1".into(),
            workflow: Some("realtime:testdask:0.1.0".into()),
            status: status.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn block_changes_read_as_one_line() {
        assert_eq!(
            block(None, Some(&b(None))).unwrap(),
            (
                ChangeKind::Added,
                "block pb1 added: workflow realtime:testdask:0.1.0".into()
            )
        );
        let mut failed = b(Some("FAILED"));
        failed.reason = Some("workflow pod p:\n  image cannot be pulled".into());
        assert_eq!(
            block(Some(&b(Some("STARTING"))), Some(&failed)).unwrap(),
            (
                ChangeKind::Changed,
                "block pb1: status STARTING → FAILED; reason: workflow pod p: image cannot be pulled"
                    .into()
            )
        );
        let mut owned = b(Some("RUNNING"));
        owned.owner = Some(OwnerSummary {
            hostname: Some("node1".into()),
            pid: Some(7),
        });
        assert_eq!(
            block(Some(&b(Some("RUNNING"))), Some(&owned)).unwrap().1,
            "block pb1: owner alive (node1:7)"
        );
        assert_eq!(
            block(Some(&owned), Some(&b(Some("RUNNING")))).unwrap().1,
            "block pb1: owner gone"
        );
        let mut linked = b(None);
        linked.deployments = vec!["pb1-workflow".into()];
        assert_eq!(block(Some(&b(None)), Some(&linked)), None);
        assert_eq!(
            block(Some(&b(None)), None).unwrap(),
            (ChangeKind::Removed, "block pb1 removed".into())
        );
    }

    #[test]
    fn deployment_changes_name_release_and_workload() {
        let d = |status: &str, phase: Option<&str>| DeploymentSummary {
            id: "pb1-workflow".into(),
            kind: Some("helm".into()),
            chart: Some("workflow".into()),
            status: Some(status.into()),
            workload_phase: phase.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(
            deployment(None, Some(&d("PENDING", None))).unwrap().1,
            "deployment pb1-workflow added: helm; chart workflow; status PENDING"
        );
        assert_eq!(
            deployment(
                Some(&d("INSTALLING", None)),
                Some(&d("DEPLOYED", Some("RUNNING")))
            )
            .unwrap()
            .1,
            "deployment pb1-workflow: status INSTALLING → DEPLOYED; workload none → RUNNING"
        );
        assert_eq!(
            deployment(Some(&d("DEPLOYED", None)), Some(&d("DEPLOYED", None))),
            None
        );
    }

    #[test]
    fn long_summaries_are_cut() {
        let line = one_line(&"x ".repeat(1000), MAX_SUMMARY);
        assert_eq!(line.chars().count(), MAX_SUMMARY + 1);
    }

    #[test]
    fn times_serialise_as_rfc3339() {
        let c = Change {
            time: DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            revision: 5,
            kind: ChangeKind::Removed,
            entity: Entity::Deployment,
            id: "d".into(),
            summary: "deployment d removed".into(),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["time"], "2026-12-01T10:00:00.000Z");
        assert_eq!(v["kind"], "removed");
        assert_eq!(v["entity"], "deployment");
    }
}
