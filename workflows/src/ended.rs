//! Why a workflow's claim on its block ended.

/// Why a workflow's claim on its block has ended. Both are final.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The block was deleted.
    BlockDeleted,
    /// The owner key is gone or names someone else, or its lease expired.
    OwnershipLost {
        /// What happened, in words.
        reason: String,
    },
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::BlockDeleted => f.write_str("the processing block was deleted"),
            Ended::OwnershipLost { reason } => {
                write!(f, "ownership of the processing block was lost: {reason}")
            }
        }
    }
}
