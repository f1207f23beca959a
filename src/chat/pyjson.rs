//! Python's `json.dumps` over template values: HF's `tojson` filter is `json.dumps` (not
//! Jinja's HTML-escaping one), and templates put its output verbatim into prompts, so spacing,
//! float spelling and escapes must be Python's to the byte.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// `json.dumps` options HF's filter exposes.
pub(crate) struct Options {
    pub ensure_ascii: bool,
    pub indent: Option<String>,
    pub item_sep: String,
    pub key_sep: String,
    pub sort_keys: bool,
}

impl Options {
    pub fn from_kwargs(kwargs: &Kwargs) -> Result<Options, Error> {
        let indent: Option<Value> = kwargs.get("indent")?;
        let indent = match indent {
            None => None,
            Some(v) if v.is_none() => None,
            Some(v) => Some(match v.as_str() {
                Some(s) => s.to_string(),
                None => " ".repeat(v.as_usize().unwrap_or(0)),
            }),
        };
        // Python's defaults: ", " and ": ", but "," between items once indenting.
        let (mut item_sep, mut key_sep) = (
            if indent.is_some() { "," } else { ", " }.to_string(),
            ": ".to_string(),
        );
        let separators: Option<Value> = kwargs.get("separators")?;
        if let Some(s) = separators.filter(|s| !s.is_none()) {
            item_sep = s.get_item_by_index(0)?.to_string();
            key_sep = s.get_item_by_index(1)?.to_string();
        }
        let opts = Options {
            ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
            indent,
            item_sep,
            key_sep,
            sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        };
        kwargs.assert_all_used()?;
        Ok(opts)
    }
}

pub(crate) fn dumps(v: &Value, o: &Options) -> Result<String, Error> {
    let mut out = String::new();
    write_value(&mut out, v, o, 0)?;
    Ok(out)
}

fn newline(out: &mut String, o: &Options, depth: usize) {
    if let Some(ind) = &o.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(ind);
        }
    }
}

fn write_value(out: &mut String, v: &Value, o: &Options, depth: usize) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&number(v)),
        ValueKind::String => write_str(out, v.as_str().unwrap_or_default(), o.ensure_ascii),
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if o.sort_keys {
                keys.sort_by_key(key_string);
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, o, depth + 1);
                write_str(out, &key_string(k), o.ensure_ascii);
                out.push_str(&o.key_sep);
                write_value(out, &v.get_item(k)?, o, depth + 1)?;
            }
            newline(out, o, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, o, depth + 1);
                write_value(out, item, o, depth + 1)?;
            }
            newline(out, o, depth);
            out.push(']');
        }
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("Object of type {kind} is not JSON serializable"),
            ));
        }
    }
    Ok(())
}

/// Python turns non-string keys into strings: `1` → "1", `True` → "true", `None` → "null".
fn key_string(k: &Value) -> String {
    match k.kind() {
        ValueKind::String => k.as_str().unwrap_or_default().to_string(),
        ValueKind::None | ValueKind::Undefined => "null".into(),
        ValueKind::Bool => if k.is_true() { "true" } else { "false" }.into(),
        ValueKind::Number => number(k),
        _ => k.to_string(),
    }
}

fn number(v: &Value) -> String {
    if v.is_integer() {
        return v.to_string();
    }
    match f64::try_from(v.clone()) {
        Ok(f) => py_float_json(f),
        Err(_) => v.to_string(),
    }
}

/// A float as `json.dumps` spells it: `repr(float)`, with NaN/Infinity as Python allows.
fn py_float_json(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        py_float_repr(f)
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, positional for exponents in
/// [-4, 16), otherwise `d.ddde±XX`.
pub(crate) fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let body = if exp >= 0 {
            let point = exp as usize + 1;
            let int: String = format!("{digits:0<point$}");
            let (int, frac) = int.split_at(point);
            format!("{int}.{}", if frac.is_empty() { "0" } else { frac })
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
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

fn write_str(out: &mut String, s: &str, ensure_ascii: bool) {
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
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Options {
        Options {
            ensure_ascii: false,
            indent: None,
            item_sep: ", ".into(),
            key_sep: ": ".into(),
            sort_keys: false,
        }
    }

    #[test]
    fn floats_spelled_as_python_repr() {
        for (f, want) in [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (123456789.125, "123456789.125"),
            (1e15, "1000000000000000.0"),
            (2.5e300, "2.5e+300"),
        ] {
            assert_eq!(py_float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn matches_json_dumps_layout() {
        let v = Value::from(minijinja::value::Serde(serde_json::json!({
            "b": [1, 2.0, true, null], "a": "é\"\n\u{1}", "e": {}, "l": []
        })));
        assert_eq!(
            dumps(&v, &plain()).unwrap(),
            r#"{"b": [1, 2.0, true, null], "a": "é\"\n\u0001", "e": {}, "l": []}"#
        );
        let o = Options {
            ensure_ascii: true,
            indent: Some("  ".into()),
            item_sep: ",".into(),
            sort_keys: true,
            ..plain()
        };
        let v = Value::from(minijinja::value::Serde(
            serde_json::json!({"z": "é🙂", "a": [1]}),
        ));
        assert_eq!(
            dumps(&v, &o).unwrap(),
            "{\n  \"a\": [\n    1\n  ],\n  \"z\": \"\\u00e9\\ud83d\\ude42\"\n}"
        );
    }
}
