//! A block's state as the controller last saw it, and who may change it.

use sdp_config::entity::{PbStatus, ProcessingBlockState};

/// Field that marks a FAILED state as written by this controller, so that it may
/// replace it when the block can start after all. FAILED states written by anyone else
/// are never touched.
pub(crate) const FAILED_BY: &str = "failed_by";
/// Value of [`FAILED_BY`].
pub(crate) const FAILED_BY_US: &str = "processing-controller";

/// Who may change a block's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StateClass {
    /// WAITING: the controller moves it on.
    Waiting,
    /// FAILED by this controller: replaced when the block can start after all.
    OwnFailed,
    /// Anything else (STARTING, RUNNING, … or written by a workflow): never touched.
    Other,
}

/// A block's state as last seen.
#[derive(Debug)]
pub(crate) struct SeenState {
    /// `mod_revision` of `/pb/<id>/state`.
    pub(crate) mod_rev: i64,
    /// The stored text (for read-modify-write).
    pub(crate) raw: String,
    /// The `status` field, if the value is a valid state.
    pub(crate) status: Option<String>,
    /// Who may change it.
    pub(crate) class: StateClass,
    /// Why the text is not a block state (not JSON, not an object, a field of the wrong
    /// type): nobody can read-modify-write it, so the controller leaves it alone.
    pub(crate) unreadable: Option<String>,
}

impl SeenState {
    /// Classify a stored state.
    pub(crate) fn new(raw: String, mod_rev: i64) -> Self {
        let mut unreadable = None;
        let (status, class) = match ProcessingBlockState::parse(&raw) {
            Ok(st) => {
                let class = match st.known_status() {
                    Some(PbStatus::Waiting) => StateClass::Waiting,
                    Some(PbStatus::Failed)
                        if st.extra.get(FAILED_BY).and_then(|v| v.as_str())
                            == Some(FAILED_BY_US) =>
                    {
                        StateClass::OwnFailed
                    }
                    _ => StateClass::Other,
                };
                (st.status, class)
            }
            Err(e) => {
                unreadable = Some(e.to_string());
                (None, StateClass::Other)
            }
        };
        SeenState {
            mod_rev,
            raw,
            status,
            class,
            unreadable,
        }
    }
}

impl SeenState {
    /// True when the status is one a running workflow writes: neither the controller's
    /// own (STARTING, WAITING) nor final (FINISHED, FAILED, CANCELLED). A 2019 state
    /// without `status` does not count: such workflows hold no owner key.
    pub(crate) fn is_running(&self) -> bool {
        self.class == StateClass::Other
            && self.status.as_deref().is_some_and(|s| {
                !matches!(
                    PbStatus::parse(s),
                    Some(
                        PbStatus::Starting
                            | PbStatus::Waiting
                            | PbStatus::Finished
                            | PbStatus::Failed
                            | PbStatus::Cancelled
                    )
                )
            })
    }

    /// True for a STARTING state: the controller (re)started the block.
    pub(crate) fn is_starting(&self) -> bool {
        self.status.as_deref() == Some(PbStatus::Starting.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_waiting_and_our_own_failures_are_ours_to_change() {
        let class = |raw: &str| SeenState::new(raw.into(), 1).class;
        assert_eq!(class(r#"{"status": "WAITING"}"#), StateClass::Waiting);
        assert_eq!(
            class(r#"{"status": "FAILED", "failed_by": "processing-controller"}"#),
            StateClass::OwnFailed
        );
        assert_eq!(class(r#"{"status": "FAILED"}"#), StateClass::Other);
        assert_eq!(class(r#"{"status": "RUNNING"}"#), StateClass::Other);
        assert_eq!(class("not json"), StateClass::Other);
        assert_eq!(SeenState::new("not json".into(), 1).status, None);
        let unreadable = |raw: &str| SeenState::new(raw.into(), 1).unreadable.is_some();
        for raw in ["not json", "[1]", "\"x\"", "5", r#"{"status": 5}"#] {
            assert!(unreadable(raw), "{raw}");
        }
        for raw in [
            r#"{"state": "executing"}"#,
            r#"{"status": "RUNNING"}"#,
            "{}",
        ] {
            assert!(!unreadable(raw), "{raw}");
        }
    }

    #[test]
    fn running_means_written_by_a_running_workflow() {
        let running = |raw: &str| SeenState::new(raw.into(), 1).is_running();
        assert!(running(r#"{"status": "RUNNING"}"#));
        assert!(running(r#"{"status": "READY"}"#));
        for raw in [
            r#"{"status": "STARTING"}"#,
            r#"{"status": "FINISHED"}"#,
            r#"{"status": "FAILED"}"#,
            r#"{"status": "CANCELLED"}"#,
            r#"{"status": "WAITING"}"#,
            r#"{"state": "executing"}"#,
            "not json",
        ] {
            assert!(!running(raw), "{raw}");
        }
    }
}
