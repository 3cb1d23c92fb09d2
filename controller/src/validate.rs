//! Reading a stored processing block, with reasons a user can act on when it is
//! not a valid one.

use sdp_config::entity::{ProcessingBlock, ValidationError};

use crate::failure::FailureKind;

/// Largest processing block value accepted (and largest deployment written).
pub(crate) const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Longest reason written into a state.
const MAX_REASON_CHARS: usize = 2000;

/// Why a block cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub kind: FailureKind,
    /// The sentence for the user.
    pub reason: String,
}

const EXPECTED: &str = "expected a JSON object like {\"pb_id\": \"<id>\", \"sbi_id\": null, \
\"workflow\": {\"type\": \"realtime\" or \"batch\", \"id\": \"<name>\", \"version\": \"<version>\"}, \
\"parameters\": {}, \"scan_parameters\": {}} as `sdpcfg process` writes it";

/// Parse the value stored at `/pb/<key_id>`.
///
/// # Errors
/// [`Invalid`] with the kind and the reason.
pub(crate) fn check_block(key_id: &str, text: &str) -> Result<ProcessingBlock, Invalid> {
    let path = ProcessingBlock::path(key_id);
    if text.len() > MAX_VALUE_BYTES {
        return Err(Invalid {
            kind: FailureKind::TooLarge,
            reason: format!(
                "the processing block at {path} is {} bytes, more than the {} bytes the processing controller accepts; \
                 pass large inputs by reference (e.g. a file or URL in `parameters`)",
                text.len(),
                MAX_VALUE_BYTES
            ),
        });
    }
    ProcessingBlock::parse(text, Some(key_id)).map_err(|e| {
        let (kind, reason) = match &e {
            ValidationError::NotJson(_) => {
                (FailureKind::InvalidJson, format!("the processing block at {path} is not valid JSON ({e}); {EXPECTED}"))
            }
            ValidationError::BadId { .. } => (
                FailureKind::InvalidId,
                format!("the processing block at {path} has an {e} (letters, digits and '-', at most 64 characters)"),
            ),
            ValidationError::IdMismatch { field, .. } => (
                FailureKind::IdMismatch,
                format!(
                    "the processing block at {path} names another block: {e}; its `{field}` must be {key_id:?}, \
                     or store it at {}",
                    mismatch_path(&e)
                ),
            ),
            _ => (FailureKind::InvalidBlock, format!("the processing block at {path} is invalid: {e}; {EXPECTED}")),
        };
        Invalid { kind, reason: truncate(reason) }
    })
}

fn mismatch_path(e: &ValidationError) -> String {
    match e {
        ValidationError::IdMismatch { in_value, .. } => ProcessingBlock::path(in_value),
        _ => String::new(),
    }
}

/// Cut a reason to a length fit for a state value.
pub(crate) fn truncate(reason: String) -> String {
    if reason.chars().count() <= MAX_REASON_CHARS {
        return reason;
    }
    let mut cut: String = reason.chars().take(MAX_REASON_CHARS).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_bad_block_gets_its_own_kind_and_a_specific_reason() {
        let cases: &[(&str, &str, FailureKind, &str)] = &[
            ("x", "{", FailureKind::InvalidJson, "is not valid JSON"),
            (
                "x",
                "[1]",
                FailureKind::InvalidBlock,
                "must be a JSON object, found a list",
            ),
            (
                "x",
                r#"{"pb_id": "x"}"#,
                FailureKind::InvalidBlock,
                "missing field `workflow`",
            ),
            (
                "x",
                r#"{"pb_id": "y", "workflow": {}}"#,
                FailureKind::IdMismatch,
                "its `pb_id` must be \"x\", or store it at /pb/y",
            ),
            (
                "a_b",
                r#"{"pb_id": "a_b"}"#,
                FailureKind::InvalidId,
                "invalid processing block ID \"a_b\"",
            ),
        ];
        for (id, text, kind, want) in cases {
            let err = check_block(id, text).unwrap_err();
            assert_eq!(err.kind, *kind, "{text}: {}", err.reason);
            assert!(err.reason.contains(want), "{text}: {}", err.reason);
            assert!(err.reason.contains(&format!("/pb/{id}")), "{}", err.reason);
        }
    }

    #[test]
    fn huge_blocks_are_refused_before_parsing() {
        let text = format!(
            r#"{{"pb_id": "x", "parameters": {{"blob": "{}"}}}}"#,
            "a".repeat(MAX_VALUE_BYTES)
        );
        let err = check_block("x", &text).unwrap_err();
        assert_eq!(err.kind, FailureKind::TooLarge);
        assert!(
            err.reason.contains("more than the 1048576 bytes"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn long_reasons_are_cut() {
        assert_eq!(
            truncate("é".repeat(3000)).chars().count(),
            MAX_REASON_CHARS + 1
        );
        assert_eq!(truncate("short".into()), "short");
    }
}
