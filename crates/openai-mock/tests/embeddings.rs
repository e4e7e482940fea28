//! Embeddings: OpenAI's shape, deterministic unit vectors, float and base64 agreeing.

mod common;

use base64::Engine as _;
use common::{EMBEDDING_MODEL, start};
use serde_json::{Value, json};

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn decode(v: &Value) -> Vec<f32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[tokio::test]
async fn float_answer_is_in_openai_shape_with_unit_vectors() {
    let mock = start().await;
    let (status, body) = mock
        .post_json(
            "/v1/embeddings",
            &json!({"model": EMBEDDING_MODEL, "input": ["hello world", "good bye now"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], EMBEDDING_MODEL);
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let v = floats(&item["embedding"]);
        assert_eq!(v.len(), 16);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);

    // Deterministic: the same input, alone, gets the same vector.
    let (_, again) = mock
        .post_json(
            "/v1/embeddings",
            &json!({"model": EMBEDDING_MODEL, "input": "hello world"}),
        )
        .await;
    assert_eq!(again["data"][0]["embedding"], data[0]["embedding"]);
}

#[tokio::test]
async fn base64_decodes_to_the_float_vector() {
    let mock = start().await;
    let request = |format: &str| {
        json!({"model": EMBEDDING_MODEL, "input": "the same text", "dimensions": 64,
               "encoding_format": format})
    };
    let (_, float) = mock.post_json("/v1/embeddings", &request("float")).await;
    let (status, b64) = mock.post_json("/v1/embeddings", &request("base64")).await;
    assert_eq!(status, 200, "{b64}");
    let expected = floats(&float["data"][0]["embedding"]);
    let decoded = decode(&b64["data"][0]["embedding"]);
    assert_eq!(expected.len(), 64);
    assert_eq!(decoded.len(), 64);
    for (a, b) in expected.iter().zip(&decoded) {
        assert!((a - b).abs() <= f32::EPSILON, "{a} vs {b}");
    }
    assert_eq!(b64["usage"], float["usage"]);
}

#[tokio::test]
async fn token_inputs_and_bad_inputs() {
    let mock = start().await;
    let (status, body) = mock
        .post_json(
            "/v1/embeddings",
            &json!({"model": EMBEDDING_MODEL, "input": [[1, 2, 3], [4]]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    let (_, body) = mock
        .post_json(
            "/v1/embeddings",
            &json!({"model": EMBEDDING_MODEL, "input": [7, 8]}),
        )
        .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);

    for (bad, param) in [
        (json!({"model": EMBEDDING_MODEL, "input": []}), "input"),
        (
            json!({"model": EMBEDDING_MODEL, "input": {"x": 1}}),
            "input",
        ),
        (
            json!({"model": EMBEDDING_MODEL, "input": "x", "dimensions": 0}),
            "dimensions",
        ),
        (
            json!({"model": EMBEDDING_MODEL, "input": "x", "encoding_format": "int8"}),
            "encoding_format",
        ),
        (json!({"input": "x"}), "model"),
    ] {
        let (status, body) = mock.post_json("/v1/embeddings", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["param"], param, "{bad}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    let (status, body) = mock
        .post_json("/v1/embeddings", &json!({"model": "nomic", "input": "x"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("model_not_found"))
    );

    let last = mock.handle.last_request().unwrap();
    assert_eq!(last.path, "/v1/embeddings");
    assert_eq!(last.body["model"], "nomic");
    assert_eq!(mock.handle.counters().embeddings, 8);
}
