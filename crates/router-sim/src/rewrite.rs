//! What the provider receives: a chat body after the node decoded it into go-openai v1.41.2's
//! `ChatCompletionRequest` and encoded it again (reference §2.5).
//!
//! The node binds the body into `OpenAICompletionRequestExtra`
//! (`chatstorage/genericchatstorage/chat_completion.go:11-48`): the known fields go through
//! go-openai's types (`chat.go@v1.41.2:91-344`, `jsonschema/json.go@v1.41.2:28-66`), unknown
//! top-level keys are kept verbatim as `Extra`. Consequences modelled here:
//!
//! - a value of the wrong type is a 400 with Go's `encoding/json` text, e.g. `"stop":"x"` →
//!   `json: cannot unmarshal string into Go struct field base.stop of type []string`;
//! - `omitempty` drops zero values (`temperature: 0`, `n: 0`, `max_tokens: 0`, `""`, `[]`);
//! - nested unknown keys vanish: content parts keep `type`, `text` and `image_url` only (so
//!   `input_audio` and `file` lose their payload), messages and tools keep their declared fields,
//!   response-format schemas keep what `jsonschema.Definition` knows (no `anyOf`, `minimum`…);
//! - `interface{}` values (`tool_choice`, tool `parameters`…) come back with Go's float64 numbers.
//!
//! A struct is described once as data ([`Ty`]); one decoder walks a value against it the way
//! Go's decoder does and produces the re-encoded value.

use serde_json::{Map, Value};

use crate::gojson::through_interface;

/// A Go type as far as decoding and `omitempty` care.
enum Ty {
    /// A string kind, with its Go type name (`string`, `openai.ToolType`…).
    Str(&'static str),
    Int,
    F32,
    F64,
    Bool,
    /// `interface{}`: anything, re-encoded with sorted keys and float64 numbers.
    Any,
    Slice(&'static Ty, &'static str),
    Map(&'static Ty, &'static str),
    Ptr(&'static Ty),
    Struct(&'static StructTy),
    /// `ChatCompletionMessage`, with its own `UnmarshalJSON`/`MarshalJSON` (`chat.go:124-190`).
    Message,
    /// `ChatCompletionResponseFormatJSONSchema`, with its own `UnmarshalJSON` (`chat.go:226-249`).
    JsonSchema,
    /// `jsonschema.Definition`; `forced` when encoded through its pointer `MarshalJSON`, which
    /// writes `properties` even when empty (`jsonschema/json.go:58-66`).
    Definition {
        forced: bool,
    },
}

pub(crate) struct StructTy {
    /// `reflect.Type.Name()`, what Go's errors name as the struct.
    name: &'static str,
    /// `reflect.Type.String()`, what they name as the type.
    go_type: &'static str,
    fields: &'static [Field],
}

struct Field {
    key: &'static str,
    ty: Ty,
    omitempty: bool,
}

const fn f(key: &'static str, ty: Ty) -> Field {
    Field {
        key,
        ty,
        omitempty: true,
    }
}

const fn always(key: &'static str, ty: Ty) -> Field {
    Field {
        key,
        ty,
        omitempty: false,
    }
}

const STRING: Ty = Ty::Str("string");

static FUNCTION_CALL: StructTy = StructTy {
    name: "FunctionCall",
    go_type: "openai.FunctionCall",
    fields: &[f("name", STRING), f("arguments", STRING)],
};
static FUNCTION_CALL_TY: Ty = Ty::Struct(&FUNCTION_CALL);
static INT: Ty = Ty::Int;

static TOOL_CALL: StructTy = StructTy {
    name: "ToolCall",
    go_type: "openai.ToolCall",
    fields: &[
        f("index", Ty::Ptr(&INT)),
        f("id", STRING),
        always("type", Ty::Str("openai.ToolType")),
        always("function", Ty::Struct(&FUNCTION_CALL)),
    ],
};
static TOOL_CALL_TY: Ty = Ty::Struct(&TOOL_CALL);

static IMAGE_URL: StructTy = StructTy {
    name: "ChatMessageImageURL",
    go_type: "openai.ChatMessageImageURL",
    fields: &[
        f("url", STRING),
        f("detail", Ty::Str("openai.ImageURLDetail")),
    ],
};
static IMAGE_URL_TY: Ty = Ty::Struct(&IMAGE_URL);

static PART: StructTy = StructTy {
    name: "ChatMessagePart",
    go_type: "openai.ChatMessagePart",
    fields: &[
        f("type", Ty::Str("openai.ChatMessagePartType")),
        f("text", STRING),
        f("image_url", Ty::Ptr(&IMAGE_URL_TY)),
    ],
};
static PART_TY: Ty = Ty::Struct(&PART);

/// The message fields besides `content`, shared by both of `UnmarshalJSON`'s attempts.
macro_rules! message_struct {
    ($content:expr) => {
        StructTy {
            name: "",
            go_type: "openai.ChatCompletionMessage",
            fields: &[
                always("role", STRING),
                $content,
                f("refusal", STRING),
                f("name", STRING),
                f("reasoning_content", STRING),
                f("function_call", Ty::Ptr(&FUNCTION_CALL_TY)),
                f("tool_calls", Ty::Slice(&TOOL_CALL_TY, "[]openai.ToolCall")),
                f("tool_call_id", STRING),
            ],
        }
    };
}

/// First attempt: `content` as a string (`chat.go:158-173`).
static MESSAGE_TEXT: StructTy = message_struct!(f("content", STRING));
/// Second attempt: `content` as parts (`chat.go:174-189`).
static MESSAGE_PARTS: StructTy = message_struct!(f(
    "content",
    Ty::Slice(&PART_TY, "[]openai.ChatMessagePart")
));

static ANY: Ty = Ty::Any;
static FUNCTION_DEFINITION: StructTy = StructTy {
    name: "FunctionDefinition",
    go_type: "openai.FunctionDefinition",
    fields: &[
        always("name", STRING),
        f("description", STRING),
        f("strict", Ty::Bool),
        always("parameters", Ty::Any),
    ],
};
static FUNCTION_DEFINITION_TY: Ty = Ty::Struct(&FUNCTION_DEFINITION);

static TOOL: StructTy = StructTy {
    name: "Tool",
    go_type: "openai.Tool",
    fields: &[
        always("type", Ty::Str("openai.ToolType")),
        f("function", Ty::Ptr(&FUNCTION_DEFINITION_TY)),
    ],
};
static TOOL_TY: Ty = Ty::Struct(&TOOL);

static DEFINITION_FIELDS: &[Field] = &[
    f("type", Ty::Str("jsonschema.DataType")),
    f("description", STRING),
    f("enum", Ty::Slice(&STRING, "[]string")),
    f(
        "properties",
        Ty::Map(&DEFINITION_IN_MAP, "map[string]jsonschema.Definition"),
    ),
    f("required", Ty::Slice(&STRING, "[]string")),
    f("items", Ty::Ptr(&DEFINITION_BY_POINTER)),
    f("additionalProperties", Ty::Any),
    f("nullable", Ty::Bool),
    f("$ref", STRING),
    f(
        "$defs",
        Ty::Map(&DEFINITION_IN_MAP, "map[string]jsonschema.Definition"),
    ),
];
static DEFINITION: StructTy = StructTy {
    name: "Definition",
    go_type: "jsonschema.Definition",
    fields: DEFINITION_FIELDS,
};
static DEFINITION_IN_MAP: Ty = Ty::Definition { forced: false };
static DEFINITION_BY_POINTER: Ty = Ty::Definition { forced: true };

/// `rawJSONSchema` (`chat.go:227-232`): `schema` is decoded apart, as a `Definition`.
static RAW_JSON_SCHEMA: StructTy = StructTy {
    name: "rawJSONSchema",
    go_type: "openai.rawJSONSchema",
    fields: &[
        always("name", STRING),
        f("description", STRING),
        always("strict", Ty::Bool),
    ],
};

static RESPONSE_FORMAT: StructTy = StructTy {
    name: "ChatCompletionResponseFormat",
    go_type: "openai.ChatCompletionResponseFormat",
    fields: &[
        f("type", Ty::Str("openai.ChatCompletionResponseFormatType")),
        f("json_schema", Ty::JsonSchema),
    ],
};
static RESPONSE_FORMAT_TY: Ty = Ty::Struct(&RESPONSE_FORMAT);

static STREAM_OPTIONS: StructTy = StructTy {
    name: "StreamOptions",
    go_type: "openai.StreamOptions",
    fields: &[f("include_usage", Ty::Bool)],
};
static STREAM_OPTIONS_TY: Ty = Ty::Struct(&STREAM_OPTIONS);

static PREDICTION: StructTy = StructTy {
    name: "Prediction",
    go_type: "openai.Prediction",
    fields: &[always("content", STRING), always("type", STRING)],
};
static PREDICTION_TY: Ty = Ty::Struct(&PREDICTION);
static MESSAGE: Ty = Ty::Message;

/// `ChatCompletionRequest` (`chat.go:263-336`), named `base` by the node's `UnmarshalJSON`.
static REQUEST: StructTy = StructTy {
    name: "base",
    go_type: "genericchatstorage.base",
    fields: &[
        always("model", STRING),
        always(
            "messages",
            Ty::Slice(&MESSAGE, "[]openai.ChatCompletionMessage"),
        ),
        f("max_tokens", Ty::Int),
        f("max_completion_tokens", Ty::Int),
        f("temperature", Ty::F32),
        f("top_p", Ty::F32),
        f("n", Ty::Int),
        f("stream", Ty::Bool),
        f("stop", Ty::Slice(&STRING, "[]string")),
        f("presence_penalty", Ty::F32),
        f("response_format", Ty::Ptr(&RESPONSE_FORMAT_TY)),
        f("seed", Ty::Ptr(&INT)),
        f("frequency_penalty", Ty::F32),
        f("logit_bias", Ty::Map(&INT, "map[string]int")),
        f("logprobs", Ty::Bool),
        f("top_logprobs", Ty::Int),
        f("user", STRING),
        f(
            "functions",
            Ty::Slice(&FUNCTION_DEFINITION_TY, "[]openai.FunctionDefinition"),
        ),
        f("function_call", Ty::Any),
        f("tools", Ty::Slice(&TOOL_TY, "[]openai.Tool")),
        f("tool_choice", Ty::Any),
        f("stream_options", Ty::Ptr(&STREAM_OPTIONS_TY)),
        f("parallel_tool_calls", Ty::Any),
        f("store", Ty::Bool),
        f("reasoning_effort", STRING),
        f("metadata", Ty::Map(&STRING, "map[string]string")),
        f("prediction", Ty::Ptr(&PREDICTION_TY)),
        f(
            "chat_template_kwargs",
            Ty::Map(&ANY, "map[string]interface {}"),
        ),
        f("service_tier", Ty::Str("openai.ServiceTier")),
        f("verbosity", STRING),
        f("safety_identifier", STRING),
        // Embedded `ChatCompletionRequestExtensions`; having no JSON tag of its own it is not
        // stripped from `Extra` (`lib/json.go:55-66`), so the raw value wins on encoding.
        f("guided_choice", Ty::Slice(&STRING, "[]string")),
    ],
};

/// A chat body as the provider receives it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Forwarded {
    pub body: Value,
    /// JSON paths (`messages[0].content[1].input_audio`) of values the rewrite dropped that mean
    /// something else when absent; `null`, `false`, `""`, `[]` and `{}` are not counted.
    pub dropped: Vec<String>,
}

/// Decodes `raw` as the node does; `Err` is the 400 text. The caller puts the provider's model
/// name in `model` (`aiengine/openai.go:58`).
pub(crate) fn rewrite(raw: &[u8]) -> Result<Forwarded, String> {
    let input: Value = serde_json::from_slice(raw).map_err(|e| syntax_error(raw, &e))?;
    let fields = match &input {
        Value::Object(map) => map.clone(),
        // A JSON null decodes into the zero struct.
        Value::Null => Map::new(),
        other => {
            return Err(TypeErr::new(kind(other), "", &[], REQUEST.go_type).render());
        }
    };
    let out =
        decode_struct(&REQUEST, &fields, &mut Ctx::new(REQUEST.name)).map_err(|e| e.render())?;
    let Value::Object(mut body) = out else {
        unreachable!("a struct encodes as an object")
    };
    for (key, value) in fields {
        if !REQUEST.fields.iter().any(|f| f.key == key) || key == "guided_choice" {
            body.insert(key, value);
        }
    }
    let body = Value::Object(body);
    let mut dropped = Vec::new();
    diff(&input, &body, &mut String::new(), &mut dropped);
    Ok(Forwarded { body, dropped })
}

/// go-openai v1.41.2 `EmbeddingRequest` (`embeddings.go@v1.41.2:156-167`), named `base` by the
/// node's wrapper (`chatstorage/genericchatstorage/embeddings.go:19-34`).
pub(crate) static EMBEDDING_REQUEST: StructTy = StructTy {
    name: "base",
    go_type: "genericchatstorage.base",
    fields: &[
        always("input", Ty::Any),
        always("model", Ty::Str("openai.EmbeddingModel")),
        f("user", STRING),
        f("encoding_format", Ty::Str("openai.EmbeddingEncodingFormat")),
        f("dimensions", Ty::Int),
        f("extra_body", Ty::Map(&ANY, "map[string]interface {}")),
    ],
};

/// go-openai v1.41.2 `CreateSpeechRequest` (`speech.go@v1.41.2`), named `base` by the node's
/// wrapper (`chatstorage/genericchatstorage/audio_speech.go:16-31`).
pub(crate) static SPEECH_REQUEST: StructTy = StructTy {
    name: "base",
    go_type: "genericchatstorage.base",
    fields: &[
        always("model", Ty::Str("openai.SpeechModel")),
        always("input", STRING),
        always("voice", Ty::Str("openai.SpeechVoice")),
        f("instructions", STRING),
        f("response_format", Ty::Str("openai.SpeechResponseFormat")),
        f("speed", Ty::F64),
    ],
};

/// Decodes `raw` into one of the node's request wrappers (a go-openai struct plus the unknown
/// top-level keys kept verbatim) and encodes it again; `Err` is the 400 text.
pub(crate) fn decode_wrapped(ty: &'static StructTy, raw: &[u8]) -> Result<Value, String> {
    let input: Value = serde_json::from_slice(raw).map_err(|e| syntax_error(raw, &e))?;
    let fields = match &input {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => return Err(TypeErr::new(kind(other), "", &[], ty.go_type).render()),
    };
    let out = decode_struct(ty, &fields, &mut Ctx::new(ty.name)).map_err(|e| e.render())?;
    let Value::Object(mut body) = out else {
        unreachable!("a struct encodes as an object")
    };
    for (key, value) in fields {
        if !ty.fields.iter().any(|f| f.key == key) {
            body.insert(key, value);
        }
    }
    Ok(Value::Object(body))
}

/// Go's `*json.SyntaxError` texts for the usual cases (`encoding/json/scanner.go`).
fn syntax_error(raw: &[u8], e: &serde_json::Error) -> String {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return "EOF".to_owned();
    }
    if e.is_eof() {
        return "unexpected EOF".to_owned();
    }
    // serde_json counts columns in bytes from 1.
    let line_start = raw
        .split(|b| *b == b'\n')
        .take(e.line().saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum::<usize>();
    let at = line_start + e.column().saturating_sub(1);
    match raw.get(at) {
        Some(b) if b.is_ascii_graphic() => {
            format!(
                "invalid character '{}' looking for beginning of value",
                *b as char
            )
        }
        _ => "invalid character looking for beginning of value".to_owned(),
    }
}

/// Where the decoder is, for its error texts (`encoding/json` `errorContext`).
struct Ctx {
    struct_name: &'static str,
    path: Vec<&'static str>,
}

impl Ctx {
    fn new(struct_name: &'static str) -> Self {
        Self {
            struct_name,
            path: Vec::new(),
        }
    }
}

/// Go's `*json.UnmarshalTypeError`.
struct TypeErr {
    value: String,
    struct_name: String,
    field: String,
    go_type: &'static str,
}

impl TypeErr {
    fn new(value: String, struct_name: &str, path: &[&str], go_type: &'static str) -> Self {
        Self {
            value,
            struct_name: struct_name.to_owned(),
            field: path.join("."),
            go_type,
        }
    }

    fn at(ctx: &Ctx, value: String, go_type: &'static str) -> Self {
        Self::new(value, ctx.struct_name, &ctx.path, go_type)
    }

    /// What the outer decoder's `addErrorContext` makes of an error returned by a type's own
    /// `UnmarshalJSON`: the outer struct, the outer path in front.
    fn seen_from_outside(mut self, outer: &Ctx) -> Self {
        if outer.struct_name.is_empty() && outer.path.is_empty() {
            return self;
        }
        self.struct_name = outer.struct_name.to_owned();
        let mut field = outer.path.join(".");
        if !self.field.is_empty() {
            field.push('.');
            field.push_str(&self.field);
        }
        self.field = field;
        self
    }

    fn render(&self) -> String {
        if self.struct_name.is_empty() && self.field.is_empty() {
            format!(
                "json: cannot unmarshal {} into Go value of type {}",
                self.value, self.go_type
            )
        } else {
            format!(
                "json: cannot unmarshal {} into Go struct field {}.{} of type {}",
                self.value, self.struct_name, self.field, self.go_type
            )
        }
    }
}

/// The `Value` of an `UnmarshalTypeError`: the JSON kind.
fn kind(v: &Value) -> String {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
    .to_owned()
}

/// A decoded-and-encoded value and whether Go's `omitempty` counts it as empty.
struct Out {
    value: Value,
    empty: bool,
}

impl Out {
    fn new(value: Value, empty: bool) -> Self {
        Self { value, empty }
    }

    /// A nil pointer, slice, map or interface: omitted, or `null`.
    fn nil() -> Self {
        Self::new(Value::Null, true)
    }
}

fn go_name(ty: &Ty) -> &'static str {
    match ty {
        Ty::Str(name) => name,
        Ty::Int => "int",
        Ty::F32 => "float32",
        Ty::F64 => "float64",
        Ty::Bool => "bool",
        Ty::Any => "interface {}",
        Ty::Slice(_, name) | Ty::Map(_, name) => name,
        Ty::Ptr(inner) => go_name(inner),
        Ty::Struct(s) => s.go_type,
        Ty::Message => "openai.ChatCompletionMessage",
        Ty::JsonSchema => "openai.ChatCompletionResponseFormatJSONSchema",
        Ty::Definition { .. } => DEFINITION.go_type,
    }
}

fn decode(ty: &Ty, v: &Value, ctx: &mut Ctx) -> Result<Out, TypeErr> {
    // JSON null leaves the zero value, whatever the type.
    if v.is_null() {
        return Ok(zero(ty));
    }
    let mismatch = |ctx: &Ctx| TypeErr::at(ctx, kind(v), go_name(ty));
    match (ty, v) {
        (Ty::Str(_), Value::String(s)) => Ok(Out::new(v.clone(), s.is_empty())),
        (Ty::Int, Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Out::new(Value::from(i), i == 0)),
            None => Err(TypeErr::at(ctx, format!("number {n}"), "int")),
        },
        (Ty::F32, Value::Number(n)) => f32_value(n)
            .map(|(value, empty)| Out::new(value, empty))
            .ok_or_else(|| TypeErr::at(ctx, format!("number {n}"), "float32")),
        (Ty::F64, Value::Number(n)) => n
            .as_f64()
            .map(|f| Out::new(through_interface(v.clone()), f == 0.0))
            .ok_or_else(|| TypeErr::at(ctx, format!("number {n}"), "float64")),
        (Ty::Bool, Value::Bool(b)) => Ok(Out::new(v.clone(), !b)),
        (Ty::Any, _) => Ok(Out::new(through_interface(v.clone()), false)),
        (Ty::Slice(elem, _), Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(decode(elem, item, ctx)?.value);
            }
            let empty = out.is_empty();
            Ok(Out::new(Value::Array(out), empty))
        }
        (Ty::Map(elem, _), Value::Object(entries)) => {
            let mut out = Map::new();
            for (k, item) in entries {
                out.insert(k.clone(), decode(elem, item, ctx)?.value);
            }
            let empty = out.is_empty();
            Ok(Out::new(Value::Object(out), empty))
        }
        // A non-nil pointer is never empty, whatever it points to.
        (Ty::Ptr(inner), _) => decode(inner, v, ctx).map(|o| Out::new(o.value, false)),
        (Ty::Struct(s), Value::Object(entries)) => {
            let saved = std::mem::replace(&mut ctx.struct_name, s.name);
            let out = decode_struct(s, entries, ctx);
            ctx.struct_name = saved;
            out.map(|value| Out::new(value, false))
        }
        (Ty::Message, _) => decode_message(v).map_err(|e| e.seen_from_outside(ctx)),
        (Ty::JsonSchema, _) => decode_json_schema(v)
            .map(|value| Out::new(value, false))
            .map_err(|e| e.seen_from_outside(ctx)),
        (Ty::Definition { forced }, Value::Object(entries)) => {
            let saved = std::mem::replace(&mut ctx.struct_name, DEFINITION.name);
            let out = decode_struct(&DEFINITION, entries, ctx);
            ctx.struct_name = saved;
            let mut value = out?;
            if *forced && let Value::Object(map) = &mut value {
                map.entry("properties")
                    .or_insert_with(|| Value::Object(Map::new()));
            }
            Ok(Out::new(value, false))
        }
        _ => Err(mismatch(ctx)),
    }
}

/// The zero value of a type, as encoded.
fn zero(ty: &Ty) -> Out {
    match ty {
        Ty::Str(_) => Out::new(Value::String(String::new()), true),
        Ty::Int => Out::new(Value::from(0), true),
        Ty::F32 | Ty::F64 => Out::new(Value::from(0), true),
        Ty::Bool => Out::new(Value::Bool(false), true),
        Ty::Struct(s) => Out::new(
            decode_struct(s, &Map::new(), &mut Ctx::new(s.name)).unwrap_or(Value::Null),
            false,
        ),
        Ty::Message => Out::new(serde_json::json!({"role": ""}), false),
        Ty::Definition { forced } => {
            let mut map = Map::new();
            if *forced {
                map.insert("properties".to_owned(), Value::Object(Map::new()));
            }
            Out::new(Value::Object(map), false)
        }
        Ty::Any | Ty::Slice(..) | Ty::Map(..) | Ty::Ptr(_) | Ty::JsonSchema => Out::nil(),
    }
}

/// A float32 field: Go rounds to float32 and prints the shortest text that reads back the same.
fn f32_value(n: &serde_json::Number) -> Option<(Value, bool)> {
    let f = n.as_f64()?;
    if f.abs() > f64::from(f32::MAX) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    let single = f as f32;
    let text = single.to_string();
    let value = serde_json::from_str::<Value>(&text).ok()?;
    Some((value, single == 0.0))
}

/// Decodes an object into a struct's fields (unknown keys ignored) and encodes the struct.
fn decode_struct(
    s: &StructTy,
    entries: &Map<String, Value>,
    ctx: &mut Ctx,
) -> Result<Value, TypeErr> {
    let mut decoded: Vec<Option<Out>> = s.fields.iter().map(|_| None).collect();
    for (key, value) in entries {
        let Some(i) = s.fields.iter().position(|f| f.key == key) else {
            continue;
        };
        ctx.path.push(s.fields[i].key);
        let out = decode(&s.fields[i].ty, value, ctx);
        ctx.path.pop();
        decoded[i] = Some(out?);
    }
    let mut out = Map::new();
    for (field, value) in s.fields.iter().zip(decoded) {
        let value = value.unwrap_or_else(|| zero(&field.ty));
        if !(field.omitempty && value.empty) {
            out.insert(field.key.to_owned(), value.value);
        }
    }
    Ok(Value::Object(out))
}

/// `ChatCompletionMessage.UnmarshalJSON` then `MarshalJSON` (`chat.go:124-190`): `content` as a
/// string, else as parts; the parts win on encoding when there are any.
fn decode_message(v: &Value) -> Result<Out, TypeErr> {
    let Value::Object(entries) = v else {
        return Err(TypeErr::new(
            kind(v),
            "",
            &[],
            "openai.ChatCompletionMessage",
        ));
    };
    if let Ok(value) = decode_struct(&MESSAGE_TEXT, entries, &mut Ctx::new("")) {
        return Ok(Out::new(value, false));
    }
    let mut value = decode_struct(&MESSAGE_PARTS, entries, &mut Ctx::new(""))?;
    if let Value::Object(map) = &mut value
        && map
            .get("content")
            .is_some_and(|c| c.as_array().is_some_and(Vec::is_empty))
    {
        // An empty parts list encodes through the string branch, as an omitted "".
        map.remove("content");
    }
    Ok(Out::new(value, false))
}

/// `ChatCompletionResponseFormatJSONSchema.UnmarshalJSON` (`chat.go:226-249`) and its encoding.
fn decode_json_schema(v: &Value) -> Result<Value, TypeErr> {
    let Value::Object(entries) = v else {
        return Err(TypeErr::new(kind(v), "", &[], "openai.rawJSONSchema"));
    };
    let mut ctx = Ctx::new(RAW_JSON_SCHEMA.name);
    let Value::Object(mut out) = decode_struct(&RAW_JSON_SCHEMA, entries, &mut ctx)? else {
        unreachable!("a struct encodes as an object")
    };
    // Decoded on its own (errors name `Definition` and its own path); a missing or null schema
    // stays a nil `json.Marshaler`, encoded as null.
    let schema = match entries.get("schema") {
        None | Some(Value::Null) => Value::Null,
        Some(schema) => decode(&DEFINITION_BY_POINTER, schema, &mut Ctx::new(""))?.value,
    };
    out.insert("schema".to_owned(), schema);
    Ok(Value::Object(out))
}

/// Collects the paths of meaningful input values the output lacks.
fn diff(input: &Value, output: &Value, path: &mut String, dropped: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match b.get(key) {
                    Some(out) => diff(value, out, path, dropped),
                    None if meaningful(value) => dropped.push(path.clone()),
                    None => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                diff(x, y, path, dropped);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn meaningful(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(true) | Value::Number(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(body: Value) -> Result<Forwarded, String> {
        rewrite(body.to_string().as_bytes())
    }

    #[test]
    fn stop_as_a_string_is_refused_with_gos_text() {
        let err = run(json!({"messages": [], "stop": "END"})).unwrap_err();
        assert_eq!(
            err,
            "json: cannot unmarshal string into Go struct field base.stop of type []string"
        );
        let ok = run(json!({"messages": [], "stop": ["END"]})).unwrap();
        assert_eq!(ok.body["stop"], json!(["END"]));
    }

    #[test]
    fn zero_values_are_dropped_and_reported() {
        let out = run(json!({
            "model": "x", "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0, "top_p": 0.0, "presence_penalty": 0, "frequency_penalty": 0,
            "n": 0, "max_tokens": 0, "stream": false, "seed": 0, "temperature2": 0
        }))
        .unwrap();
        let body = out.body.as_object().unwrap();
        for gone in [
            "temperature",
            "top_p",
            "presence_penalty",
            "frequency_penalty",
            "n",
            "max_tokens",
            "stream",
        ] {
            assert!(!body.contains_key(gone), "{gone} kept");
        }
        // A pointer to zero is not empty; unknown top-level keys are kept verbatim.
        assert_eq!(body["seed"], 0);
        assert_eq!(body["temperature2"], 0);
        assert_eq!(body["model"], "x");
        let mut dropped = out.dropped;
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "frequency_penalty",
                "max_tokens",
                "n",
                "presence_penalty",
                "temperature",
                "top_p"
            ]
        );
    }

    #[test]
    fn parts_keep_type_text_and_image_url_only() {
        let out = run(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA"}},
            {"type": "image_url", "image_url": {"url": "http://x", "detail": "low", "extra": 1}}
        ], "x_unknown": 1}]}))
        .unwrap();
        assert_eq!(
            out.body["messages"][0],
            json!({"role": "user", "content": [
                {"type": "text", "text": "hi"},
                {"type": "input_audio"},
                {"type": "file"},
                {"type": "image_url", "image_url": {"url": "http://x", "detail": "low"}}
            ]})
        );
        let mut dropped = out.dropped;
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "messages[0].content[0].cache_control",
                "messages[0].content[1].input_audio",
                "messages[0].content[2].file",
                "messages[0].content[3].image_url.extra",
                "messages[0].x_unknown",
            ]
        );
    }

    #[test]
    fn metadata_must_map_strings_to_strings() {
        assert_eq!(
            run(json!({"messages": [], "metadata": {"a": 1}})).unwrap_err(),
            "json: cannot unmarshal number into Go struct field base.metadata of type string"
        );
        assert!(run(json!({"messages": [], "metadata": {"a": "b"}})).is_ok());
    }

    #[test]
    fn nested_errors_name_the_inner_struct_or_the_message_boundary() {
        assert_eq!(
            run(json!({"messages": [], "tools": [{"type": "function", "function": {"name": 5}}]}))
                .unwrap_err(),
            "json: cannot unmarshal number into Go struct field FunctionDefinition.tools.function.name of type string"
        );
        assert_eq!(
            run(json!({"messages": [{"role": "user", "content": 5}]})).unwrap_err(),
            "json: cannot unmarshal number into Go struct field base.messages.content of type []openai.ChatMessagePart"
        );
        assert_eq!(
            run(json!({"messages": [], "max_tokens": 1.5})).unwrap_err(),
            "json: cannot unmarshal number 1.5 into Go struct field base.max_tokens of type int"
        );
        assert_eq!(
            run(
                json!({"messages": [], "response_format": {"type": "json_schema", "json_schema":
                {"name": "x", "schema": {"type": ["string", "null"]}}}})
            )
            .unwrap_err(),
            "json: cannot unmarshal array into Go struct field ChatCompletionResponseFormat.response_format.json_schema.type of type jsonschema.DataType"
        );
        assert_eq!(
            run(json!([1])).unwrap_err(),
            "json: cannot unmarshal array into Go value of type genericchatstorage.base"
        );
    }

    #[test]
    fn tools_and_any_values() {
        let out = run(json!({"messages": [], "tools": [{"type": "function", "function":
            {"name": "f", "parameters": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 1.0}}},
             "x": 1}, "y": 2}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "strict": true,
                "schema": {"type": "object", "properties": {"a": {"type": "string", "minLength": 1}}, "items": {"type": "string"}}}}}))
        .unwrap();
        assert_eq!(
            out.body["tools"],
            json!([{"type": "function", "function": {"name": "f",
                "parameters": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 1}}}}}])
        );
        assert_eq!(
            out.body["response_format"]["json_schema"]["schema"],
            json!({"type": "object", "properties": {"a": {"type": "string"}},
                   "items": {"type": "string", "properties": {}}})
        );
        let mut dropped = out.dropped;
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "response_format.json_schema.schema.properties.a.minLength",
                "tools[0].function.x",
                "tools[0].y",
            ]
        );
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(rewrite(b"").unwrap_err(), "EOF");
        assert_eq!(rewrite(b"{\"a\":").unwrap_err(), "unexpected EOF");
        assert!(
            rewrite(b"{not json")
                .unwrap_err()
                .starts_with("invalid character")
        );
    }
}
