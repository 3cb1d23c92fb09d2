//! The owner of a processing block (`/pb/<id>/owner`), written by the workflow process
//! that claims it.

use serde_json::{Map, Value, json};

use super::fields::{ValidationError, parse_object};
use crate::json::to_python_string;

/// Who owns a block: the claiming process's command line, host and PID.
#[derive(Clone, Debug, PartialEq)]
pub struct Owner {
    /// The whole value; compared as a whole ("is owner" means equal).
    pub value: Map<String, Value>,
}

impl Owner {
    /// This process as an owner: `{"command": argv, "hostname": …, "pid": …}`.
    pub fn this_process() -> Self {
        let command: Vec<String> = std::env::args().collect();
        let hostname = crate::identity::hostname();
        let mut value = Map::new();
        value.insert("command".into(), json!(command));
        value.insert("hostname".into(), json!(hostname));
        value.insert("pid".into(), json!(std::process::id()));
        Owner { value }
    }

    /// Parse a stored owner.
    ///
    /// # Errors
    /// Not a JSON object.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        Ok(Owner {
            value: parse_object(text)?,
        })
    }

    /// Formatted as the Python tools write it.
    pub fn to_json(&self) -> String {
        to_python_string(&Value::Object(self.value.clone()))
    }
}
