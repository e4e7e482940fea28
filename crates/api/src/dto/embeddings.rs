//! The embeddings request as validated by the gateway, and the answer's shape. The body is
//! forwarded as the client sent it (unknown fields included), minus `session_id`, `model` and
//! `encoding_format`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An OpenAI embeddings request. Fields not listed here are passed to the provider untouched.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "text-embedding-bge-m3", "input": "The food was delicious"}))]
pub struct EmbeddingRequest {
    /// What to embed: a text, a list of texts, a list of token ids, or a list of such lists
    /// (at most 2048 items, none empty).
    pub input: EmbeddingInput,
    /// An embedding model's name, alias or on-chain id; the marketplace's embedding model
    /// tagged `Default` (else the first) when left out.
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (the default) or `base64`: the floats as little-endian 32-bit values, base64
    /// encoded. The marketplace answers floats only; the gateway encodes them.
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    /// The number of dimensions the vectors should have, for models that can shorten them.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 65536)]
    pub dimensions: Option<i64>,
    #[serde(default)]
    pub user: Option<String>,
    /// One of the key's own sessions to use (also accepted as a `session_id` header).
    #[serde(default)]
    pub session_id: Option<String>,
}

/// A text, texts, token ids, or lists of token ids (schema written by hand below: the bounds
/// of each form cannot be put on an untagged enum's variants).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

impl utoipa::PartialSchema for EmbeddingInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
        let text = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
        };
        let token = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(u32::MAX))
        };
        let tokens = || ArrayBuilder::new().items(token()).min_items(Some(1));
        OneOfBuilder::new()
            .description(Some(
                "What to embed: a text, a list of texts, a list of token ids, or a list of such \
                 lists (at most 2048 items, none empty).",
            ))
            .item(text())
            .item(
                ArrayBuilder::new()
                    .items(text())
                    .min_items(Some(1))
                    .max_items(Some(MAX_INPUTS)),
            )
            .item(tokens())
            .item(
                ArrayBuilder::new()
                    .items(tokens())
                    .min_items(Some(1))
                    .max_items(Some(MAX_INPUTS)),
            )
            .into()
    }
}

impl ToSchema for EmbeddingInput {}

/// OpenAI's limit on the items of one request.
pub const MAX_INPUTS: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

/// The embeddings, in the order of the input.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingResponse {
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<EmbeddingData>,
    /// The model as the request named it.
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingData {
    #[schema(example = "embedding")]
    pub object: String,
    pub embedding: EmbeddingVector,
    pub index: u32,
}

/// Floats, or with `encoding_format: base64` their little-endian bytes in base64.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}
