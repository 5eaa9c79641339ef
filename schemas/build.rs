//! Generates the Rust event types and their Avro binary encoding from the checked-in
//! schemas, so each event field is defined once: in its `.avsc` file.
//!
//! For the current (highest) version of every subject in `avro/manifest.json` it writes
//! to `$OUT_DIR/events.rs`:
//! - a struct per record and an enum per Avro enum (serde camelCase names, the `doc`s);
//! - `AvroRecord` impls that write and read the Avro binary datum field by field;
//! - the `Event` enum, its subjects, and the table of every schema file with its id.
//!
//! Older versions are not generated: the codec resolves them to the current reader
//! with apache-avro at run time (rare, and Avro's own resolution rules).
//!
//! The generator supports what the schemas use — null, boolean, int, long, float,
//! double, string, bytes, the `uuid` and `timestamp-micros` logical types, records,
//! enums, arrays and `["null", T]` unions — and stops the build with a message for
//! anything else.

use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Fields whose Rust type is narrower than their Avro type: the codec checks the range.
const UNSIGNED_LONGS: &[(&str, &str)] = &[("EventMetadata", "aggregateVersion")];
/// The record every event starts with.
const METADATA: &str = "EventMetadata";
/// Records that are not events but frame them (a commit holds several events).
const FRAMES: &[&str] = &["Commit", "WriterHeartbeat", "WriterMarker"];
const NAMESPACE: &str = "drone_delivery.events";

#[derive(Clone, Debug, PartialEq)]
enum Ty {
    Null,
    Boolean,
    Int,
    Long,
    UnsignedLong,
    Float,
    Double,
    String,
    Bytes,
    Uuid,
    TimestampMicros,
    Record(String),
    Enum(String),
    Array(Box<Ty>),
    Optional(Box<Ty>),
}

#[derive(Clone, Debug, PartialEq)]
struct Field {
    name: String,
    ty: Ty,
    doc: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Named {
    Record {
        doc: Option<String>,
        fields: Vec<Field>,
    },
    Enum {
        doc: Option<String>,
        symbols: Vec<String>,
    },
}

impl Named {
    /// The definition without its docs: two files may document one type differently.
    fn shape(&self) -> Named {
        match self {
            Named::Record { fields, .. } => Named::Record {
                doc: None,
                fields: fields
                    .iter()
                    .map(|f| Field {
                        doc: None,
                        ..f.clone()
                    })
                    .collect(),
            },
            Named::Enum { symbols, .. } => Named::Enum {
                doc: None,
                symbols: symbols.clone(),
            },
        }
    }
}

struct Entry {
    id: u32,
    subject: String,
    version: u32,
    file: String,
}

/// Named types of all current schemas, by short name (all live in one namespace).
#[derive(Default)]
struct Types {
    named: BTreeMap<String, Named>,
    /// Where each was first defined, for error messages.
    origin: BTreeMap<String, String>,
}

fn fail(message: String) -> ! {
    panic!("schemas/build.rs: {message}")
}

fn short_name(name: &str, file: &str) -> String {
    match name.rsplit_once('.') {
        Some((namespace, short)) if namespace == NAMESPACE => short.to_owned(),
        Some(_) => fail(format!(
            "{file}: {name} is outside the namespace {NAMESPACE}"
        )),
        None => name.to_owned(),
    }
}

impl Types {
    fn define(&mut self, name: String, def: Named, file: &str) {
        match self.named.get(&name) {
            Some(existing) if existing.shape() != def.shape() => fail(format!(
                "{file} defines {name} differently from {}; the current schemas must agree on every named type",
                self.origin[&name]
            )),
            Some(_) => {}
            None => {
                self.named.insert(name.clone(), def);
                self.origin.insert(name, file.to_owned());
            }
        }
    }

    fn parse(&mut self, json: &Json, file: &str, record: &str, field: &str) -> Ty {
        match json {
            Json::String(name) => self.primitive_or_reference(name, file, record, field),
            Json::Array(branches) => match branches.as_slice() {
                [Json::String(null), other] if null == "null" => {
                    Ty::Optional(Box::new(self.parse(other, file, record, field)))
                }
                _ => fail(format!(
                    "{file}: {record}.{field}: only [\"null\", T] unions are supported"
                )),
            },
            Json::Object(object) => {
                let kind = object.get("type").unwrap_or(&Json::Null);
                let logical = object.get("logicalType").and_then(Json::as_str);
                match (kind.as_str(), logical) {
                    (Some("string"), Some("uuid")) => Ty::Uuid,
                    (Some("long"), Some("timestamp-micros")) => Ty::TimestampMicros,
                    (Some("record"), _) => {
                        let name = self.record(json, file);
                        Ty::Record(name)
                    }
                    (Some("enum"), _) => {
                        let name = short_name(str_field(json, "name", file), file);
                        let symbols = json["symbols"]
                            .as_array()
                            .unwrap_or_else(|| fail(format!("{file}: enum {name} has no symbols")))
                            .iter()
                            .map(|s| {
                                s.as_str()
                                    .unwrap_or_else(|| {
                                        fail(format!("{file}: enum {name}: symbol is not a string"))
                                    })
                                    .to_owned()
                            })
                            .collect();
                        let doc = doc(json);
                        self.define(name.clone(), Named::Enum { doc, symbols }, file);
                        Ty::Enum(name)
                    }
                    (Some("array"), _) => {
                        Ty::Array(Box::new(self.parse(&json["items"], file, record, field)))
                    }
                    // Other logical types are read as their underlying type (Avro spec).
                    (Some(_), _) => self.parse(kind, file, record, field),
                    (None, _) => self.parse(kind, file, record, field),
                }
            }
            other => fail(format!(
                "{file}: {record}.{field}: unsupported type {other}"
            )),
        }
    }

    fn primitive_or_reference(&self, name: &str, file: &str, record: &str, field: &str) -> Ty {
        match name {
            "null" => Ty::Null,
            "boolean" => Ty::Boolean,
            "int" => Ty::Int,
            "long" if UNSIGNED_LONGS.contains(&(record, field)) => Ty::UnsignedLong,
            "long" => Ty::Long,
            "float" => Ty::Float,
            "double" => Ty::Double,
            "string" => Ty::String,
            "bytes" => Ty::Bytes,
            reference => {
                let short = short_name(reference, file);
                match self.named.get(&short) {
                    Some(Named::Record { .. }) => Ty::Record(short),
                    Some(Named::Enum { .. }) => Ty::Enum(short),
                    None => fail(format!(
                        "{file}: {record}.{field}: {reference} is not defined before its use"
                    )),
                }
            }
        }
    }

    /// Parses a record definition and returns its short name.
    fn record(&mut self, json: &Json, file: &str) -> String {
        let name = short_name(str_field(json, "name", file), file);
        let fields = json["fields"]
            .as_array()
            .unwrap_or_else(|| fail(format!("{file}: record {name} has no fields")))
            .iter()
            .map(|f| {
                let field = str_field(f, "name", file).to_owned();
                Field {
                    ty: self.parse(&f["type"], file, &name, &field),
                    name: field,
                    doc: doc(f),
                }
            })
            .collect();
        let doc = doc(json);
        self.define(name.clone(), Named::Record { doc, fields }, file);
        name
    }
}

fn str_field<'a>(json: &'a Json, key: &str, file: &str) -> &'a str {
    json[key]
        .as_str()
        .unwrap_or_else(|| fail(format!("{file}: `{key}` missing or not a string")))
}

fn doc(json: &Json) -> Option<String> {
    json.get("doc").and_then(Json::as_str).map(str::to_owned)
}

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn",
];

/// `payloadKg` → `payload_kg`.
fn rust_field(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    if KEYWORDS.contains(&out.as_str()) {
        format!("r#{out}")
    } else {
        out
    }
}

/// `small` → `Small`.
fn rust_variant(symbol: &str) -> String {
    let mut chars = symbol.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => fail("an enum symbol is empty".into()),
    }
}

fn rust_type(ty: &Ty) -> String {
    match ty {
        Ty::Null => "()".into(),
        Ty::Boolean => "bool".into(),
        Ty::Int => "i32".into(),
        Ty::Long => "i64".into(),
        Ty::UnsignedLong => "u64".into(),
        Ty::Float => "f32".into(),
        Ty::Double => "f64".into(),
        Ty::String => "String".into(),
        Ty::Bytes => "Vec<u8>".into(),
        Ty::Uuid => "uuid::Uuid".into(),
        Ty::TimestampMicros => "chrono::DateTime<chrono::Utc>".into(),
        Ty::Record(name) | Ty::Enum(name) => name.clone(),
        Ty::Array(item) => format!("Vec<{}>", rust_type(item)),
        Ty::Optional(inner) => format!("Option<{}>", rust_type(inner)),
    }
}

fn is_copy(ty: &Ty, types: &Types) -> bool {
    match ty {
        Ty::String | Ty::Bytes | Ty::Array(_) => false,
        Ty::Record(name) => match &types.named[name] {
            Named::Record { fields, .. } => fields.iter().all(|f| is_copy(&f.ty, types)),
            Named::Enum { .. } => true,
        },
        Ty::Optional(inner) => is_copy(inner, types),
        _ => true,
    }
}

/// `&self.x` → `self.x`, `x` → `*x`: the value of a `Copy` field.
fn by_value(reference: &str) -> String {
    match reference.strip_prefix('&') {
        Some(place) => place.to_owned(),
        None => format!("*{reference}"),
    }
}

/// `&self.x` → `self.x`, `x` → `x`: a method receiver (auto-ref and auto-deref do the rest).
fn receiver(reference: &str) -> &str {
    reference.strip_prefix('&').unwrap_or(reference)
}

/// Statements that write `value` (an expression of a reference to the field's type).
fn write_stmt(ty: &Ty, value: &str, path: &str, depth: usize) -> String {
    let copied = by_value(value);
    let recv = receiver(value);
    match ty {
        Ty::Null => String::new(),
        Ty::Boolean => format!("w.boolean({copied});"),
        Ty::Int => format!("w.int({copied});"),
        Ty::Long => format!("w.long({copied});"),
        Ty::UnsignedLong => format!("w.unsigned_long({copied}, {path:?})?;"),
        Ty::Float => format!("w.float({copied});"),
        Ty::Double => format!("w.double({copied});"),
        Ty::String => format!("w.string({value});"),
        Ty::Bytes => format!("w.bytes({value});"),
        Ty::Uuid => format!("w.uuid({value});"),
        Ty::TimestampMicros => format!("w.timestamp_micros({value});"),
        Ty::Record(_) => format!("crate::avro::AvroRecord::write_avro({value}, w)?;"),
        Ty::Enum(_) => format!("w.enum_index({recv}.avro_index());"),
        Ty::Array(item) => {
            let var = format!("item{depth}");
            format!(
                "w.array_len({recv}.len()); for {var} in {recv}.iter() {{ {} }} w.array_end();",
                write_stmt(item, &var, path, depth + 1)
            )
        }
        Ty::Optional(inner) => {
            let var = format!("some{depth}");
            format!(
                "match {value} {{ None => w.union_index(0), Some({var}) => {{ w.union_index(1); {} }} }}",
                write_stmt(inner, var.as_str(), path, depth + 1)
            )
        }
    }
}

/// An expression that reads a value of the type (inside a fn returning DecodeError).
fn read_expr(ty: &Ty, path: &str) -> String {
    match ty {
        Ty::Null => "()".into(),
        Ty::Boolean => "r.boolean()?".into(),
        Ty::Int => "r.int()?".into(),
        Ty::Long => "r.long()?".into(),
        Ty::UnsignedLong => format!("r.unsigned_long({path:?})?"),
        Ty::Float => "r.float()?".into(),
        Ty::Double => "r.double()?".into(),
        Ty::String => "r.string()?".into(),
        Ty::Bytes => "r.bytes()?".into(),
        Ty::Uuid => "r.uuid()?".into(),
        Ty::TimestampMicros => "r.timestamp_micros()?".into(),
        Ty::Record(name) => format!("<{name} as crate::avro::AvroRecord>::read_avro(r)?"),
        Ty::Enum(name) => format!("{name}::from_avro_index(r.enum_index()?)?"),
        Ty::Array(item) => format!(
            "{{ let mut items = Vec::new(); while let Some(count) = r.array_block()? {{ items.reserve(count.min(1024)); for _ in 0..count {{ items.push({}); }} }} items }}",
            read_expr(item, path)
        ),
        Ty::Optional(inner) => format!(
            "match r.union_index()? {{ 0 => None, 1 => Some({}), other => return Err(crate::avro::DecodeError::union_index({path:?}, other)) }}",
            read_expr(inner, path)
        ),
    }
}

fn doc_attr(out: &mut String, doc: &Option<String>, indent: &str) {
    if let Some(doc) = doc {
        for line in doc.lines() {
            let _ = writeln!(out, "{indent}#[doc = {:?}]", format!(" {line}"));
        }
    }
}

/// The struct and its `AvroRecord` impl; `skip_first` leaves out the metadata field of
/// an event record (the envelope carries it).
fn emit_record(
    out: &mut String,
    name: &str,
    doc: &Option<String>,
    fields: &[Field],
    types: &Types,
) {
    let copy = fields.iter().all(|f| is_copy(&f.ty, types));
    doc_attr(out, doc, "");
    let _ = writeln!(
        out,
        "#[derive(Clone, {}Debug, PartialEq, serde::Serialize, serde::Deserialize)]",
        if copy { "Copy, " } else { "" }
    );
    let _ = writeln!(out, "pub struct {name} {{");
    for f in fields {
        doc_attr(out, &f.doc, "    ");
        let _ = writeln!(out, "    #[serde(rename = {:?})]", f.name);
        let _ = writeln!(
            out,
            "    pub {}: {},",
            rust_field(&f.name),
            rust_type(&f.ty)
        );
    }
    let _ = writeln!(out, "}}\n");

    let _ = writeln!(out, "impl crate::avro::AvroRecord for {name} {{");
    let _ = writeln!(
        out,
        "    fn write_avro(&self, w: &mut crate::avro::Writer) -> Result<(), crate::avro::EncodeError> {{"
    );
    let _ = writeln!(out, "        let _ = &w;");
    for f in fields {
        let path = format!("{name}.{}", f.name);
        let value = format!("&self.{}", rust_field(&f.name));
        let _ = writeln!(out, "        {}", write_stmt(&f.ty, &value, &path, 0));
    }
    let _ = writeln!(out, "        Ok(())\n    }}");
    let _ = writeln!(
        out,
        "    fn read_avro(r: &mut crate::avro::Reader<'_>) -> Result<Self, crate::avro::DecodeError> {{"
    );
    let _ = writeln!(out, "        let _ = &r;");
    let _ = writeln!(out, "        Ok({name} {{");
    for f in fields {
        let path = format!("{name}.{}", f.name);
        let _ = writeln!(
            out,
            "            {}: {},",
            rust_field(&f.name),
            read_expr(&f.ty, &path)
        );
    }
    let _ = writeln!(out, "        }})\n    }}\n}}\n");
}

fn emit_enum(out: &mut String, name: &str, doc: &Option<String>, symbols: &[String]) {
    doc_attr(out, doc, "");
    let _ = writeln!(
        out,
        "#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]"
    );
    let _ = writeln!(out, "pub enum {name} {{");
    for s in symbols {
        let _ = writeln!(
            out,
            "    #[serde(rename = {s:?})]\n    {},",
            rust_variant(s)
        );
    }
    let _ = writeln!(out, "}}\n");
    let _ = writeln!(out, "impl {name} {{");
    let _ = writeln!(out, "    /// Every symbol, in schema order.");
    let _ = writeln!(
        out,
        "    pub const ALL: [{name}; {}] = [{}];",
        symbols.len(),
        symbols
            .iter()
            .map(|s| format!("{name}::{}", rust_variant(s)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(out, "    /// The Avro symbol.");
    let _ = writeln!(
        out,
        "    pub fn symbol(self) -> &'static str {{\n        match self {{"
    );
    for s in symbols {
        let _ = writeln!(out, "            {name}::{} => {s:?},", rust_variant(s));
    }
    let _ = writeln!(out, "        }}\n    }}");
    let _ = writeln!(
        out,
        "    fn avro_index(self) -> i64 {{\n        match self {{"
    );
    for (i, s) in symbols.iter().enumerate() {
        let _ = writeln!(out, "            {name}::{} => {i},", rust_variant(s));
    }
    let _ = writeln!(out, "        }}\n    }}");
    let _ = writeln!(
        out,
        "    fn from_avro_index(index: i64) -> Result<Self, crate::avro::DecodeError> {{\n        match index {{"
    );
    for (i, s) in symbols.iter().enumerate() {
        let _ = writeln!(out, "            {i} => Ok({name}::{}),", rust_variant(s));
    }
    let _ = writeln!(
        out,
        "            other => Err(crate::avro::DecodeError::enum_index({name:?}, other)),\n        }}\n    }}\n}}\n"
    );
}

fn main() {
    let dir = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| fail("no CARGO_MANIFEST_DIR".into())),
    )
    .join("avro");
    println!("cargo:rerun-if-changed=avro");
    let manifest_text = read(&dir.join("manifest.json"));
    let manifest: Json = serde_json::from_str(&manifest_text)
        .unwrap_or_else(|e| fail(format!("manifest.json: {e}")));
    let entries: Vec<Entry> = manifest
        .as_array()
        .unwrap_or_else(|| fail("manifest.json is not a list".into()))
        .iter()
        .map(|e| Entry {
            id: e["id"]
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .unwrap_or_else(|| fail(format!("manifest entry {e}: bad id"))),
            subject: str_field(e, "subject", "manifest.json").to_owned(),
            version: e["version"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or_else(|| fail(format!("manifest entry {e}: bad version"))),
            file: str_field(e, "file", "manifest.json").to_owned(),
        })
        .collect();

    // The current version of each subject, in order of first appearance.
    let mut subjects: Vec<String> = Vec::new();
    let mut current: BTreeMap<String, &Entry> = BTreeMap::new();
    for e in &entries {
        if e.file != format!("{}.v{}.avsc", e.subject, e.version) {
            fail(format!(
                "manifest id {}: file {} should be named {}.v{}.avsc",
                e.id, e.file, e.subject, e.version
            ));
        }
        if !current.contains_key(&e.subject) {
            subjects.push(e.subject.clone());
        }
        match current.get(&e.subject) {
            Some(c) if c.version == e.version => {
                fail(format!("{} v{} is listed twice", e.subject, e.version))
            }
            Some(c) if c.version > e.version => {}
            _ => {
                current.insert(e.subject.clone(), e);
            }
        }
    }
    let mut ids: Vec<u32> = entries.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        fail("a schema id is used twice in manifest.json".into());
    }

    let mut types = Types::default();
    let mut events: Vec<(String, u32, Vec<Field>, Option<String>)> = Vec::new();
    let mut frames: Vec<(String, u32)> = Vec::new();
    for subject in &subjects {
        let entry = current[subject];
        let json: Json = serde_json::from_str(&read(&dir.join(&entry.file)))
            .unwrap_or_else(|e| fail(format!("{}: {e}", entry.file)));
        let name = types.record(&json, &entry.file);
        if name != *subject {
            fail(format!(
                "{} should hold the record {NAMESPACE}.{subject}",
                entry.file
            ));
        }
        let Named::Record { doc, fields } = types.named[&name].clone() else {
            unreachable!("record() defines a record")
        };
        if FRAMES.contains(&subject.as_str()) {
            frames.push((subject.clone(), entry.id));
            continue;
        }
        match fields.first() {
            Some(Field {
                name,
                ty: Ty::Record(r),
                ..
            }) if name == "metadata" && r == METADATA => {}
            _ => fail(format!(
                "{}: the first field must be `metadata` of type {METADATA}",
                entry.file
            )),
        }
        events.push((subject.clone(), entry.id, fields[1..].to_vec(), doc));
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Generated by schemas/build.rs from schemas/avro/*.avsc. Do not edit.\n"
    );
    let event_names: Vec<&String> = events.iter().map(|(s, ..)| s).collect();
    for (name, def) in &types.named {
        if event_names.contains(&name) {
            continue;
        }
        match def {
            Named::Record { doc, fields } => emit_record(&mut out, name, doc, fields, &types),
            Named::Enum { doc, symbols } => emit_enum(&mut out, name, doc, symbols),
        }
    }
    for (subject, _, fields, doc) in &events {
        emit_record(&mut out, subject, doc, fields, &types);
    }

    // The Event enum.
    let _ = writeln!(
        out,
        "/// Every event type. Variants name the Avro record (`{NAMESPACE}.<Variant>`)."
    );
    let _ = writeln!(
        out,
        "#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]"
    );
    let _ = writeln!(out, "#[serde(tag = \"type\", content = \"data\")]");
    let _ = writeln!(out, "pub enum Event {{");
    for (subject, ..) in &events {
        let _ = writeln!(out, "    {subject}({subject}),");
    }
    let _ = writeln!(out, "}}\n");
    let _ = writeln!(out, "impl Event {{");
    let _ = writeln!(
        out,
        "    /// Every subject (event type name), in manifest order."
    );
    let _ = writeln!(
        out,
        "    pub const SUBJECTS: [&'static str; {}] = [{}];",
        events.len(),
        events
            .iter()
            .map(|(s, ..)| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "    /// The event type's name, which is also its Avro record name and schema subject."
    );
    let _ = writeln!(
        out,
        "    pub fn type_name(&self) -> &'static str {{\n        match self {{"
    );
    for (subject, ..) in &events {
        let _ = writeln!(out, "            Event::{subject}(_) => {subject:?},");
    }
    let _ = writeln!(out, "        }}\n    }}");
    let _ = writeln!(
        out,
        "    /// The manifest id of the current schema of the event's type."
    );
    let _ = writeln!(
        out,
        "    pub fn schema_id(&self) -> u32 {{\n        match self {{"
    );
    for (subject, id, ..) in &events {
        let _ = writeln!(out, "            Event::{subject}(_) => {id},");
    }
    let _ = writeln!(out, "        }}\n    }}");
    let _ = writeln!(
        out,
        "    pub(crate) fn write_avro(&self, w: &mut crate::avro::Writer) -> Result<(), crate::avro::EncodeError> {{\n        match self {{"
    );
    for (subject, ..) in &events {
        let _ = writeln!(
            out,
            "            Event::{subject}(e) => crate::avro::AvroRecord::write_avro(e, w),"
        );
    }
    let _ = writeln!(out, "        }}\n    }}");
    let _ = writeln!(
        out,
        "    /// Reads the payload of a datum written with the current schema `id`; `None`\n    /// when `id` is not a current schema.\n    pub(crate) fn read_current(id: u32, r: &mut crate::avro::Reader<'_>) -> Option<Result<Event, crate::avro::DecodeError>> {{\n        let _ = &r;\n        Some(match id {{"
    );
    for (subject, id, ..) in &events {
        let _ = writeln!(
            out,
            "            {id} => <{subject} as crate::avro::AvroRecord>::read_avro(r).map(Event::{subject}),"
        );
    }
    let _ = writeln!(
        out,
        "            _ => return None,\n        }})\n    }}\n}}\n"
    );

    for (frame, id) in &frames {
        let _ = writeln!(
            out,
            "/// The manifest id of the current schema of `{frame}`.\npub const {}_SCHEMA_ID: u32 = {id};\n",
            frame.to_ascii_uppercase()
        );
    }

    // Every schema file, with its text for run-time resolution and registries.
    let _ = writeln!(
        out,
        "/// A checked-in schema version: its manifest id and its text."
    );
    let _ = writeln!(out, "#[derive(Clone, Copy, Debug, PartialEq, Eq)]");
    let _ = writeln!(
        out,
        "pub struct SchemaFile {{\n    pub id: u32,\n    pub subject: &'static str,\n    pub version: u32,\n    pub file: &'static str,\n    pub text: &'static str,\n    /// The highest version of its subject.\n    pub current: bool,\n}}\n"
    );
    let _ = writeln!(out, "/// Every schema of the manifest, in manifest order.");
    let _ = writeln!(out, "pub const SCHEMA_FILES: &[SchemaFile] = &[");
    for e in &entries {
        let path = dir.join(&e.file);
        if !path.exists() {
            fail(format!("{} is listed in manifest.json but missing", e.file));
        }
        let _ = writeln!(
            out,
            "    SchemaFile {{ id: {}, subject: {:?}, version: {}, file: {:?}, text: include_str!({:?}), current: {} }},",
            e.id,
            e.subject,
            e.version,
            e.file,
            path.display().to_string(),
            current[&e.subject].id == e.id
        );
    }
    let _ = writeln!(out, "];");

    let out_dir =
        PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| fail("no OUT_DIR".into())));
    std::fs::write(out_dir.join("events.rs"), out)
        .unwrap_or_else(|e| fail(format!("cannot write events.rs: {e}")));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| fail(format!("{}: {e}", path.display())))
}
