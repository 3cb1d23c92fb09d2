//! A deployment's `values` → the values document helm gets (in a file, never on the
//! command line).
//!
//! Each key of `args.values` means what `helm --set <key>=<value>` means:
//!
//! - The key is a path: `.` separates map keys, `name[3]` indexes a list (missing
//!   elements become null, at most index 65536), `\` makes the next character literal
//!   (`podAnnotations.prometheus\.io/scrape`). Empty segments are an error.
//! - A string value is typed as helm types `--set` values (strvals `typedVal`):
//!   `true`/`false` in any case → boolean, `null` in any case → null, `0` and integers
//!   not starting with `0` that fit in 64 bits → integer (`"-5"`, `"+5"`); everything else
//!   stays a string (`"007"`, `"1.5"`, `"0x10"`, `"yes"`, `""`). Checked against
//!   `helm template --set` of helm v4.1.4.
//! - Any other JSON value (number, boolean, null, list, object) is used as it is, like
//!   `--set-json`: nested objects pass through untyped.
//!
//! Keys are applied in sorted (byte) order into one document, as helm applies several
//! `--set` flags in sequence. So a shorter key always comes before the keys below it:
//! `a = {"x": 1}` then `a.b = 2` gives `a: {x: 1, b: 2}`; a later key at the very same
//! path replaces the earlier value. A key that must descend through a value that is not
//! a map (`a = 1` with `a.b = 2`) is an error naming both, where helm would also fail.

use serde_json::{Map, Value};

/// The highest list index a key may use (helm's limit).
pub(crate) const MAX_INDEX: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `a.b[1].c` → [Key a, Key b, Index 1, Key c].
fn parse_path(key: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut current = String::new();
    let mut have_key = false;
    let mut chars = key.chars().peekable();
    // After `]` only `.`, `[` or the end may follow.
    let mut after_index = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if after_index {
                    return Err(format!("value key {key:?}: expected '.' or '[' after ']'"));
                }
                let next = chars
                    .next()
                    .ok_or_else(|| format!("value key {key:?} ends with a lone '\\'"))?;
                current.push(next);
                have_key = true;
            }
            '.' => {
                if !after_index {
                    if !have_key {
                        return Err(format!("value key {key:?} has an empty segment"));
                    }
                    steps.push(Step::Key(std::mem::take(&mut current)));
                }
                have_key = false;
                after_index = false;
                if chars.peek().is_none() {
                    return Err(format!("value key {key:?} has an empty segment"));
                }
            }
            '[' => {
                if !after_index {
                    if !have_key {
                        return Err(format!(
                            "value key {key:?}: a list index needs a name before '['"
                        ));
                    }
                    steps.push(Step::Key(std::mem::take(&mut current)));
                    have_key = false;
                }
                let mut digits = String::new();
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some(d) => digits.push(d),
                        None => return Err(format!("value key {key:?} has an unclosed '['")),
                    }
                }
                let index: usize = digits.parse().map_err(|_| {
                    format!(
                        "value key {key:?}: list index {digits:?} is not a non-negative integer"
                    )
                })?;
                if index > MAX_INDEX {
                    return Err(format!(
                        "value key {key:?}: list index {index} is greater than the maximum supported index {MAX_INDEX}"
                    ));
                }
                steps.push(Step::Index(index));
                after_index = true;
            }
            other => {
                if after_index {
                    return Err(format!("value key {key:?}: expected '.' or '[' after ']'"));
                }
                current.push(other);
                have_key = true;
            }
        }
    }
    if have_key {
        steps.push(Step::Key(current));
    } else if !after_index {
        return Err(format!("value key {key:?} has an empty segment"));
    }
    Ok(steps)
}

/// Go's `strings.EqualFold` against an ASCII word, including the two non-ASCII letters
/// that fold to ASCII ones (`ſ` → s, Kelvin sign → k), as helm compares.
fn equal_fold(s: &str, word: &str) -> bool {
    let mut a = s.chars();
    let mut b = word.chars();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) => {
                let x = match x {
                    'ſ' => 's',
                    '\u{212A}' => 'k',
                    other => other.to_ascii_lowercase(),
                };
                if x != y.to_ascii_lowercase() {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// A string as `helm --set` types it.
pub(crate) fn typed(s: &str) -> Value {
    if equal_fold(s, "true") {
        return Value::Bool(true);
    }
    if equal_fold(s, "false") {
        return Value::Bool(false);
    }
    if equal_fold(s, "null") {
        return Value::Null;
    }
    if s == "0" {
        return Value::from(0);
    }
    if !s.is_empty()
        && !s.starts_with('0')
        && let Ok(i) = s.parse::<i64>()
    {
        return Value::from(i);
    }
    Value::String(s.to_string())
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn set_path(
    root: &mut Map<String, Value>,
    key: &str,
    steps: &[Step],
    value: Value,
) -> Result<(), String> {
    let conflict = |found: &Value, want: &str| {
        format!(
            "value key {key:?} needs {want} where an earlier key already set {}",
            describe(found)
        )
    };
    let Some((Step::Key(first), rest)) = steps.split_first() else {
        return Err(format!("value key {key:?} must start with a name"));
    };
    let mut slot: &mut Value = root.entry(first.clone()).or_insert(Value::Null);
    for step in rest {
        match step {
            Step::Key(k) => {
                if slot.is_null() {
                    *slot = Value::Object(Map::new());
                }
                let Value::Object(map) = slot else {
                    return Err(conflict(slot, "a map"));
                };
                slot = map.entry(k.clone()).or_insert(Value::Null);
            }
            Step::Index(n) => {
                if slot.is_null() {
                    *slot = Value::Array(Vec::new());
                }
                let Value::Array(list) = slot else {
                    return Err(conflict(slot, "a list"));
                };
                if list.len() <= *n {
                    list.resize(*n + 1, Value::Null);
                }
                slot = &mut list[*n];
            }
        }
    }
    *slot = value;
    Ok(())
}

/// Expand a deployment's `values` into the document helm gets.
///
/// # Errors
/// A key that is not a valid path or conflicts with an earlier one, named in words.
pub(crate) fn expand(values: &Map<String, Value>) -> Result<Value, String> {
    let mut keys: Vec<&String> = values.keys().collect();
    keys.sort_unstable();
    let mut root = Map::new();
    for key in keys {
        let steps = parse_path(key)?;
        let value = match &values[key.as_str()] {
            Value::String(s) => typed(s),
            other => other.clone(),
        };
        set_path(&mut root, key, &steps, value)?;
    }
    Ok(Value::Object(root))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn dotted_values_expand_like_helm_set() {
        let seed = obj(
            json!({"jupyter.enabled": "false", "scheduler.serviceType": "ClusterIP", "worker.replicas": 2}),
        );
        assert_eq!(
            expand(&seed).unwrap(),
            json!({"jupyter": {"enabled": false}, "scheduler": {"serviceType": "ClusterIP"}, "worker": {"replicas": 2}})
        );
    }

    #[test]
    fn string_scalars_are_typed_exactly_as_helm_v4_types_them() {
        // Output of `helm template --set a=true,b=TRUE,...` with helm v4.1.4.
        let cases = [
            ("true", json!(true)),
            ("TRUE", json!(true)),
            ("False", json!(false)),
            ("falſe", json!(false)),
            ("null", json!(null)),
            ("NULL", json!(null)),
            ("007", json!("007")),
            ("0", json!(0)),
            ("-5", json!(-5)),
            ("+5", json!(5)),
            ("1.5", json!("1.5")),
            ("99999999999999999999", json!("99999999999999999999")),
            ("-0", json!(0)),
            ("0x10", json!("0x10")),
            ("1e3", json!("1e3")),
            ("", json!("")),
            ("yes", json!("yes")),
            (" 5", json!(" 5")),
            ("00", json!("00")),
            ("-007", json!(-7)),
            ("ＴＲＵＥ", json!("ＴＲＵＥ")),
        ];
        for (input, want) in cases {
            assert_eq!(typed(input), want, "{input:?}");
        }
    }

    #[test]
    fn non_string_values_and_nested_objects_pass_as_they_are() {
        let v =
            obj(json!({"env": {"A": "2379", "B": true}, "list": ["1", 2], "n": null, "f": 1.5}));
        assert_eq!(
            expand(&v).unwrap(),
            json!({"env": {"A": "2379", "B": true}, "list": ["1", 2], "n": null, "f": 1.5})
        );
    }

    #[test]
    fn objects_and_dotted_keys_below_them_merge_in_key_order() {
        let v = obj(json!({"env": {"A": "x"}, "env.B": "2", "a.b.c": "1", "a.b.d": "s"}));
        assert_eq!(
            expand(&v).unwrap(),
            json!({"env": {"A": "x", "B": 2}, "a": {"b": {"c": 1, "d": "s"}}})
        );
    }

    #[test]
    fn list_indexes_and_escaped_dots_follow_helm() {
        // helm template --set 'a.b=1' --set 'a.c[1]=x' --set 'a\.d=2' → {"a":{"b":1,"c":[null,"x"]},"a.d":2}
        let v = obj(json!({"a.b": "1", "a.c[1]": "x", "a\\.d": "2"}));
        assert_eq!(
            expand(&v).unwrap(),
            json!({"a": {"b": 1, "c": [null, "x"]}, "a.d": 2})
        );
        let v = obj(json!({"a": [1, 2], "a[0]": "5", "m[0][1].k": "v"}));
        assert_eq!(
            expand(&v).unwrap(),
            json!({"a": [5, 2], "m": [[null, {"k": "v"}]]})
        );
    }

    #[test]
    fn keys_that_cannot_be_applied_are_errors_in_words() {
        let cases = [
            (
                json!({"a": 1, "a.b": 2}),
                "needs a map where an earlier key already set a number",
            ),
            (
                json!({"a": [1], "a.b": 2}),
                "needs a map where an earlier key already set a list",
            ),
            (json!({"a..b": 1}), "empty segment"),
            (json!({".a": 1}), "empty segment"),
            (json!({"a.": 1}), "empty segment"),
            (json!({"": 1}), "empty segment"),
            (json!({"a[x]": 1}), "not a non-negative integer"),
            (json!({"a[-1]": 1}), "not a non-negative integer"),
            (json!({"a[65537]": 1}), "greater than the maximum"),
            (json!({"a[1": 1}), "unclosed"),
            (json!({"[1]": 1}), "needs a name"),
            (json!({"a[1]b": 1}), "expected '.' or '['"),
            (json!({"a\\": 1}), "lone"),
        ];
        for (v, want) in cases {
            let err = expand(&obj(v.clone())).unwrap_err();
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn hostile_keys_and_values_are_just_data() {
        let v = obj(json!({"--post-renderer": "/bin/sh", "x": "a,b=c[0]\nd", "y=z": "1"}));
        assert_eq!(
            expand(&v).unwrap(),
            json!({"--post-renderer": "/bin/sh", "x": "a,b=c[0]\nd", "y=z": 1})
        );
    }
}
