//! Compares the OpenAPI document the server serves with the contract, `openapi.yaml`, by
//! meaning rather than by bytes.
//!
//! A text comparison cannot work. utoipa 5 writes OpenAPI 3.1: `type: ["string", "null"]`,
//! `oneOf` with a `null` branch, `security: [{}]`, and it inlines some schemas. The contract is
//! OpenAPI 3.0.3: `nullable: true`, `allOf: [$ref]`, `security: []`, and it reuses components.
//! So both documents are reduced to what a client can observe, and the two reductions are
//! compared. [`contract_diff`] lists what is compared.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Number, Value};

/// Returns one human-readable line per difference between `served` (the server's OpenAPI 3.1
/// document) and `contract` (openapi.yaml as JSON, OpenAPI 3.0); empty means they agree.
///
/// Compared:
/// - the set of operations, as (METHOD, path template);
/// - per operation: `operationId`; the parameters by (name, in), each with `required` and its
///   schema; the request body (presence, `required`, schema of `application/json`); the set
///   of response codes, and per code whether there is JSON content and its schema; the set of
///   accepted security scheme names (absent, `[]` and `[{}]` all mean none, and an operation
///   without `security` inherits the document's);
/// - `components.securitySchemes`: `type`, `scheme`, `bearerFormat`, `in`, `name`.
///
/// Ignored: descriptions, summaries, examples, tags, headers, `info`, `servers`, and
/// components nobody references. Schemas are compared after [`Normalizer`] has reduced them.
///
/// A malformed document gives a line naming the side and the place, never a panic.
pub fn contract_diff(served: &Value, contract: &Value) -> Vec<String> {
    let served = Doc {
        root: served,
        side: "served",
    };
    let contract = Doc {
        root: contract,
        side: "contract",
    };
    let mut out = Vec::new();
    compare_security_schemes(served, contract, &mut out);
    compare_operations(served, contract, &mut out);
    out
}

/// The HTTP methods a path item can hold, as OpenAPI spells them.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A schema that accepts anything: what a JSON body without a `schema` means.
const ANY_SCHEMA: &Value = &Value::Bool(true);

/// Follow at most this many `$ref` hops from one place; more means a loop of references.
const MAX_REF_HOPS: usize = 32;

/// One of the two documents, with the name messages use for it.
#[derive(Clone, Copy)]
struct Doc<'a> {
    root: &'a Value,
    side: &'static str,
}

impl<'a> Doc<'a> {
    /// Follows `$ref`s, also chained ones, within this document.
    fn resolve(self, mut node: &'a Value) -> Result<&'a Value, String> {
        for _ in 0..MAX_REF_HOPS {
            let Some(reference) = node.get("$ref") else {
                return Ok(node);
            };
            node = self.lookup(reference)?;
        }
        Err(format!("more than {MAX_REF_HOPS} chained $refs"))
    }

    /// The value a `$ref` names; only local references (`#/…`) can be followed.
    fn lookup(self, reference: &Value) -> Result<&'a Value, String> {
        let reference = reference
            .as_str()
            .ok_or_else(|| format!("$ref is not a string: {reference}"))?;
        reference
            .strip_prefix('#')
            .and_then(|pointer| self.root.pointer(pointer))
            .ok_or_else(|| format!("$ref {reference:?} does not resolve"))
    }

    /// Resolves `node` to an object, or records why it cannot.
    fn object(
        self,
        node: &'a Value,
        context: &str,
        out: &mut Vec<String>,
    ) -> Option<&'a Map<String, Value>> {
        match self.resolve(node) {
            Ok(Value::Object(map)) => Some(map),
            Ok(other) => {
                self.problem(context, &format!("expected an object, found {other}"), out);
                None
            }
            Err(problem) => {
                self.problem(context, &problem, out);
                None
            }
        }
    }

    /// The canonical form of a schema; problems met on the way become lines of `out`.
    fn schema(self, schema: &'a Value, context: &str, out: &mut Vec<String>) -> Value {
        let mut normalizer = Normalizer {
            root: self.root,
            expanding: Vec::new(),
            problems: Vec::new(),
        };
        let canonical = normalizer.schema(schema, "");
        for problem in normalizer.problems {
            self.problem(context, &problem, out);
        }
        canonical
    }

    fn problem(self, context: &str, problem: &str, out: &mut Vec<String>) {
        out.push(format!("{context}: {} document: {problem}", self.side));
    }
}

// ---------------------------------------------------------------------------------------------
// Security schemes

/// The fields of a security scheme that change what a client must send.
const SCHEME_FIELDS: [&str; 5] = ["type", "scheme", "bearerFormat", "in", "name"];

fn compare_security_schemes(served: Doc<'_>, contract: Doc<'_>, out: &mut Vec<String>) {
    let context = "components.securitySchemes";
    let served_schemes = security_schemes(served, out);
    let contract_schemes = security_schemes(contract, out);
    for name in union(served_schemes.keys(), contract_schemes.keys()) {
        let (Some(s), Some(c)) = (served_schemes.get(name), contract_schemes.get(name)) else {
            let side = if served_schemes.contains_key(name) {
                "served"
            } else {
                "contract"
            };
            out.push(format!("{context}: {name:?} only in {side}"));
            continue;
        };
        let (Some(s), Some(c)) = (
            served.object(s, &format!("{context}.{name}"), out),
            contract.object(c, &format!("{context}.{name}"), out),
        ) else {
            continue;
        };
        for field in SCHEME_FIELDS {
            // RFC 7235: auth scheme names are case-insensitive ("bearer" == "Bearer").
            let fold = |v: Option<&Value>| match (field, v) {
                ("scheme", Some(Value::String(text))) => Some(Value::String(text.to_lowercase())),
                (_, v) => v.cloned(),
            };
            let (sv, cv) = (fold(s.get(field)), fold(c.get(field)));
            if sv != cv {
                out.push(format!(
                    "{context}.{name}.{field}: served {} != contract {}",
                    show(sv.as_ref()),
                    show(cv.as_ref())
                ));
            }
        }
    }
}

fn security_schemes<'a>(doc: Doc<'a>, out: &mut Vec<String>) -> BTreeMap<&'a str, &'a Value> {
    match doc.root.pointer("/components/securitySchemes") {
        None => BTreeMap::new(),
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        Some(other) => {
            doc.problem(
                "components.securitySchemes",
                &format!("expected an object, found {other}"),
                out,
            );
            BTreeMap::new()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operations

/// An operation together with what it inherits from its path item.
struct Operation<'a> {
    doc: Doc<'a>,
    op: &'a Map<String, Value>,
    /// Parameters declared on the path item; they apply to every operation of the path.
    path_parameters: &'a [Value],
}

/// Operations keyed by (path, METHOD), so the output is sorted by path, then method.
type Operations<'a> = BTreeMap<(&'a str, String), Operation<'a>>;

fn compare_operations(served: Doc<'_>, contract: Doc<'_>, out: &mut Vec<String>) {
    let served_ops = operations(served, out);
    let contract_ops = operations(contract, out);
    for key in union(served_ops.keys(), contract_ops.keys()) {
        let label = format!("{} {}", key.1, key.0);
        match (served_ops.get(key), contract_ops.get(key)) {
            (Some(s), Some(c)) => compare_operation(&label, s, c, out),
            (Some(_), None) => out.push(format!("{label}: operation only in served")),
            (None, _) => out.push(format!("{label}: operation only in contract")),
        }
    }
}

fn operations<'a>(doc: Doc<'a>, out: &mut Vec<String>) -> Operations<'a> {
    let mut ops = Operations::new();
    let Some(paths) = doc.root.get("paths").and_then(Value::as_object) else {
        doc.problem("paths", "missing or not an object", out);
        return ops;
    };
    for (path, item) in paths {
        let Some(item) = doc.object(item, path, out) else {
            continue;
        };
        let path_parameters = match item.get("parameters") {
            None => &[][..],
            Some(Value::Array(params)) => params.as_slice(),
            Some(_) => {
                doc.problem(path, "`parameters` is not an array", out);
                &[][..]
            }
        };
        for method in METHODS {
            let Some(op) = item.get(method) else {
                continue;
            };
            let method = method.to_ascii_uppercase();
            let Some(op) = doc.object(op, &format!("{method} {path}"), out) else {
                continue;
            };
            let op = Operation {
                doc,
                op,
                path_parameters,
            };
            ops.insert((path.as_str(), method), op);
        }
    }
    ops
}

fn compare_operation(label: &str, s: &Operation<'_>, c: &Operation<'_>, out: &mut Vec<String>) {
    let (sid, cid) = (s.op.get("operationId"), c.op.get("operationId"));
    if sid != cid {
        out.push(format!(
            "{label}: operationId: served {} != contract {}",
            show(sid),
            show(cid)
        ));
    }
    compare_parameters(label, s, c, out);
    compare_request_bodies(label, s, c, out);
    compare_responses(label, s, c, out);
    compare_security(label, s, c, out);
}

// --- Parameters

fn compare_parameters(label: &str, s: &Operation<'_>, c: &Operation<'_>, out: &mut Vec<String>) {
    let served_params = parameters(label, s, out);
    let contract_params = parameters(label, c, out);
    for key in union(served_params.keys(), contract_params.keys()) {
        let context = format!("{label}: parameter {} ({})", key.1, key.0);
        let (Some(sp), Some(cp)) = (served_params.get(key), contract_params.get(key)) else {
            let side = if served_params.contains_key(key) {
                "served"
            } else {
                "contract"
            };
            out.push(format!("{context}: only in {side}"));
            continue;
        };
        compare_required_flags(&context, sp, cp, out);
        let served_schema = parameter_schema(s.doc, sp, &context, out);
        let contract_schema = parameter_schema(c.doc, cp, &context, out);
        push_schema_diff(&context, &served_schema, &contract_schema, out);
    }
}

/// The canonical schema of a parameter, also of one written with `content` instead of `schema`.
fn parameter_schema<'a>(
    doc: Doc<'a>,
    param: &'a Map<String, Value>,
    context: &str,
    out: &mut Vec<String>,
) -> Value {
    let from_content = || {
        let media_types = param.get("content")?.as_object()?;
        media_types.values().next()?.get("schema")
    };
    let schema = param.get("schema").or_else(from_content);
    doc.schema(schema.unwrap_or(ANY_SCHEMA), context, out)
}

/// Parameters keyed by (in, name); an operation's own parameter overrides the path item's.
fn parameters<'a>(
    label: &str,
    op: &Operation<'a>,
    out: &mut Vec<String>,
) -> BTreeMap<(String, String), &'a Map<String, Value>> {
    let own = match op.op.get("parameters") {
        None => &[][..],
        Some(Value::Array(params)) => params.as_slice(),
        Some(_) => {
            op.doc.problem(label, "`parameters` is not an array", out);
            &[][..]
        }
    };
    let mut params = BTreeMap::new();
    for param in op.path_parameters.iter().chain(own) {
        let Some(param) = op.doc.object(param, &format!("{label}: parameters"), out) else {
            continue;
        };
        let field = |name: &str| param.get(name).and_then(Value::as_str).map(str::to_owned);
        match (field("in"), field("name")) {
            (Some(location), Some(name)) => {
                params.insert((location, name), param);
            }
            _ => op
                .doc
                .problem(label, "a parameter lacks `in` or `name`", out),
        }
    }
    params
}

fn compare_required_flags(
    context: &str,
    served: &Map<String, Value>,
    contract: &Map<String, Value>,
    out: &mut Vec<String>,
) {
    let flag = |m: &Map<String, Value>| m.get("required").and_then(Value::as_bool).unwrap_or(false);
    let (s, c) = (flag(served), flag(contract));
    if s != c {
        out.push(format!(
            "{context}: required flag: served {s} != contract {c}"
        ));
    }
}

// --- Request body

fn compare_request_bodies(
    label: &str,
    s: &Operation<'_>,
    c: &Operation<'_>,
    out: &mut Vec<String>,
) {
    let context = format!("{label}: request body");
    let (served_body, contract_body) = match (s.op.get("requestBody"), c.op.get("requestBody")) {
        (None, None) => return,
        (Some(sb), Some(cb)) => (
            s.doc.object(sb, &context, out),
            c.doc.object(cb, &context, out),
        ),
        (Some(_), None) | (None, Some(_)) => {
            let side = if s.op.contains_key("requestBody") {
                "served"
            } else {
                "contract"
            };
            out.push(format!("{context}: only in {side}"));
            return;
        }
    };
    let (Some(served_body), Some(contract_body)) = (served_body, contract_body) else {
        return;
    };
    compare_required_flags(&context, served_body, contract_body, out);
    compare_json_content(&context, s.doc, served_body, c.doc, contract_body, out);
}

// --- Responses

fn compare_responses(label: &str, s: &Operation<'_>, c: &Operation<'_>, out: &mut Vec<String>) {
    let served_responses = responses(label, s, out);
    let contract_responses = responses(label, c, out);
    let only = |a: &BTreeMap<String, &Value>, b: &BTreeMap<String, &Value>| -> Vec<String> {
        a.keys()
            .filter(|code| !b.contains_key(*code))
            .cloned()
            .collect()
    };
    for (side, codes) in [
        ("served", only(&served_responses, &contract_responses)),
        ("contract", only(&contract_responses, &served_responses)),
    ] {
        if !codes.is_empty() {
            out.push(format!("{label}: responses: only in {side} {codes:?}"));
        }
    }
    for (code, sr) in &served_responses {
        let Some(cr) = contract_responses.get(code) else {
            continue;
        };
        let context = format!("{label}: response {code}");
        if let (Some(sr), Some(cr)) = (
            s.doc.object(sr, &context, out),
            c.doc.object(cr, &context, out),
        ) {
            compare_json_content(&context, s.doc, sr, c.doc, cr, out);
        }
    }
}

/// Responses keyed by status code, with ranges upper-cased ("4xx" and "4XX" are the same).
fn responses<'a>(
    label: &str,
    op: &Operation<'a>,
    out: &mut Vec<String>,
) -> BTreeMap<String, &'a Value> {
    if let Some(Value::Object(map)) = op.op.get("responses") {
        map.iter()
            .map(|(code, r)| (code.to_ascii_uppercase(), r))
            .collect()
    } else {
        op.doc
            .problem(label, "`responses` is missing or not an object", out);
        BTreeMap::new()
    }
}

// --- Content

/// Compares whether both sides have JSON content and, if so, its schema.
fn compare_json_content<'a, 'b>(
    context: &str,
    served: Doc<'a>,
    served_holder: &'a Map<String, Value>,
    contract: Doc<'b>,
    contract_holder: &'b Map<String, Value>,
    out: &mut Vec<String>,
) {
    match (json_schema(served_holder), json_schema(contract_holder)) {
        (None, None) => {}
        (Some(_), None) => out.push(format!("{context}: JSON content only in served")),
        (None, Some(_)) => out.push(format!("{context}: JSON content only in contract")),
        (Some(s), Some(c)) => {
            let s = served.schema(s, context, out);
            let c = contract.schema(c, context, out);
            push_schema_diff(context, &s, &c, out);
        }
    }
}

/// The schema of the `application/json` content of a request body or response, if it has one.
/// JSON content without a schema accepts anything.
fn json_schema(holder: &Map<String, Value>) -> Option<&Value> {
    let content = holder.get("content")?.as_object()?;
    let (_, media) = content.iter().find(|(media_type, _)| {
        let essence = media_type.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/json")
    })?;
    Some(media.get("schema").unwrap_or(ANY_SCHEMA))
}

// --- Security

fn compare_security(label: &str, s: &Operation<'_>, c: &Operation<'_>, out: &mut Vec<String>) {
    let (Some(served), Some(contract)) = (security(label, s, out), security(label, c, out)) else {
        return;
    };
    if served != contract {
        let (served, contract): (Vec<_>, Vec<_>) =
            (served.into_iter().collect(), contract.into_iter().collect());
        out.push(format!(
            "{label}: security: served {served:?} != contract {contract:?}"
        ));
    }
}

/// Names an empty requirement `{}` when it stands next to real ones: then the credential is
/// optional, which differs from requiring it.
const ANONYMOUS: &str = "(anonymous)";

/// The accepted security scheme names of an operation. Absent means "as the document says";
/// `[]` and `[{}]` both mean no credential.
fn security(label: &str, op: &Operation<'_>, out: &mut Vec<String>) -> Option<BTreeSet<String>> {
    let Some(requirements) = op
        .op
        .get("security")
        .or_else(|| op.doc.root.get("security"))
    else {
        return Some(BTreeSet::new());
    };
    let Some(requirements) = requirements.as_array() else {
        op.doc.problem(label, "`security` is not an array", out);
        return None;
    };
    let mut names = BTreeSet::new();
    for requirement in requirements {
        let Some(requirement) = requirement.as_object() else {
            op.doc
                .problem(label, "a security requirement is not an object", out);
            return None;
        };
        if requirement.is_empty() {
            names.insert(ANONYMOUS.to_owned());
        }
        names.extend(requirement.keys().cloned());
    }
    // `[{}]` alone is "no credential", the same as `[]`.
    if names.len() == 1 {
        names.remove(ANONYMOUS);
    }
    Some(names)
}

// ---------------------------------------------------------------------------------------------
// Schema normalization

/// Keywords compared by value after number normalization.
const VALUE_KEYWORDS: [&str; 12] = [
    "format",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "minimum",
    "maximum",
    "default",
];

/// Reduces a schema to a canonical JSON value that holds only what is compared, in one
/// spelling, so that equal meaning gives equal values:
///
/// - `$ref`s are expanded (a `$ref` met again inside its own expansion becomes
///   `{"$recursive": ref}`, the cycle guard);
/// - `type: [T, "null"]` (3.1) becomes `type: T` + `nullable: true` (3.0); `nullable: false`
///   is dropped;
/// - a `null` branch of `oneOf`/`anyOf` becomes `nullable: true`; a single remaining branch,
///   a single `allOf` element and a lone `$ref` are merged with their sibling keywords;
///   remaining `anyOf` is spelled `oneOf`, and alternatives are compared as a multiset;
/// - `enum` is a sorted set (`const` is a one-value `enum`; a `null` member means nullable);
///   `required` is a sorted set, dropped when empty; empty `properties` are dropped;
/// - `additionalProperties` `true` or `{}` is dropped (the default);
/// - 3.0's `exclusiveMinimum: true` + `minimum: n` becomes 3.1's `exclusiveMinimum: n`;
/// - numbers compare numerically (`1` == `1.0`);
/// - everything else (title, description, example(s), deprecated, readOnly, writeOnly,
///   `$schema`, xml, externalDocs, extensions, discriminator) is dropped.
struct Normalizer<'a> {
    root: &'a Value,
    /// The `$ref`s being expanded, innermost last.
    expanding: Vec<&'a str>,
    /// What made a part of the schema unreadable, as "<where>: <what>".
    problems: Vec<String>,
}

impl<'a> Normalizer<'a> {
    fn schema(&mut self, schema: &'a Value, at: &str) -> Value {
        let map = match schema {
            Value::Object(map) => map,
            // 3.1 allows boolean schemas: `true` accepts anything, `false` nothing.
            Value::Bool(true) => return Value::Object(Map::new()),
            Value::Bool(false) => return marker("$never", Value::Bool(true)),
            other => {
                self.problem(at, format!("a schema must be an object, found {other}"));
                return marker("$invalid", other.clone());
            }
        };
        let mut out = Map::new();
        let mut nullable = map
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.types(map, at, &mut out, &mut nullable);
        for keyword in VALUE_KEYWORDS {
            if let Some(value) = map.get(keyword) {
                out.insert(keyword.to_owned(), canonical(value));
            }
        }
        if map.get("uniqueItems") == Some(&Value::Bool(true)) {
            out.insert("uniqueItems".to_owned(), Value::Bool(true));
        }
        exclusive_bounds(map, &mut out);
        self.enumeration(map, at, &mut out, &mut nullable);
        self.object_keywords(map, at, &mut out);
        if let Some(items) = map.get("items") {
            let items = self.schema(items, &join(at, "items"));
            out.insert("items".to_owned(), items);
        }
        if nullable {
            out.insert("nullable".to_owned(), Value::Bool(true));
        }
        Value::Object(self.compositions(map, at, out))
    }

    fn types(
        &mut self,
        map: &Map<String, Value>,
        at: &str,
        out: &mut Map<String, Value>,
        nullable: &mut bool,
    ) {
        let mut types: BTreeSet<&str> = match map.get("type") {
            None => BTreeSet::new(),
            Some(Value::String(single)) => BTreeSet::from([single.as_str()]),
            Some(Value::Array(many)) if many.iter().all(Value::is_string) => {
                many.iter().filter_map(Value::as_str).collect()
            }
            Some(other) => {
                self.problem(
                    at,
                    format!("`type` must be a string or an array of strings, found {other}"),
                );
                BTreeSet::new()
            }
        };
        if types.len() > 1 && types.remove("null") {
            *nullable = true;
        }
        let mut types = types.into_iter().map(|t| Value::String(t.to_owned()));
        match (types.next(), types.len()) {
            (None, _) => {}
            (Some(single), 0) => {
                out.insert("type".to_owned(), single);
            }
            (Some(first), _) => {
                let all = std::iter::once(first).chain(types).collect();
                out.insert("type".to_owned(), Value::Array(all));
            }
        }
    }

    fn enumeration(
        &mut self,
        map: &Map<String, Value>,
        at: &str,
        out: &mut Map<String, Value>,
        nullable: &mut bool,
    ) {
        let values: Vec<&Value> = match (map.get("enum"), map.get("const")) {
            (Some(Value::Array(values)), _) => values.iter().collect(),
            (Some(other), _) => {
                self.problem(at, format!("`enum` must be an array, found {other}"));
                return;
            }
            (None, Some(value)) => vec![value],
            (None, None) => return,
        };
        // Keyed by the canonical text: a sorted set whose members compare numerically.
        let mut set = BTreeMap::new();
        for value in values {
            if value.is_null() {
                *nullable = true;
            } else {
                let value = canonical(value);
                set.insert(value.to_string(), value);
            }
        }
        out.insert("enum".to_owned(), Value::Array(set.into_values().collect()));
    }

    fn object_keywords(
        &mut self,
        map: &'a Map<String, Value>,
        at: &str,
        out: &mut Map<String, Value>,
    ) {
        match map.get("properties") {
            None => {}
            Some(Value::Object(properties)) => {
                let here = join(at, "properties");
                let properties: Map<String, Value> = properties
                    .iter()
                    .map(|(name, schema)| (name.clone(), self.schema(schema, &join(&here, name))))
                    .collect();
                if !properties.is_empty() {
                    out.insert("properties".to_owned(), Value::Object(properties));
                }
            }
            Some(other) => {
                self.problem(at, format!("`properties` must be an object, found {other}"));
            }
        }
        match map.get("required") {
            None => {}
            Some(Value::Array(names)) if names.iter().all(Value::is_string) => {
                let names: BTreeSet<&str> = names.iter().filter_map(Value::as_str).collect();
                if !names.is_empty() {
                    let names = names
                        .into_iter()
                        .map(|n| Value::String(n.to_owned()))
                        .collect();
                    out.insert("required".to_owned(), Value::Array(names));
                }
            }
            Some(other) => self.problem(
                at,
                format!("`required` must be an array of strings, found {other}"),
            ),
        }
        match map.get("additionalProperties") {
            None | Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => {
                out.insert("additionalProperties".to_owned(), Value::Bool(false));
            }
            Some(schema) => {
                let schema = self.schema(schema, &join(at, "additionalProperties"));
                // `{}` accepts anything, the same as the default `true`.
                if schema.as_object().is_none_or(|m| !m.is_empty()) {
                    out.insert("additionalProperties".to_owned(), schema);
                }
            }
        }
    }

    /// Folds `$ref`, `allOf`, `oneOf` and `anyOf` into `own` (the schema's other keywords).
    fn compositions(
        &mut self,
        map: &'a Map<String, Value>,
        at: &str,
        mut own: Map<String, Value>,
    ) -> Map<String, Value> {
        // `$ref` and `allOf` both mean "all of these"; a single one is that schema itself.
        let mut parts = Vec::new();
        if let Some(reference) = map.get("$ref") {
            parts.push(self.reference(reference, at));
        }
        let all_at = join(at, "allOf[]");
        for part in self.list(map, "allOf", at) {
            parts.push(self.schema(part, &all_at));
        }
        if parts.len() == 1 {
            own = merge(parts.remove(0), own);
        } else if !parts.is_empty() {
            parts.sort_by_key(Value::to_string);
            own.insert("allOf".to_owned(), Value::Array(parts));
        }
        // For comparison, anyOf and oneOf are the same: a set of alternatives.
        for keyword in ["oneOf", "anyOf"] {
            let one_at = join(at, "oneOf[]");
            let mut alternatives = Vec::new();
            let mut null_branch = false;
            for alternative in self.list(map, keyword, at) {
                let alternative = self.schema(alternative, &one_at);
                if is_null_only(&alternative) {
                    null_branch = true;
                } else {
                    alternatives.push(alternative);
                }
            }
            if null_branch {
                own.insert("nullable".to_owned(), Value::Bool(true));
            }
            match alternatives.len() {
                0 if null_branch && !own.contains_key("type") => {
                    own.insert("type".to_owned(), Value::String("null".to_owned()));
                }
                0 => {}
                1 => own = merge(alternatives.remove(0), own),
                _ => {
                    alternatives.sort_by_key(Value::to_string);
                    let alternatives = Value::Array(alternatives);
                    if own.contains_key("oneOf") {
                        // Both oneOf and anyOf with several branches: both must hold.
                        let all = own
                            .entry("allOf")
                            .or_insert_with(|| Value::Array(Vec::new()));
                        if let Value::Array(all) = all {
                            all.push(marker("oneOf", alternatives));
                        }
                    } else {
                        own.insert("oneOf".to_owned(), alternatives);
                    }
                }
            }
        }
        own
    }

    /// The members of an array-valued keyword such as `allOf`; empty when absent or malformed.
    fn list(&mut self, map: &'a Map<String, Value>, keyword: &str, at: &str) -> &'a [Value] {
        match map.get(keyword) {
            None => &[],
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.problem(at, format!("`{keyword}` must be an array, found {other}"));
                &[]
            }
        }
    }

    fn reference(&mut self, reference: &'a Value, at: &str) -> Value {
        let Some(name) = reference.as_str() else {
            self.problem(at, format!("$ref is not a string: {reference}"));
            return marker("$invalid", reference.clone());
        };
        if self.expanding.contains(&name) {
            return marker("$recursive", reference.clone());
        }
        let Some(target) = name
            .strip_prefix('#')
            .and_then(|pointer| self.root.pointer(pointer))
        else {
            self.problem(at, format!("$ref {name:?} does not resolve"));
            return marker("$unresolved", reference.clone());
        };
        self.expanding.push(name);
        let expanded = self.schema(target, at);
        self.expanding.pop();
        expanded
    }

    fn problem(&mut self, at: &str, problem: String) {
        self.problems.push(if at.is_empty() {
            problem
        } else {
            format!("{at}: {problem}")
        });
    }
}

/// 3.0's boolean `exclusiveMinimum`/`exclusiveMaximum` turn the plain bound exclusive; 3.1
/// writes the bound itself there. Both become the 3.1 form.
fn exclusive_bounds(map: &Map<String, Value>, out: &mut Map<String, Value>) {
    for (bound, exclusive) in [
        ("minimum", "exclusiveMinimum"),
        ("maximum", "exclusiveMaximum"),
    ] {
        match map.get(exclusive) {
            Some(Value::Bool(true)) => {
                if let Some(value) = out.remove(bound) {
                    out.insert(exclusive.to_owned(), value);
                }
            }
            Some(value @ Value::Number(_)) => {
                out.insert(exclusive.to_owned(), canonical(value));
            }
            _ => {}
        }
    }
}

/// `base` with the sibling keywords of the `$ref`/`allOf`/`oneOf` that produced it laid over it.
fn merge(base: Value, siblings: Map<String, Value>) -> Map<String, Value> {
    let mut merged = match base {
        Value::Object(map) => map,
        other => Map::from_iter([("allOf".to_owned(), Value::Array(vec![other]))]),
    };
    for (key, value) in siblings {
        match (key.as_str(), merged.get_mut(&key), value) {
            // Both lists must hold: their union.
            ("required", Some(Value::Array(names)), Value::Array(more)) => {
                let union: BTreeSet<String> = names
                    .iter()
                    .chain(&more)
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                *names = union.into_iter().map(Value::String).collect();
            }
            ("properties", Some(Value::Object(properties)), Value::Object(more)) => {
                properties.extend(more);
            }
            (_, _, value) => {
                merged.insert(key, value);
            }
        }
    }
    merged
}

fn is_null_only(schema: &Value) -> bool {
    schema.as_object().is_some_and(|map| {
        map.get("type").and_then(Value::as_str) == Some("null")
            && map.keys().all(|k| k == "type" || k == "nullable")
    })
}

/// A one-key object standing for something that is not a plain schema.
fn marker(key: &str, value: Value) -> Value {
    Value::Object(Map::from_iter([(key.to_owned(), value)]))
}

/// `value` with numbers in one spelling (integral floats become integers, so `1.0` == `1`)
/// and object keys sorted.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Number(number) => Value::Number(canonical_number(number)),
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        other => other.clone(),
    }
}

fn canonical_number(number: &Number) -> Number {
    /// Integers up to 2^53 survive a round trip through f64 exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match number.as_f64() {
        Some(float)
            if !number.is_i64()
                && !number.is_u64()
                && float.fract() == 0.0
                && float.abs() <= EXACT =>
        {
            #[expect(clippy::cast_possible_truncation, reason = "integral and within 2^53")]
            let integer = float as i64;
            Number::from(integer)
        }
        _ => number.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Schema comparison

/// Pushes one line per difference between two canonical schemas, prefixed with `context`.
fn push_schema_diff(context: &str, served: &Value, contract: &Value, out: &mut Vec<String>) {
    let mut lines = Vec::new();
    diff_schemas("", served, contract, &mut lines);
    out.extend(lines.into_iter().map(|line| format!("{context}: {line}")));
}

/// Differences between two canonical schemas, each "<keyword path>: <what differs>".
fn diff_schemas(at: &str, served: &Value, contract: &Value, out: &mut Vec<String>) {
    // A schema that could not be read (already reported) is shown whole rather than taken apart.
    let unreadable =
        |m: &Map<String, Value>| m.contains_key("$unresolved") || m.contains_key("$invalid");
    let (Some(s), Some(c)) = (served.as_object(), contract.as_object()) else {
        if served != contract {
            out.push(format!(
                "{}served {served} != contract {contract}",
                prefix(at)
            ));
        }
        return;
    };
    if unreadable(s) || unreadable(c) {
        out.push(format!(
            "{}served {served} != contract {contract}",
            prefix(at)
        ));
        return;
    }
    for key in union(s.keys(), c.keys()) {
        let (sv, cv) = (s.get(key), c.get(key));
        if sv == cv {
            continue;
        }
        let here = join(at, key);
        match (key.as_str(), sv, cv) {
            ("properties", _, _) => diff_properties(&here, sv, cv, out),
            (
                "items" | "additionalProperties",
                Some(sv @ Value::Object(_)),
                Some(cv @ Value::Object(_)),
            ) => {
                diff_schemas(&here, sv, cv, out);
            }
            ("oneOf" | "allOf", Some(Value::Array(sv)), Some(Value::Array(cv))) => {
                diff_alternatives(&here, sv, cv, out);
            }
            _ => out.push(format!(
                "{here}: served {} != contract {}",
                show_keyword(key, sv),
                show_keyword(key, cv)
            )),
        }
    }
}

fn diff_properties(
    at: &str,
    served: Option<&Value>,
    contract: Option<&Value>,
    out: &mut Vec<String>,
) {
    let empty = Map::new();
    let s = served.and_then(Value::as_object).unwrap_or(&empty);
    let c = contract.and_then(Value::as_object).unwrap_or(&empty);
    let only = |a: &Map<String, Value>, b: &Map<String, Value>| -> Vec<String> {
        a.keys()
            .filter(|name| !b.contains_key(*name))
            .cloned()
            .collect()
    };
    for (side, names) in [("served", only(s, c)), ("contract", only(c, s))] {
        if !names.is_empty() {
            out.push(format!("{at}: only in {side} {names:?}"));
        }
    }
    for (name, schema) in s {
        if let Some(other) = c.get(name) {
            diff_schemas(&join(at, name), schema, other, out);
        }
    }
}

/// Compares alternatives as multisets: equal members cancel out; if one member is left on
/// each side they are compared in depth, otherwise the leftovers are listed.
fn diff_alternatives(at: &str, served: &[Value], contract: &[Value], out: &mut Vec<String>) {
    let mut contract_left: Vec<&Value> = contract.iter().collect();
    let mut served_left = Vec::new();
    for alternative in served {
        match contract_left.iter().position(|c| *c == alternative) {
            Some(index) => {
                contract_left.remove(index);
            }
            None => served_left.push(alternative),
        }
    }
    if let ([s], [c]) = (served_left.as_slice(), contract_left.as_slice()) {
        return diff_schemas(&format!("{at}[]"), s, c, out);
    }
    for (side, left) in [("served", served_left), ("contract", contract_left)] {
        for alternative in left {
            out.push(format!("{at}: only in {side} {alternative}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// The sorted, de-duplicated union of two key sets.
fn union<'k, K: Ord + 'k>(
    a: impl Iterator<Item = &'k K>,
    b: impl Iterator<Item = &'k K>,
) -> BTreeSet<&'k K> {
    a.chain(b).collect()
}

/// A dotted keyword path: `join("properties", "name")` is `properties.name`.
fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn prefix(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!("{at}: ")
    }
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "absent".to_owned(), Value::to_string)
}

/// Like [`show`], but an absent keyword is shown as its default where it has one.
fn show_keyword(key: &str, value: Option<&Value>) -> String {
    match (key, value) {
        ("nullable", None) => "false".to_owned(),
        ("required", None) => "[]".to_owned(),
        ("additionalProperties", None) => "true".to_owned(),
        (_, value) => show(value),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::contract_diff;

    /// A document with one operation, `GET /x`, answering 200 with `schema`.
    fn returning(schema: Value, schemas: Value) -> Value {
        with_operation(
            json!({
                "operationId": "x",
                "responses": {"200": {"description": "", "content": {"application/json": {"schema": schema}}}}
            }),
            schemas,
        )
    }

    fn with_operation(operation: Value, schemas: Value) -> Value {
        json!({
            "openapi": "3.0.3",
            "paths": {"/x": {"get": operation}},
            "components": {"schemas": schemas},
        })
    }

    fn no_schemas() -> Value {
        json!({})
    }

    #[test]
    fn identical_documents_have_no_differences() {
        let doc = returning(json!({"type": "string"}), no_schemas());
        assert_eq!(contract_diff(&doc, &doc), Vec::<String>::new());
    }

    #[test]
    fn nullable_has_three_equivalent_spellings() {
        let contract = returning(
            json!({"type": "string", "nullable": true, "maxLength": 5}),
            no_schemas(),
        );
        for served in [
            json!({"type": ["string", "null"], "maxLength": 5}),
            json!({"oneOf": [{"type": "null"}, {"type": "string", "maxLength": 5}]}),
            json!({"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]}),
        ] {
            let served = returning(served, no_schemas());
            assert_eq!(contract_diff(&served, &contract), Vec::<String>::new());
        }
        let not_nullable = returning(json!({"type": "string", "maxLength": 5}), no_schemas());
        assert_eq!(
            contract_diff(&not_nullable, &contract),
            ["GET /x: response 200: nullable: served false != contract true"]
        );
    }

    #[test]
    fn nullable_reference_is_all_of_in_the_contract_and_one_of_when_served() {
        let schemas =
            json!({"Thing": {"type": "object", "properties": {"id": {"type": "integer"}}}});
        let contract = returning(
            json!({"allOf": [{"$ref": "#/components/schemas/Thing"}], "nullable": true}),
            schemas.clone(),
        );
        let served = returning(
            json!({"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Thing"}]}),
            schemas,
        );
        assert_eq!(contract_diff(&served, &contract), Vec::<String>::new());
    }

    #[test]
    fn missing_required_property_is_reported() {
        let schema = |required: Value| {
            let schemas = json!({"Login": {
                "type": "object",
                "properties": {"email": {"type": "string"}, "password": {"type": "string"}},
                "required": required,
            }});
            returning(json!({"$ref": "#/components/schemas/Login"}), schemas)
        };
        let served = schema(json!(["email"]));
        let contract = schema(json!(["password", "email"]));
        assert_eq!(
            contract_diff(&served, &contract),
            [
                r#"GET /x: response 200: required: served ["email"] != contract ["email","password"]"#
            ]
        );
    }

    #[test]
    fn missing_property_and_changed_enum_are_reported_with_their_path() {
        let served = returning(
            json!({"type": "object", "properties": {"token_type": {"type": "string", "enum": ["bearer"]}}}),
            no_schemas(),
        );
        let contract = returning(
            json!({"type": "object", "properties": {
                "token_type": {"type": "string", "enum": ["Bearer"]},
                "expires_in": {"type": "integer"},
            }}),
            no_schemas(),
        );
        assert_eq!(
            contract_diff(&served, &contract),
            [
                r#"GET /x: response 200: properties: only in contract ["expires_in"]"#,
                r#"GET /x: response 200: properties.token_type.enum: served ["bearer"] != contract ["Bearer"]"#,
            ]
        );
    }

    #[test]
    fn extra_status_code_is_reported() {
        let ok = json!({"description": "", "content": {"application/json": {"schema": {"type": "string"}}}});
        let error = json!({"description": "", "content": {"application/json": {"schema": {"type": "object"}}}});
        let contract = with_operation(
            json!({"operationId": "x", "responses": {"200": ok}}),
            no_schemas(),
        );
        let served = with_operation(
            json!({"operationId": "x", "responses": {"200": ok, "400": error}}),
            no_schemas(),
        );
        assert_eq!(
            contract_diff(&served, &contract),
            [r#"GET /x: responses: only in served ["400"]"#]
        );
    }

    #[test]
    fn changed_pattern_is_reported() {
        let body = |pattern: &str| {
            with_operation(
                json!({
                    "operationId": "x",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {"private_key": {"type": "string", "pattern": pattern}},
                    }}}},
                    "responses": {"204": {"description": ""}},
                }),
                no_schemas(),
            )
        };
        let served = body("^0x[0-9a-f]{64}$");
        let contract = body("^0x[0-9a-fA-F]{64}$");
        assert_eq!(
            contract_diff(&served, &contract),
            [
                r#"GET /x: request body: properties.private_key.pattern: served "^0x[0-9a-f]{64}$" != contract "^0x[0-9a-fA-F]{64}$""#
            ]
        );
    }

    #[test]
    fn reference_equals_identical_inline_schema() {
        let thing = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["id"],
            "properties": {"id": {"type": "integer", "format": "int64", "minimum": 1}},
        });
        let served = returning(thing.clone(), no_schemas());
        let contract = returning(
            json!({"$ref": "#/components/schemas/Thing"}),
            json!({"Thing": thing}),
        );
        assert_eq!(contract_diff(&served, &contract), Vec::<String>::new());
    }

    #[test]
    fn security_spellings_are_equivalent() {
        let operation = |security: Option<Value>| {
            let mut op = json!({"operationId": "x", "responses": {"204": {"description": ""}}});
            if let (Some(security), Some(op)) = (security, op.as_object_mut()) {
                op.insert("security".to_owned(), security);
            }
            with_operation(op, no_schemas())
        };
        let contract = operation(Some(json!([])));
        for served in [None, Some(json!([])), Some(json!([{}]))] {
            let served = operation(served);
            assert_eq!(contract_diff(&served, &contract), Vec::<String>::new());
        }
        let bearer = operation(Some(json!([{"BearerAuth": []}])));
        assert_eq!(
            contract_diff(&bearer, &contract),
            [r#"GET /x: security: served ["BearerAuth"] != contract []"#]
        );
        let optional = operation(Some(json!([{}, {"BearerAuth": []}])));
        assert_eq!(contract_diff(&optional, &bearer).len(), 1);
    }

    #[test]
    fn numbers_compare_numerically_and_exclusive_bounds_are_translated() {
        let contract = returning(
            json!({"type": "integer", "minimum": 1, "maximum": 100, "exclusiveMaximum": true}),
            no_schemas(),
        );
        let served = returning(
            json!({"type": "integer", "minimum": 1.0, "exclusiveMaximum": 100}),
            no_schemas(),
        );
        assert_eq!(contract_diff(&served, &contract), Vec::<String>::new());
    }

    #[test]
    fn malformed_documents_give_lines_not_panics() {
        let contract = returning(json!({"type": "string"}), no_schemas());
        let dangling = returning(
            json!({"$ref": "#/components/schemas/Missing"}),
            no_schemas(),
        );
        assert_eq!(
            contract_diff(&dangling, &contract),
            [
                r##"GET /x: response 200: served document: $ref "#/components/schemas/Missing" does not resolve"##,
                r##"GET /x: response 200: served {"$unresolved":"#/components/schemas/Missing"} != contract {"type":"string"}"##,
            ]
        );
        let no_paths = json!({"paths": []});
        assert_eq!(
            contract_diff(&no_paths, &contract),
            [
                "paths: served document: missing or not an object",
                "GET /x: operation only in contract",
            ]
        );
        let bad_responses =
            with_operation(json!({"operationId": "x", "responses": 5}), no_schemas());
        assert_eq!(
            contract_diff(&bad_responses, &contract),
            [
                "GET /x: served document: `responses` is missing or not an object",
                r#"GET /x: responses: only in contract ["200"]"#,
            ]
        );
    }

    #[test]
    fn recursive_schemas_terminate() {
        let schemas = json!({"Node": {"type": "object", "properties": {
            "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
        }}});
        let doc = returning(json!({"$ref": "#/components/schemas/Node"}), schemas);
        assert_eq!(contract_diff(&doc, &doc), Vec::<String>::new());
    }

    #[test]
    fn security_scheme_fields_are_compared() {
        let with_scheme = |scheme: Value| json!({"paths": {}, "components": {"securitySchemes": {"BearerAuth": scheme}}});
        let contract =
            with_scheme(json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}));
        let same = with_scheme(
            json!({"type": "http", "scheme": "Bearer", "bearerFormat": "JWT", "description": "x"}),
        );
        assert_eq!(contract_diff(&same, &contract), Vec::<String>::new());
        let other = with_scheme(json!({"type": "http", "scheme": "bearer"}));
        assert_eq!(
            contract_diff(&other, &contract),
            [
                r#"components.securitySchemes.BearerAuth.bearerFormat: served absent != contract "JWT""#
            ]
        );
    }
}
