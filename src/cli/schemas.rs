//! The JSON Schemas in `docs/json/`, generated from the types that each `--json` output and
//! each JSON file of a run serialises, so serde's attributes stay the one place that names a
//! field. A test compares `docs/json/` with what the types generate;
//! `FERRY_BLESS=1 cargo test --lib cli::schemas` rewrites it.

use schemars::generate::SchemaSettings;
use schemars::transform::{Transform, transform_subschemas};
use schemars::{JsonSchema, Schema};
use serde_json::Value;

use super::Versioned;
use crate::run::events::{self, SCHEMA_VERSION};

/// One file of `docs/json/`: `NAME.schema.json`.
pub struct Document {
    pub name: &'static str,
    pub schema: Schema,
}

/// Every output's schema, named as in `docs/json/`.
pub fn all() -> Vec<Document> {
    vec![
        document::<crate::install::report::InstallJson>(
            "install",
            "ferry install --json (stdout, success and failure alike)",
        ),
        document::<Versioned<crate::install::plan::Plan>>("plan", "ferry plan --json"),
        document::<crate::ops::runs::Report>("status", "ferry status --json"),
        document::<Versioned<crate::ops::runs::RunList>>("runs", "ferry runs --json"),
        document::<Versioned<crate::fetch::catalog::Catalog>>("images", "ferry images --json"),
        document::<Versioned<crate::image::Inspection>>("inspect", "ferry inspect ISO --json"),
        document::<Versioned<crate::ops::cache::Listing>>("cache", "ferry cache list --json"),
        document::<crate::doctor::Report>("doctor", "ferry doctor --json (docs/doctor.md)"),
        document::<events::Line>("event", "one line of events.jsonl"),
        document::<events::Status>("status-file", "status.json in a run directory"),
        document::<crate::install::report::Summary>("summary", "summary.json in a run directory"),
    ]
}

fn document<T: JsonSchema>(name: &'static str, title: &str) -> Document {
    // The schema of what ferry writes: a field that is skipped when empty is not required.
    let generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .with_transform(Promises)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>();
    let map = schema.ensure_object();
    let rest = std::mem::take(map);
    map.insert("$schema".into(), rest["$schema"].clone());
    map.insert(
        "$id".into(),
        format!("https://ferry.invalid/json/{name}.schema.json").into(),
    );
    map.insert("title".into(), title.into());
    map.insert(
        "description".into(),
        "Fields may be added without a new schema_version; a field that changes meaning or \
         goes away raises it (docs/json.md)."
            .into(),
    );
    for (key, value) in rest {
        if !map.contains_key(&key) {
            map.insert(key, value);
        }
    }
    Document { name, schema }
}

/// What docs/json.md promises on top of the types: `schema_version` is a constant (a reader
/// checks it before anything else), and fields may be added without a new version, so no
/// object is closed (`deny_unknown_fields` is about reading profiles and catalogs, not about
/// what ferry writes).
#[derive(Clone)]
struct Promises;

impl Transform for Promises {
    fn transform(&mut self, schema: &mut Schema) {
        if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
            schema.remove("additionalProperties");
        }
        if let Some(version) = schema
            .get_mut("properties")
            .and_then(Value::as_object_mut)
            .and_then(|properties| properties.get_mut("schema_version"))
        {
            *version = serde_json::json!({ "const": SCHEMA_VERSION });
        }
        transform_subschemas(self, schema);
    }
}

impl Document {
    /// The file's text: pretty JSON and a final newline.
    pub fn text(&self) -> String {
        serde_json::to_string_pretty(&self.schema).expect("a schema is plain JSON") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/json/ is what the types generate; `FERRY_BLESS=1` rewrites it.
    #[test]
    fn docs_json_is_what_the_types_generate() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json");
        let bless = std::env::var_os("FERRY_BLESS").is_some();
        let mut stale = Vec::new();
        for doc in all() {
            let path = dir.join(format!("{}.schema.json", doc.name));
            let text = doc.text();
            if bless {
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(&text) {
                stale.push(path.display().to_string());
            }
        }
        assert!(
            stale.is_empty(),
            "{} differ from what the types generate; regenerate with \
             `FERRY_BLESS=1 cargo test --lib cli::schemas`",
            stale.join(", ")
        );
        // A description is read by whoever consumes the JSON: no rustdoc links in it.
        for doc in all() {
            let text = doc.text();
            assert!(
                !text.contains("[`"),
                "{}: a field's doc comment has a rustdoc link, which its description shows",
                doc.name
            );
        }
        // No schema in docs/json/ that nothing generates any more.
        let names: Vec<String> = all()
            .iter()
            .map(|d| format!("{}.schema.json", d.name))
            .collect();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                names.contains(&file),
                "docs/json/{file} is generated by nothing"
            );
        }
    }
}
