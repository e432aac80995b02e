//! The schema lock: the encoding of every record kind at every schema version this build reads is recorded
//! in `image-format/schemas/<Kind>.v<N>.txt`, and this test fails when a type's encoding no longer matches
//! what its version recorded. So a change to a record (a field, an enum variant, a type) cannot land
//! without raising the kind's version and keeping a decoder for the old one (see `docs/image-format.md`).
//!
//! The schema of a type is traced from its `Deserialize` impl (serde-reflection), every named type inlined:
//! exactly what postcard encodes. Each file carries the crc32 of the schema without field and variant names
//! (the encoding itself); a rename alone changes the text but not that crc, and only needs re-recording.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a failure is the test failing.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use dormant_image::records::kind::SchemaVisitor;
use dormant_image::RecordKind;
use serde::de::DeserializeOwned;
use serde_reflection::{ContainerFormat, Format, Registry, Tracer, TracerConfig, VariantFormat};

const BLESS: &str = "DORMANT_BLESS_SCHEMAS";

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// Traces every enum that records hold, inner ones first: serde-reflection finds every variant of an enum
/// only when it traces that enum itself (nested in a struct, it sees the variants it happens to visit). An
/// enum missing here shows up as an untraced variant, and the test says to add it.
fn trace_enums(t: &mut Tracer) {
    use dormant_image::records::*;
    t.trace_simple_type::<FdFile>().unwrap();
    t.trace_simple_type::<DescKind>().unwrap();
    t.trace_simple_type::<files::v1::DescKindV1>().unwrap();
    t.trace_simple_type::<files::locks::v1::LockKindV1>()
        .unwrap();
    t.trace_simple_type::<files::v2::DescKindV2>().unwrap();
    t.trace_simple_type::<files::v3::DescKindV3>().unwrap();
    t.trace_simple_type::<LockKind>().unwrap();
    t.trace_simple_type::<VmaBacking>().unwrap();
    t.trace_simple_type::<MountSource>().unwrap();
    t.trace_simple_type::<TmpfsNodeKind>().unwrap();
    t.trace_simple_type::<TmpfsRecord>().unwrap();
    t.trace_simple_type::<NsKind>().unwrap();
    t.trace_simple_type::<NsState>().unwrap();
    t.trace_simple_type::<FileCheck>().unwrap();
    t.trace_simple_type::<ContentDigest>().unwrap();
    t.trace_simple_type::<SeccompMode>().unwrap();
    t.trace_simple_type::<DeletedContent>().unwrap();
    t.trace_simple_type::<files::ghost::v1::DeletedContentV1>()
        .unwrap();
}

/// Traces `T` with every variant of every enum it holds (traced first by `enums`).
fn trace<T: DeserializeOwned>(enums: fn(&mut Tracer)) -> (Format, Registry) {
    let mut tracer = Tracer::new(TracerConfig::default());
    enums(&mut tracer);
    let (root, _) = tracer.trace_simple_type::<T>().unwrap();
    let registry = tracer.registry().unwrap();
    // Variants found by name but never by index keep a provisional index near u32::MAX.
    for (name, c) in &registry {
        if let ContainerFormat::Enum(variants) = c {
            if let Some((_, v)) = variants.iter().find(|(i, _)| **i >= 1 << 31) {
                panic!(
                    "enum {name} (variant {}) is not traced whole: add it to trace_enums in schema_lock.rs",
                    v.name
                );
            }
        }
    }
    (root, registry)
}

/// Renders a format with every named type inlined; `names` keeps field and variant names.
struct Render<'r> {
    registry: &'r Registry,
    names: bool,
    out: String,
}

impl Render<'_> {
    fn format(&mut self, f: &Format, indent: usize) {
        let s = match f {
            Format::TypeName(n) => {
                let c = self
                    .registry
                    .get(n)
                    .unwrap_or_else(|| panic!("{n} not traced"));
                return self.container(c, indent);
            }
            Format::Option(f) => {
                self.out.push_str("option ");
                return self.format(f, indent);
            }
            Format::Seq(f) => {
                self.out.push_str("seq ");
                return self.format(f, indent);
            }
            Format::Map { key, value } => {
                self.out.push_str("map ");
                self.format(key, indent);
                self.out.push_str(" => ");
                return self.format(value, indent);
            }
            Format::Tuple(fs) => {
                self.out.push_str("tuple (");
                self.list(fs, indent);
                return self.out.push(')');
            }
            Format::TupleArray { content, size } => {
                let _ = write!(self.out, "array[{size}] ");
                return self.format(content, indent);
            }
            Format::Variable(_) => panic!("untraced format"),
            other => format!("{other:?}").to_lowercase(),
        };
        self.out.push_str(&s);
    }

    fn list(&mut self, fs: &[Format], indent: usize) {
        for (i, f) in fs.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.format(f, indent);
        }
    }

    fn fields(&mut self, fields: &[serde_reflection::Named<Format>], indent: usize) {
        self.out.push_str("{\n");
        for f in fields {
            self.pad(indent + 1);
            if self.names {
                let _ = write!(self.out, ".{} ", f.name);
            }
            self.format(&f.value, indent + 1);
            self.out.push('\n');
        }
        self.pad(indent);
        self.out.push('}');
    }

    fn container(&mut self, c: &ContainerFormat, indent: usize) {
        match c {
            ContainerFormat::UnitStruct => self.out.push_str("unit"),
            ContainerFormat::NewTypeStruct(f) => {
                self.out.push_str("newtype ");
                self.format(f, indent);
            }
            ContainerFormat::TupleStruct(fs) => {
                self.out.push_str("tuple struct (");
                self.list(fs, indent);
                self.out.push(')');
            }
            ContainerFormat::Struct(fields) => {
                self.out.push_str("struct ");
                self.fields(fields, indent);
            }
            ContainerFormat::Enum(variants) => {
                self.out.push_str("enum {\n");
                for (index, v) in variants {
                    self.pad(indent + 1);
                    let _ = write!(self.out, "{index} ");
                    if self.names {
                        let _ = write!(self.out, "{} ", v.name);
                    }
                    self.variant(&v.value, indent + 1);
                    self.out.push('\n');
                }
                self.pad(indent);
                self.out.push('}');
            }
        }
    }

    fn variant(&mut self, v: &VariantFormat, indent: usize) {
        match v {
            VariantFormat::Unit => self.out.push_str("unit"),
            VariantFormat::NewType(f) => self.format(f, indent),
            VariantFormat::Tuple(fs) => {
                self.out.push_str("tuple (");
                self.list(fs, indent);
                self.out.push(')');
            }
            VariantFormat::Struct(fields) => {
                self.out.push_str("struct ");
                self.fields(fields, indent);
            }
            VariantFormat::Variable(_) => panic!("untraced variant"),
        }
    }

    fn pad(&mut self, indent: usize) {
        self.out.push_str(&"  ".repeat(indent));
    }
}

/// A type's schema: the text with names, and the crc32 of the text without them (its encoding).
struct Schema {
    text: String,
    encoding_crc: u32,
}

struct SchemaOf;

impl SchemaVisitor for SchemaOf {
    type Output = Schema;
    fn visit<T: DeserializeOwned>(self) -> Schema {
        schema_of::<T>(trace_enums)
    }
}

fn schema_of<T: DeserializeOwned>(enums: fn(&mut Tracer)) -> Schema {
    let (root, registry) = trace::<T>(enums);
    let render = |names| {
        let mut r = Render {
            registry: &registry,
            names,
            out: String::new(),
        };
        r.format(&root, 0);
        r.out.push('\n');
        r.out
    };
    Schema {
        text: render(true),
        encoding_crc: crc32fast::hash(render(false).as_bytes()),
    }
}

fn file_name(kind: RecordKind, version: u16) -> String {
    format!("{kind:?}.v{version}.txt")
}

fn file_text(kind: RecordKind, version: u16, s: &Schema) -> String {
    format!(
        "# dormant image schema: record kind {} ({}), version {version}\n# encoding crc32: {:#010x} (of this \
         schema without field and variant names)\n{}",
        kind as u16,
        kind.type_name(),
        s.encoding_crc,
        s.text
    )
}

fn recorded_crc(text: &str) -> Option<u32> {
    let line = text.lines().nth(1)?;
    let hex = line
        .strip_prefix("# encoding crc32: 0x")?
        .split(' ')
        .next()?;
    u32::from_str_radix(hex, 16).ok()
}

/// Every kind's current type matches the schema its version recorded; every decoder kept for an older
/// version matches what that version recorded; no recorded schema belongs to no version this build reads.
#[test]
fn every_kind_matches_its_recorded_schema() {
    let bless = std::env::var_os(BLESS).is_some();
    let dir = schemas_dir();
    let mut failures = Vec::new();
    let mut expected_files = BTreeSet::new();
    for &kind in RecordKind::ALL {
        let current = kind.version();
        for version in 1..=current {
            let name = file_name(kind, version);
            expected_files.insert(name.clone());
            let path = dir.join(&name);
            let schema = kind
                .visit_schema(version, SchemaOf)
                .unwrap_or_else(|| panic!("{kind:?} has no decoder for version {version}"));
            let want = file_text(kind, version, &schema);
            let recorded = std::fs::read_to_string(&path).ok();
            let what = if version == current {
                format!("{kind:?} ({})", kind.type_name())
            } else {
                format!("the decoder {kind:?} keeps for version {version}")
            };
            match recorded {
                Some(text) if text == want => {}
                Some(text) if recorded_crc(&text) != Some(schema.encoding_crc) => failures.push(if version == current {
                    format!(
                        "record kind {what} no longer encodes as its version {version} recorded in {}: raise its \
                         version to {} in the kind table (image-format/src/records/kind.rs), keep the old type as \
                         the decoder of version {version} (`older [{version} => OldType]` with an `Upgrade` into \
                         the new type), then record the new schema with {BLESS}=1 cargo test -p dormant-image \
                         --test schema_lock",
                        path.display(),
                        version + 1
                    )
                } else {
                    format!(
                        "{what} does not decode what version {version} encoded ({}): keep the decoder exactly \
                         as that version was",
                        path.display()
                    )
                }),
                Some(_) if bless => std::fs::write(&path, want).unwrap(),
                Some(_) => failures.push(format!(
                    "{what}: names changed in {} (the encoding did not): re-record with {BLESS}=1",
                    path.display()
                )),
                None if bless => std::fs::write(&path, want).unwrap(),
                None => failures.push(format!(
                    "{what}: version {version} has no recorded schema {}: record it with {BLESS}=1 cargo test -p \
                     dormant-image --test schema_lock",
                    path.display()
                )),
            }
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !expected_files.contains(&name) {
            failures.push(format!(
                "schemas/{name} belongs to no kind and version this build reads (a kind's older versions keep \
                 their decoders and their schemas)"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// The lock is not blind: a field added to a record changes the encoding crc; a rename does not.
#[test]
fn the_lock_sees_a_new_field_and_not_a_rename() {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct A {
        x: u32,
        e: E,
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct B {
        x: u32,
        e: E,
        added: Option<u64>,
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Renamed {
        y: u32,
        e: E,
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    enum E {
        One,
        Two(u8),
        Three { z: String },
    }
    fn enums(t: &mut Tracer) {
        t.trace_simple_type::<E>().unwrap();
    }
    let a = schema_of::<A>(enums);
    assert!(
        a.text.contains(".x u32") && a.text.contains("2 Three struct {"),
        "{}",
        a.text
    );
    assert_ne!(a.encoding_crc, schema_of::<B>(enums).encoding_crc);
    assert_eq!(a.encoding_crc, schema_of::<Renamed>(enums).encoding_crc);
}
