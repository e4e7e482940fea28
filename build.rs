//! Build script of the root package.
//!
//! `openapi.yaml` is the contract of the HTTP API. This script
//!
//! 1. parses it with `openapiv3` (OpenAPI 3.0.x only, which is why the file stays at 3.0.3),
//! 2. fails the build if it breaks one of the rules in [`check_contract`], and
//! 3. writes two files to `$OUT_DIR`:
//!    - `spec_operations.rs`: a manifest of the operations (`SPEC_OPERATIONS`, `SPEC_TITLE`,
//!      `SPEC_VERSION`) for `include!`, so routing and tests can ask the contract directly;
//!    - `openapi.json`: the same document as JSON, for `include_str!`.
//!
//! Nothing here touches the network.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

use openapiv3::{OpenAPI, Operation, Parameter, PathItem, ReferenceOr, StatusCode};
use serde_json::Value;

const SPEC_FILE: &str = "openapi.yaml";

fn main() {
    println!("cargo:rerun-if-changed={SPEC_FILE}");
    println!("cargo:rerun-if-changed=build.rs");

    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let text = fs::read_to_string(manifest_dir.join(SPEC_FILE))
        .unwrap_or_else(|err| fail(&[format!("cannot read it: {err}")]));
    // Parsed twice on purpose: the typed model drives the checks and the manifest (and its
    // errors carry line numbers); the untyped copy keeps everything as written, in order.
    let spec: OpenAPI = yaml_serde::from_str(&text).unwrap_or_else(|err| {
        fail(&[format!(
            "it does not parse as an OpenAPI 3.0 document: {err}"
        )])
    });
    let (json, raw) = to_json(&text);

    let operations = collect_operations(&spec);
    let problems = check_contract(&spec, &raw, &operations);
    if !problems.is_empty() {
        fail(&problems);
    }

    write(
        &out_dir.join("spec_operations.rs"),
        &render_manifest(&spec, &operations),
    );
    write(&out_dir.join("openapi.json"), &json);
}

/// The spec as pretty JSON text, and as a value for walking it.
///
/// The text is serialised from the YAML value, not from `serde_json::Value`, because the
/// YAML mapping keeps the file's key order (serde_json's map would sort the keys, and
/// Swagger UI shows operations in document order).
fn to_json(text: &str) -> (String, Value) {
    let yaml: yaml_serde::Value = yaml_serde::from_str(text)
        .unwrap_or_else(|err| fail(&[format!("it is not valid YAML: {err}")]));
    let json = serde_json::to_string_pretty(&yaml)
        .unwrap_or_else(|err| fail(&[format!("it does not convert to JSON: {err}")]));
    let value = serde_json::from_str(&json).expect("serde_json reads what it wrote");
    (json + "\n", value)
}

/// Stops the build. A panic is how a build script reports failure; cargo prints the message.
fn fail(problems: &[String]) -> ! {
    let list: String = problems
        .iter()
        .fold(String::new(), |list, p| list + "\n  - " + p);
    panic!("{SPEC_FILE} is not a valid contract:{list}");
}

fn write(path: &Path, contents: &str) {
    fs::write(path, contents)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

/// One operation of the spec, with what the checks and the manifest need.
struct SpecOp<'a> {
    /// Upper case, as in HTTP.
    method: String,
    path: &'a str,
    item: &'a PathItem,
    op: &'a Operation,
}

impl SpecOp<'_> {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// All operations, sorted by path and then method (the order of the manifest).
fn collect_operations(spec: &OpenAPI) -> Vec<SpecOp<'_>> {
    let mut ops: Vec<SpecOp<'_>> = spec
        .paths
        .paths
        .iter()
        .filter_map(|(path, item)| item.as_item().map(|item| (path, item)))
        .flat_map(|(path, item)| {
            item.iter().map(move |(method, op)| SpecOp {
                method: method.to_ascii_uppercase(),
                path,
                item,
                op,
            })
        })
        .collect();
    ops.sort_by(|a, b| (a.path, &a.method).cmp(&(b.path, &b.method)));
    ops
}

/// Every rule the contract must satisfy; returns one message per violation (empty = valid).
///
/// The rules catch what a YAML parser cannot: an operation the generated manifest cannot name,
/// an operation with no documented failure, and references or path templates that point at
/// nothing (Swagger UI would show those as broken, and a client generator would reject them).
fn check_contract(spec: &OpenAPI, raw: &Value, ops: &[SpecOp<'_>]) -> Vec<String> {
    let mut problems = Vec::new();
    if !spec.openapi.starts_with("3.0.") {
        problems.push(format!(
            "`openapi` is {:?}; it must be 3.0.x (openapiv3 reads only 3.0, and the served 3.1 document is compared with it separately)",
            spec.openapi
        ));
    }
    for (path, item) in &spec.paths.paths {
        if let ReferenceOr::Reference { reference } = item {
            problems.push(format!(
                "path {path} is a $ref ({reference}); write the path item inline"
            ));
        }
    }
    check_operation_ids(ops, &mut problems);
    for op in ops {
        check_error_responses(op, &mut problems);
        check_path_parameters(spec, op, &mut problems);
        check_security_schemes(spec, op, &mut problems);
    }
    check_refs(raw, &mut String::from("#"), raw, &mut problems);
    problems
}

/// Every operation needs a unique operationId: it names the handler and the manifest entry.
fn check_operation_ids(ops: &[SpecOp<'_>], problems: &mut Vec<String>) {
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    for op in ops {
        match op.op.operation_id.as_deref() {
            None => problems.push(format!("{} has no operationId", op.label())),
            Some(id) => {
                if let Some(first) = seen.insert(id, op.label()) {
                    problems.push(format!(
                        "operationId {id:?} is used by both {first} and {}",
                        op.label()
                    ));
                }
            }
        }
    }
}

/// Every operation can fail somehow; a contract that lists only successes is lying.
fn check_error_responses(op: &SpecOp<'_>, problems: &mut Vec<String>) {
    let declares_error = op.op.responses.responses.keys().any(|code| match code {
        StatusCode::Code(n) => (400..=599).contains(n),
        StatusCode::Range(n) => matches!(n, 4 | 5),
    });
    if !declares_error {
        problems.push(format!("{} declares no 4XX or 5XX response", op.label()));
    }
}

/// The `{name}` segments of the path template and the declared `in: path` parameters must be
/// the same set, and path parameters must be `required: true` (OpenAPI demands it).
fn check_path_parameters(spec: &OpenAPI, op: &SpecOp<'_>, problems: &mut Vec<String>) {
    let in_template = template_parameters(op.path);
    let mut declared = BTreeSet::new();
    // Path-level parameters apply to every operation of the path; operation-level ones add to them.
    for param in op.item.parameters.iter().chain(&op.op.parameters) {
        // An unresolvable $ref is reported by `check_refs`.
        let Some(Parameter::Path { parameter_data, .. }) = resolve_parameter(spec, param) else {
            continue;
        };
        if !parameter_data.required {
            problems.push(format!(
                "{}: path parameter {:?} must be `required: true`",
                op.label(),
                parameter_data.name
            ));
        }
        declared.insert(parameter_data.name.as_str());
    }
    for name in in_template.difference(&declared) {
        problems.push(format!(
            "{}: {{{name}}} is in the path but not declared as a path parameter",
            op.label()
        ));
    }
    for name in declared.difference(&in_template) {
        problems.push(format!(
            "{}: path parameter {name:?} is declared but not in the path",
            op.label()
        ));
    }
}

/// The names inside `{…}` in a path template.
fn template_parameters(path: &str) -> BTreeSet<&str> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .collect()
}

fn resolve_parameter<'a>(
    spec: &'a OpenAPI,
    param: &'a ReferenceOr<Parameter>,
) -> Option<&'a Parameter> {
    match param {
        ReferenceOr::Item(param) => Some(param),
        ReferenceOr::Reference { reference } => {
            let name = reference.strip_prefix("#/components/parameters/")?;
            spec.components.as_ref()?.parameters.get(name)?.as_item()
        }
    }
}

/// A security requirement must name a declared scheme, or Swagger UI cannot send it.
fn check_security_schemes(spec: &OpenAPI, op: &SpecOp<'_>, problems: &mut Vec<String>) {
    let declared = spec.components.as_ref().map(|c| &c.security_schemes);
    for name in security_names(spec, op.op) {
        if !declared.is_some_and(|schemes| schemes.contains_key(name)) {
            problems.push(format!(
                "{}: security scheme {name:?} is not declared in components.securitySchemes",
                op.label()
            ));
        }
    }
}

/// The scheme names an operation accepts. An operation without `security` inherits the
/// document's; `[]` and `[{}]` both mean "no credential".
fn security_names<'a>(spec: &'a OpenAPI, op: &'a Operation) -> BTreeSet<&'a str> {
    op.security
        .as_ref()
        .or(spec.security.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|requirement| requirement.keys().map(String::as_str))
        .collect()
}

/// Walks the whole document and reports every `$ref` that does not resolve. The typed model
/// cannot do this: it keeps references as plain strings in dozens of places.
fn check_refs(node: &Value, location: &mut String, root: &Value, problems: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref")
                && let Some(problem) = dangling_ref(reference, root)
            {
                problems.push(format!("{location}: {problem}"));
            }
            for (key, child) in map {
                let len = location.len();
                // JSON Pointer escaping, so the location can be pasted into a `$ref`.
                let _ = write!(location, "/{}", key.replace('~', "~0").replace('/', "~1"));
                check_refs(child, location, root, problems);
                location.truncate(len);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let len = location.len();
                let _ = write!(location, "/{index}");
                check_refs(child, location, root, problems);
                location.truncate(len);
            }
        }
        _ => {}
    }
}

fn dangling_ref(reference: &Value, root: &Value) -> Option<String> {
    let Some(reference) = reference.as_str() else {
        return Some(format!("$ref must be a string, found {reference}"));
    };
    let Some(pointer) = reference.strip_prefix('#') else {
        return Some(format!(
            "$ref {reference:?} points outside this file; only local references are allowed"
        ));
    };
    if root.pointer(pointer).is_some() {
        return None;
    }
    Some(match pointer.strip_prefix("/components/schemas/") {
        Some(name) => format!("$ref {reference:?} points at a missing schema {name:?}"),
        None => format!("$ref {reference:?} points at nothing"),
    })
}

/// The fixed part of `spec_operations.rs`. The items are `#[allow(dead_code)]` because each
/// includer (the server's unmatched-route handler, the tests) uses only some of them.
const MANIFEST_PREAMBLE: &str = r#"// @generated by build.rs from openapi.yaml. Do not edit; edit openapi.yaml instead.

/// One operation of openapi.yaml (generated by build.rs).
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
pub struct SpecOperation {
    /// Upper case: `GET`, `POST`, …
    pub method: &'static str,
    /// The path template as in the spec: `/api/v1/auth/keys/{key_id}`.
    pub path: &'static str,
    pub operation_id: &'static str,
    /// The declared response codes, sorted: `["200", "401", …]`.
    pub statuses: &'static [&'static str],
    /// The accepted security scheme names, sorted; empty = no credential.
    pub security: &'static [&'static str],
}
"#;

/// The Rust source of `$OUT_DIR/spec_operations.rs`.
///
/// Strings are written with `{:?}`, which for `str` (and for a `Vec` of them) is valid Rust
/// literal syntax, with quotes, backslashes and control characters escaped.
fn render_manifest(spec: &OpenAPI, ops: &[SpecOp<'_>]) -> String {
    let mut out = String::from(MANIFEST_PREAMBLE);
    let _ = write!(
        out,
        r#"
/// `info.title` of openapi.yaml.
#[allow(dead_code)]
pub const SPEC_TITLE: &str = {title:?};

/// `info.version` of openapi.yaml.
#[allow(dead_code)]
pub const SPEC_VERSION: &str = {version:?};

/// Every operation of openapi.yaml, sorted by path, then method.
#[allow(dead_code)]
pub static SPEC_OPERATIONS: &[SpecOperation] = &[
"#,
        title = spec.info.title,
        version = spec.info.version,
    );
    for op in ops {
        let _ = write!(
            out,
            r#"    SpecOperation {{
        method: {method:?},
        path: {path:?},
        operation_id: {operation_id:?},
        statuses: &{statuses:?},
        security: &{security:?},
    }},
"#,
            method = op.method,
            path = op.path,
            // Present: `check_operation_ids` has run.
            operation_id = op.op.operation_id.as_deref().unwrap_or_default(),
            statuses = declared_statuses(op.op),
            security = Vec::from_iter(security_names(spec, op.op)),
        );
    }
    out.push_str("];\n");
    out
}

/// The response codes an operation declares (`"4XX"` for a range, `"default"`), sorted.
fn declared_statuses(op: &Operation) -> Vec<String> {
    let mut statuses: Vec<String> = op
        .responses
        .responses
        .keys()
        .map(StatusCode::to_string)
        .collect();
    if op.responses.default.is_some() {
        statuses.push("default".to_owned());
    }
    statuses.sort();
    statuses
}
