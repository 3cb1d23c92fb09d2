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
}

impl SeenState {
    /// Classify a stored state.
    pub(crate) fn new(raw: String, mod_rev: i64) -> Self {
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
            Err(_) => (None, StateClass::Other),
        };
        SeenState {
            mod_rev,
            raw,
            status,
            class,
        }
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
    }
}
