//! The OpenAPI 3 document of the API: `openapi.json` at the root of the repository, compiled
//! in and served as is at `GET /openapi.json`.
//!
//! The document is written by hand; a test checks that its operations are exactly the routes
//! of [`super::routes::ROUTES`] (the table the router is built from) and that the error codes
//! it lists are [`super::error::CODES`]. Never generated at run time.

/// The document, as kept in the repository.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// The `(METHOD, path)` of every operation of the document, sorted (`GET`, `/v1/me`).
pub fn operations(doc: &serde_json::Value) -> Vec<(String, String)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for m in METHODS {
                if item.get(m).is_some() {
                    out.push((m.to_uppercase(), path.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::error::CODES;
    use crate::net::routes::ROUTES;

    fn doc() -> serde_json::Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    #[test]
    fn the_document_lists_exactly_the_routes_of_the_router() {
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        routes.sort();
        assert_eq!(operations(&doc()), routes);
    }

    #[test]
    fn the_document_lists_exactly_the_error_codes() {
        let doc = doc();
        let listed: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("ErrorCode enum")
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        let mut a = listed.clone();
        a.sort_unstable();
        let mut b = CODES.to_vec();
        b.sort_unstable();
        assert_eq!(a, b);
    }

    #[test]
    fn every_operation_is_described_and_answers_json() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
        for (method, path) in operations(&doc) {
            let op = &doc["paths"][&path][method.to_lowercase()];
            assert!(op["summary"].is_string(), "{method} {path}: summary");
            assert!(
                op["operationId"].is_string(),
                "{method} {path}: operationId"
            );
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}: responses"
            );
            let authed = ROUTES
                .iter()
                .find(|r| r.method == method && r.path == path)
                .map(|r| r.authenticated)
                .unwrap_or(false);
            assert_eq!(
                op.get("security").is_some(),
                authed,
                "{method} {path}: security must match the route table"
            );
        }
    }
}
