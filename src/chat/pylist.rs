//! Mutable lists inside `namespace(...)`. Kimi's templates queue tool-call ids with
//! `ns.ids.append(x)` and `ns.ids.pop(0)`; minijinja's lists are immutable, so a namespace's
//! list values become this object, which supports the two methods in place.
//!
//! HF's `ImmutableSandboxedEnvironment` refuses both calls (SecurityError), so under
//! transformers these templates cannot render a conversation with tool calls at all; here
//! they render as under a plain jinja2 sandbox, which is what serving stacks use.

use minijinja::value::{Enumerator, Object, ObjectRepr, Value, ValueOrKwargs, from_args};
use minijinja::{Error, ErrorKind, State};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub(crate) struct PyList(Mutex<Vec<Value>>);

impl PyList {
    fn items(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Object for PyList {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let items = self.items();
        let i = key.as_i64()?;
        let i = if i < 0 { items.len() as i64 + i } else { i };
        items.get(usize::try_from(i).ok()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.items().clone())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.items().len())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "append" => {
                let (v,): (Value,) = from_args(args)?;
                self.items().push(v);
                Ok(Value::from(()))
            }
            "pop" => {
                let (i,): (Option<i64>,) = from_args(args)?;
                let mut items = self.items();
                let len = items.len() as i64;
                let i = i.unwrap_or(-1);
                let at = if i < 0 { len + i } else { i };
                if !(0..len).contains(&at) {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "pop index out of range",
                    ));
                }
                Ok(items.remove(at as usize))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// `namespace(...)` as Jinja's, except that list values are mutable [`PyList`]s.
pub(crate) fn namespace(defaults: Option<ValueOrKwargs>) -> Result<Value, Error> {
    let Some(defaults) = defaults else {
        return minijinja::functions::namespace(None);
    };
    let map = defaults.into_value();
    let mut pairs = Vec::new();
    for key in map.try_iter()? {
        let v = map.get_item(&key)?;
        let v = if v.kind() == minijinja::value::ValueKind::Seq {
            Value::from_object(PyList(Mutex::new(v.try_iter()?.collect())))
        } else {
            v
        };
        pairs.push((key, v));
    }
    let converted = Value::from_pairs(pairs);
    minijinja::functions::namespace(Some(ValueOrKwargs::from(converted)))
}
