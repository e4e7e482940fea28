//! The contract, compiled in: `build.rs` turns `openapi.yaml` into a table of operations. The
//! server uses it to answer requests that match no route: 405 with `Allow` when the path exists
//! with other methods, 404 otherwise — both as JSON.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use morpheus_api::error::ErrorResponse;

include!(concat!(env!("OUT_DIR"), "/spec_operations.rs"));

/// Whether a concrete path (`/api/v1/auth/keys/42`) matches a spec template
/// (`/api/v1/auth/keys/{key_id}`).
pub fn path_matches(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) => {
                let variable = ts.starts_with('{') && ts.ends_with('}');
                if !((variable && !ps.is_empty()) || ts == ps) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The methods the spec allows on a path (empty when the path is unknown). When templates
/// overlap (`/delegation/active` also matches `/delegation/{delegation_id}`), the most literal
/// one wins, as it does in the router.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    let literal_segments =
        |template: &str| template.split('/').filter(|s| !s.starts_with('{')).count();
    let matching: Vec<&SpecOperation> = SPEC_OPERATIONS
        .iter()
        .filter(|op| path_matches(op.path, path))
        .collect();
    let best = matching
        .iter()
        .map(|op| literal_segments(op.path))
        .max()
        .unwrap_or(0);
    let mut methods: Vec<&'static str> = matching
        .iter()
        .filter(|op| literal_segments(op.path) == best)
        .map(|op| op.method)
        .collect();
    methods.sort_unstable();
    methods.dedup();
    methods
}

/// The app's default service.
pub async fn unmatched(req: HttpRequest) -> HttpResponse {
    let allowed = allowed_methods(req.path());
    if allowed.is_empty() {
        return HttpResponse::NotFound().json(ErrorResponse {
            detail: "Not Found".to_owned(),
        });
    }
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allowed.join(", ")))
        .json(ErrorResponse {
            detail: "Method Not Allowed".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments_only() {
        assert!(path_matches(
            "/api/v1/auth/keys/{key_id}",
            "/api/v1/auth/keys/42"
        ));
        assert!(!path_matches(
            "/api/v1/auth/keys/{key_id}",
            "/api/v1/auth/keys/"
        ));
        assert!(!path_matches(
            "/api/v1/auth/keys/{key_id}",
            "/api/v1/auth/keys/4/2"
        ));
        assert!(!path_matches("/api/v1/auth/keys", "/api/v1/auth/keys/"));
        assert!(path_matches("/", "/"));
    }

    #[test]
    fn the_spec_knows_the_methods_of_a_path() {
        assert_eq!(allowed_methods("/api/v1/auth/register"), ["DELETE", "POST"]);
        assert_eq!(allowed_methods("/api/v1/auth/keys/7"), ["DELETE", "PATCH"]);
        assert_eq!(allowed_methods("/api/v1/auth/delegation/active"), ["GET"]);
        assert_eq!(allowed_methods("/api/v1/auth/delegation/7"), ["DELETE"]);
        assert!(allowed_methods("/nope").is_empty());
    }
}
