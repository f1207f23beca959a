//! `kiln inspect FILE.gguf`: what a GGUF holds — architecture, metadata, tensors, totals per
//! type and bits per weight — as a table or, with `--json`, as one JSON document.

use crate::cli::human_bytes;
use kiln::gguf::{Array, Gguf, Value};
use kiln::quant::GgmlType;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The GGUF file.
    #[arg(required_unless_present = "devices")]
    pub file: Option<PathBuf>,
    /// List the GPU adapters (index for `--gpu`, limits, features) instead.
    #[arg(long)]
    pub devices: bool,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Arrays longer than this are shown as their first elements and a count.
    #[arg(long, default_value_t = 8)]
    pub max_array: usize,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    if args.devices {
        return devices(args.json);
    }
    let Some(path) = &args.file else {
        anyhow::bail!("give a GGUF file, or --devices");
    };
    let file = Gguf::open(path)?;
    let report = Report::of(&file, args.max_array);
    let text = if args.json {
        serde_json::to_string_pretty(&report.to_json())? + "\n"
    } else {
        report.to_text()
    };
    crate::cli::print_stdout(&text)
}

fn devices(json: bool) -> anyhow::Result<()> {
    let adapters = kiln::backend::wgpu::list_adapters();
    let text = if json {
        let list: Vec<Json> = adapters
            .iter()
            .map(|a| {
                json!({
                    "index": a.index, "name": a.name, "type": a.device_type, "driver": a.driver,
                    "driver_info": a.driver_info, "max_buffer_size": a.max_buffer_size,
                    "max_storage_buffer_binding_size": a.max_storage_buffer_binding_size,
                    "max_compute_workgroup_storage_size": a.max_compute_workgroup_storage_size,
                    "max_compute_invocations_per_workgroup": a.max_compute_invocations_per_workgroup,
                    "subgroup_size": [a.min_subgroup_size, a.max_subgroup_size],
                    "shader_f16": a.shader_f16, "subgroups": a.subgroups,
                    "timestamp_query": a.timestamp_query, "shader_int64": a.shader_int64,
                })
            })
            .collect();
        serde_json::to_string_pretty(&list)? + "\n"
    } else if adapters.is_empty() {
        "no Vulkan adapter found (is a Vulkan driver and libvulkan.so.1 installed?)\n".to_string()
    } else {
        adapters.iter().map(|a| format!("{a}\n")).collect()
    };
    crate::cli::print_stdout(&text)
}

struct TypeTotal {
    tensors: usize,
    elements: u64,
    bytes: u64,
}

/// Everything `inspect` shows, gathered once so the text and JSON forms cannot drift apart.
struct Report {
    path: String,
    file_bytes: u64,
    version: u32,
    alignment: u64,
    architecture: Option<String>,
    metadata: Vec<(String, String, Json)>,
    tensors: Vec<(String, GgmlType, Vec<u64>, u64)>,
    per_type: BTreeMap<GgmlType, TypeTotal>,
}

impl Report {
    fn of(file: &Gguf, max_array: usize) -> Report {
        let metadata = file
            .metadata()
            .map(|(k, v)| (k.to_string(), type_name(v), value_json(v, max_array)))
            .collect();
        let mut per_type: BTreeMap<GgmlType, TypeTotal> = BTreeMap::new();
        let tensors = file
            .tensors()
            .iter()
            .map(|t| {
                let e = per_type.entry(t.ty()).or_insert(TypeTotal {
                    tensors: 0,
                    elements: 0,
                    bytes: 0,
                });
                e.tensors += 1;
                e.elements += t.n_elements();
                e.bytes += t.n_bytes();
                (
                    t.name().to_string(),
                    t.ty(),
                    t.shape().to_vec(),
                    t.n_bytes(),
                )
            })
            .collect();
        Report {
            path: file.path().to_string(),
            file_bytes: file.as_bytes().len() as u64,
            version: file.version(),
            alignment: file.alignment(),
            architecture: file.architecture().map(str::to_string),
            metadata,
            tensors,
            per_type,
        }
    }

    fn total_elements(&self) -> u64 {
        self.per_type.values().map(|t| t.elements).sum()
    }

    fn total_tensor_bytes(&self) -> u64 {
        self.per_type.values().map(|t| t.bytes).sum()
    }

    fn bits_per_weight(&self) -> f64 {
        let n = self.total_elements();
        if n == 0 {
            0.0
        } else {
            self.total_tensor_bytes() as f64 * 8.0 / n as f64
        }
    }

    fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "file          {} ({})",
            self.path,
            human_bytes(self.file_bytes)
        );
        let _ = writeln!(
            s,
            "architecture  {}",
            self.architecture.as_deref().unwrap_or("(none)")
        );
        let _ = writeln!(
            s,
            "format        GGUF v{}, alignment {}, {} metadata keys, {} tensors",
            self.version,
            self.alignment,
            self.metadata.len(),
            self.tensors.len()
        );
        let key_w = self
            .metadata
            .iter()
            .map(|m| m.0.len())
            .max()
            .unwrap_or(3)
            .max(3);
        let ty_w = self
            .metadata
            .iter()
            .map(|m| m.1.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(s, "\nmetadata\n  {:key_w$}  {:ty_w$}  value", "key", "type");
        for (k, t, v) in &self.metadata {
            let _ = writeln!(s, "  {k:key_w$}  {t:ty_w$}  {}", text_of(v));
        }
        if !self.tensors.is_empty() {
            let name_w = self
                .tensors
                .iter()
                .map(|t| t.0.len())
                .max()
                .unwrap_or(4)
                .max(4);
            let _ = writeln!(
                s,
                "\ntensors\n  {:name_w$}  {:7}  {:24}  {:>12}",
                "name", "type", "shape", "bytes"
            );
            for (name, ty, shape, bytes) in &self.tensors {
                let shape = format!("{shape:?}");
                let _ = writeln!(
                    s,
                    "  {name:name_w$}  {:7}  {shape:24}  {bytes:>12}",
                    ty.name()
                );
            }
        }
        let _ = writeln!(
            s,
            "\ntotals per type\n  {:7}  {:>7}  {:>16}  {:>12}  {:>6}",
            "type", "tensors", "elements", "size", "bpw"
        );
        for (ty, t) in &self.per_type {
            let bpw = if t.elements == 0 {
                0.0
            } else {
                t.bytes as f64 * 8.0 / t.elements as f64
            };
            let _ = writeln!(
                s,
                "  {:7}  {:>7}  {:>16}  {:>12}  {bpw:>6.3}",
                ty.name(),
                t.tensors,
                t.elements,
                human_bytes(t.bytes)
            );
        }
        let _ = writeln!(
            s,
            "  {:7}  {:>7}  {:>16}  {:>12}  {:>6.3}",
            "total",
            self.tensors.len(),
            self.total_elements(),
            human_bytes(self.total_tensor_bytes()),
            self.bits_per_weight()
        );
        s
    }

    fn to_json(&self) -> Json {
        let metadata: serde_json::Map<String, Json> = self
            .metadata
            .iter()
            .map(|(k, t, v)| (k.clone(), json!({ "type": t, "value": v })))
            .collect();
        let tensors: Vec<Json> = self
            .tensors
            .iter()
            .map(|(name, ty, shape, bytes)| json!({ "name": name, "type": ty.name(), "shape": shape, "bytes": bytes }))
            .collect();
        let per_type: serde_json::Map<String, Json> = self
            .per_type
            .iter()
            .map(|(ty, t)| {
                (
                    ty.name().to_string(),
                    json!({ "tensors": t.tensors, "elements": t.elements, "bytes": t.bytes }),
                )
            })
            .collect();
        json!({
            "file": self.path,
            "file_bytes": self.file_bytes,
            "version": self.version,
            "alignment": self.alignment,
            "architecture": self.architecture,
            "metadata": metadata,
            "tensors": tensors,
            "totals_per_type": per_type,
            "total": {
                "tensors": self.tensors.len(),
                "elements": self.total_elements(),
                "bytes": self.total_tensor_bytes(),
                "bits_per_weight": self.bits_per_weight(),
            },
        })
    }
}

/// A metadata value on one table line: strings escaped and cut, long arrays as their head and a count.
fn text_of(v: &Json) -> String {
    const MAX_STRING: usize = 160;
    match v {
        Json::String(text) => {
            let escaped = Json::String(text.clone()).to_string();
            if escaped.chars().count() <= MAX_STRING {
                escaped
            } else {
                let head: String = escaped.chars().take(MAX_STRING).collect();
                format!("{head}… ({} bytes)", text.len())
            }
        }
        Json::Object(o) if o.contains_key("omitted") => {
            let first = o.get("first").map_or(String::new(), |f| f.to_string());
            let more = o.get("omitted").map_or(String::new(), |n| n.to_string());
            format!("{}, … (+{more} more)]", first.trim_end_matches(']'))
        }
        other => other.to_string(),
    }
}

/// An f32 as JSON through its shortest decimal form, so 1e-6f32 shows as 1e-6 rather than
/// the f64 widening 9.999999974752427e-7.
fn f32_json(x: f32) -> Json {
    x.to_string()
        .parse::<f64>()
        .map_or(Json::Null, |v| json!(v))
}

/// The GGUF value type as written in a table: `u32`, `string`, `[string; 163840]`, ...
fn type_name(v: &Value) -> String {
    match v {
        Value::Array(a) => array_type_name(a),
        other => other.value_type().to_string(),
    }
}

fn array_type_name(a: &Array) -> String {
    format!("[{}; {}]", a.elem_type(), a.len())
}

fn value_json(v: &Value, max_array: usize) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F32(x) => f32_json(*x),
        Value::F64(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::Array(a) => array_json(a, max_array),
    }
}

/// An array as JSON; a long one becomes its first `max_array` elements plus how many were left
/// out, since a vocab array of 163,840 strings would drown the report.
fn array_json(a: &Array, max_array: usize) -> Json {
    let shown: Vec<Json> = (0..a.len().min(max_array))
        .filter_map(|i| a.get(i))
        .map(|v| value_json(&v, max_array))
        .collect();
    if a.len() <= max_array {
        Json::Array(shown)
    } else {
        json!({ "len": a.len(), "first": shown, "omitted": a.len() - max_array })
    }
}
