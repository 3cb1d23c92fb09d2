//! Label and field selectors, as `labelSelector=` and `fieldSelector=` in list and watch
//! requests.

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    /// `key=value` or `key==value`.
    Equals(String, String),
    /// `key!=value`: also true when the label is absent.
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)`: also true when the label is absent.
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    NotExists(String),
}

/// A parsed label selector: every requirement must hold. The empty selector matches
/// everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses the `labelSelector` syntax of the apiserver.
    ///
    /// # Errors
    ///
    /// A message for a `400 BadRequest` when the text is not a selector.
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let bad = |why: &str| format!("unable to parse requirement: {why} in {text:?}");
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let requirement = if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(valid_key(key.trim()).map_err(|e| bad(&e))?)
            } else if let Some((key, value)) = term.split_once("!=") {
                Requirement::NotEquals(valid_key(key.trim()).map_err(|e| bad(&e))?, value_of(value))
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                Requirement::Equals(valid_key(key.trim()).map_err(|e| bad(&e))?, value_of(value))
            } else if let Some((key, set)) = split_set(term, " notin ") {
                Requirement::NotIn(
                    valid_key(key).map_err(|e| bad(&e))?,
                    set.map_err(|e| bad(&e))?,
                )
            } else if let Some((key, set)) = split_set(term, " in ") {
                Requirement::In(
                    valid_key(key).map_err(|e| bad(&e))?,
                    set.map_err(|e| bad(&e))?,
                )
            } else {
                Requirement::Exists(valid_key(term).map_err(|e| bad(&e))?)
            };
            requirements.push(requirement);
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, set) => label(k).is_some_and(|l| set.iter().any(|v| v == l)),
            Requirement::NotIn(k, set) => !label(k).is_some_and(|l| set.iter().any(|v| v == l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
        })
    }
}

/// Splits at the commas that are not inside `( … )`.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

/// `key op (a, b)` split into the key and the values, if `op` is in the term.
#[allow(clippy::type_complexity)]
fn split_set<'a>(term: &'a str, op: &str) -> Option<(&'a str, Result<Vec<String>, String>)> {
    let (key, set) = term.split_once(op)?;
    let set = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .map(|s| s.split(',').map(value_of).collect())
        .ok_or_else(|| format!("expected a parenthesised set after {:?}", op.trim()));
    Some((key.trim(), set))
}

fn value_of(text: &str) -> String {
    text.trim().to_owned()
}

/// A label key: an optional DNS prefix and `/`, then a name of letters, digits, `-`, `_`, `.`.
fn valid_key(key: &str) -> Result<String, String> {
    let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if name.is_empty() || !key.chars().all(|c| allowed(c) || c == '/') {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(key.to_owned())
}

/// A parsed field selector: `path=value`, `path==value` or `path!=value` terms, where the
/// path is any dotted path into the object (`metadata.name`, `status.phase`,
/// `spec.nodeName`). The apiserver allows only some paths per kind; this allows all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl FieldSelector {
    /// Parses the `fieldSelector` syntax.
    ///
    /// # Errors
    ///
    /// A message for a `400 BadRequest` when a term has no operator.
    pub fn parse(text: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (p, true, v)
            } else {
                return Err(format!("invalid field selector term {term:?}: no operator"));
            };
            let path = path.trim().split('.').map(str::to_owned).collect();
            terms.push((path, equal, value.trim().to_owned()));
        }
        Ok(FieldSelector(terms))
    }

    /// Whether the object's fields satisfy every term. An absent field reads as `""`.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let field = path.iter().fold(object, |v, key| &v[key.as_str()]);
            let text = match field {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (text == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p1", "namespace": "ns", "labels": labels}, "status": {"phase": "Running"}})
    }

    fn matches(selector: &str, labels: Value) -> bool {
        LabelSelector::parse(selector)
            .map(|s| s.matches(&pod(labels)))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn equality_and_inequality_select_by_value() {
        let labels = json!({"app": "web", "tier": "front"});
        assert!(matches("app=web", labels.clone()));
        assert!(matches("app==web,tier=front", labels.clone()));
        assert!(!matches("app=web,tier=back", labels.clone()));
        assert!(matches("app!=db", labels.clone()));
        assert!(!matches("app!=web", labels.clone()));
        assert!(matches("other!=x", labels), "absent label is not equal");
    }

    #[test]
    fn set_terms_keep_their_commas_inside_parentheses() {
        let labels = json!({"env": "prod", "app": "web"});
        assert!(matches("env in (dev, prod),app=web", labels.clone()));
        assert!(!matches("env in (dev,test)", labels.clone()));
        assert!(matches("env notin (dev,test)", labels.clone()));
        assert!(!matches("env notin (prod)", labels.clone()));
        assert!(matches("absent notin (x)", labels.clone()));
        assert!(!matches("absent in (x)", labels));
    }

    #[test]
    fn existence_and_absence_look_at_the_key_only() {
        let labels = json!({"sdp.skao.int/pb": "pb-1"});
        assert!(matches("sdp.skao.int/pb", labels.clone()));
        assert!(!matches("!sdp.skao.int/pb", labels.clone()));
        assert!(matches("!other", labels.clone()));
        assert!(matches("", labels));
        assert!(matches("app", json!({"app": ""})));
        assert!(!matches("app", json!(null)));
    }

    #[test]
    fn malformed_label_selectors_are_refused() {
        assert!(LabelSelector::parse("app in dev").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn field_selectors_compare_dotted_paths() {
        let object = pod(json!({}));
        let check = |s: &str| FieldSelector::parse(s).map(|f| f.matches(&object));
        assert_eq!(check("metadata.name=p1"), Ok(true));
        assert_eq!(check("metadata.name==p2"), Ok(false));
        assert_eq!(check("metadata.name!=p2,metadata.namespace=ns"), Ok(true));
        assert_eq!(check("status.phase=Running"), Ok(true));
        assert_eq!(check("spec.nodeName="), Ok(true));
        assert!(check("metadata.name").is_err());
    }
}
