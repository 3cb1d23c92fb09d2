//! JSON written exactly like Python's
//! `json.dumps(obj, indent=2, separators=(',', ': '), sort_keys=True, ensure_ascii=False)`.
//!
//! Keys are sorted here explicitly rather than relying on `serde_json::Map` ordering, so
//! the output does not change if some dependency enables serde_json's `preserve_order`.

use serde_json::Value;

/// Format a value the way the Python tools write it.
pub fn to_python_string(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_value(&mut out, value, 0);
    out
}

/// Serialize any serializable value, then format it like the Python tools.
///
/// # Errors
/// Values serde_json cannot represent (e.g. maps with non-string keys).
pub fn to_python_string_of<T: serde::Serialize>(value: &T) -> serde_json::Result<String> {
    Ok(to_python_string(&serde_json::to_value(value)?))
}

fn indent(out: &mut String, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_value(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, level + 1);
                write_value(out, item, level + 1);
            }
            indent(out, level);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut entries: Vec<_> = map.iter().collect();
            // Python sorts str keys by code point; Rust's str ordering is by UTF-8 bytes,
            // which orders code points identically.
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, level + 1);
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item, level + 1);
            }
            indent(out, level);
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        out.push_str(&python_float_repr(f));
    } else {
        out.push_str(&n.to_string());
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, in positional notation
/// when the decimal exponent is in `-4..16`, otherwise as `d.ddde+XX`.
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // `{:e}` gives the shortest round-trip digit count ("1.2345e-7", "1e16"). When two
    // candidates of that length are equally close (an exact tie), Python picks the even
    // one; re-formatting at that precision rounds the exact binary value half-to-even.
    let shortest = format!("{f:e}");
    let count = shortest
        .split('e')
        .next()
        .map_or(1, |m| m.chars().filter(char::is_ascii_digit).count());
    let sci = format!("{:.*e}", count.saturating_sub(1), f);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Each expected string is what CPython 3 prints for
    // json.dumps(obj, indent=2, separators=(',', ': '), sort_keys=True, ensure_ascii=False).

    #[test]
    fn seed_deployment_is_byte_identical() {
        let v: Value = serde_json::from_str(
            r#"{"type":"helm","deploy_id":"realtime-20191121-0000-dask","args":{"values":{"worker.replicas":2,"scheduler.serviceType":"ClusterIP","jupyter.enabled":"false"},"chart":"stable/dask"}}"#,
        )
        .unwrap();
        let expected = "{\n  \"args\": {\n    \"chart\": \"stable/dask\",\n    \"values\": {\n      \"jupyter.enabled\": \"false\",\n      \"scheduler.serviceType\": \"ClusterIP\",\n      \"worker.replicas\": 2\n    }\n  },\n  \"deploy_id\": \"realtime-20191121-0000-dask\",\n  \"type\": \"helm\"\n}";
        assert_eq!(to_python_string(&v), expected);
    }

    #[test]
    fn empty_containers_null_and_booleans() {
        let v = json!({"a": {}, "b": [], "c": null, "d": true, "e": false});
        assert_eq!(
            to_python_string(&v),
            "{\n  \"a\": {},\n  \"b\": [],\n  \"c\": null,\n  \"d\": true,\n  \"e\": false\n}"
        );
        assert_eq!(to_python_string(&json!({})), "{}");
    }

    #[test]
    fn nested_lists_indent_every_element() {
        let v = json!({"l": [1, [2, 3], {"k": "v"}]});
        assert_eq!(
            to_python_string(&v),
            "{\n  \"l\": [\n    1,\n    [\n      2,\n      3\n    ],\n    {\n      \"k\": \"v\"\n    }\n  ]\n}"
        );
    }

    #[test]
    fn integers_and_floats_print_like_python() {
        let v = json!({"i": -42, "big": 18446744073709551615u64, "f": 1.0, "g": 0.1, "h": 1e16,
                        "j": 1.5e-7, "k": 123456.789, "m": 0.0001, "n": 1e15, "o": -2.5});
        assert_eq!(
            to_python_string(&v),
            "{\n  \"big\": 18446744073709551615,\n  \"f\": 1.0,\n  \"g\": 0.1,\n  \"h\": 1e+16,\n  \"i\": -42,\n  \"j\": 1.5e-07,\n  \"k\": 123456.789,\n  \"m\": 0.0001,\n  \"n\": 1000000000000000.0,\n  \"o\": -2.5\n}"
        );
        assert_eq!(python_float_repr(1e-5), "1e-05");
        assert_eq!(python_float_repr(1.23e100), "1.23e+100");
        assert_eq!(python_float_repr(-0.0), "-0.0");
    }

    #[test]
    fn non_ascii_is_written_as_utf8_and_controls_are_escaped() {
        let v = json!({"name": "Ångström ☃ 𝄞", "ctl": "a\"b\\c\nd\te\u{1}\u{7f}"});
        assert_eq!(
            to_python_string(&v),
            "{\n  \"ctl\": \"a\\\"b\\\\c\\nd\\te\\u0001\u{7f}\",\n  \"name\": \"Ångström ☃ 𝄞\"\n}"
        );
    }

    #[test]
    fn keys_sort_by_code_point() {
        let v = json!({"b": 1, "B": 2, "é": 3, "a": 4, "_": 5});
        assert_eq!(
            to_python_string(&v),
            "{\n  \"B\": 2,\n  \"_\": 5,\n  \"a\": 4,\n  \"b\": 1,\n  \"é\": 3\n}"
        );
    }

    #[test]
    fn readers_accept_any_formatting() {
        let compact: Value = serde_json::from_str(r#"{"a":[1,2],"b":{"c":null}}"#).unwrap();
        let spaced: Value =
            serde_json::from_str("{ \"b\" : { \"c\" : null } ,\n\t\"a\" : [ 1 , 2 ] }").unwrap();
        assert_eq!(to_python_string(&compact), to_python_string(&spaced));
    }
}
