//! The OpenAPI 3 document of the API: `crates/api/openapi.json` ([`api::OPENAPI`]), served as is
//! at `GET /openapi.json`.
//!
//! The document is written by hand; a test checks that its operations are exactly the routes
//! of [`super::routes::ROUTES`] (the table the router is built from) and that the error codes
//! it lists are [`super::error::CODES`]. Never generated at run time.

/// The document, as kept in the repository.
pub const DOCUMENT: &str = api::OPENAPI;

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
    use crate::error::CODES;
    use crate::routes::{MAX_BODY_INTEGER, ROUTES};
    use sim::goods::Good;
    use sim::market::MAX_TRADE_UNITS;
    use sim::player::{validate_name, MAX_NAME_CHARS};
    use sim::rules::Rules;

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

    fn schema<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
        &doc["components"]["schemas"][name]
    }

    /// A `pattern` of the document, anchored as JSON Schema means it (it already is).
    fn pattern(s: &serde_json::Value) -> regex::Regex {
        let p = s["pattern"].as_str().expect("a pattern");
        assert!(p.starts_with('^') && p.ends_with('$'), "anchored: {p}");
        regex::Regex::new(p).expect("the pattern compiles")
    }

    /// Whether `name` is valid by the document's `PlayerName` (length in characters, as JSON
    /// Schema counts them, and the pattern).
    fn name_allowed_by_document(doc: &serde_json::Value, name: &str) -> bool {
        let s = schema(doc, "PlayerName");
        let chars = name.chars().count() as u64;
        let (min, max) = (
            s["minLength"].as_u64().unwrap(),
            s["maxLength"].as_u64().unwrap(),
        );
        (min..=max).contains(&chars) && pattern(s).is_match(name)
    }

    /// Names at the edges of every rule.
    const NAMES: &[&str] = &[
        "Ann",
        "A",
        "Barnard's Kid",
        "Ünïcødé 🚀",
        "Zoë",
        "a b",
        "",
        " Ann",
        "Ann ",
        "\tAnn",
        "Ann\u{a0}",
        "\u{3000}Ann",
        "Ann\u{2028}",
        "a\nb",
        "a\u{7f}b",
        "a\u{85}b",
        "a\u{9f}",
        "\u{feff}Ann",
        "Ann\u{200b}",
        "\u{202e}Ann",
        "x\u{0}",
    ];

    #[test]
    fn the_document_states_the_player_name_rules_exactly() {
        let doc = doc();
        let mut names: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        names.push("n".repeat(MAX_NAME_CHARS));
        names.push("n".repeat(MAX_NAME_CHARS + 1));
        names.push("é".repeat(MAX_NAME_CHARS));
        names.push("🚀".repeat(MAX_NAME_CHARS + 1));
        for name in &names {
            assert_eq!(
                name_allowed_by_document(&doc, name),
                validate_name(name).is_ok(),
                "{name:?}: document and validate_name disagree"
            );
        }
        assert_eq!(
            doc["components"]["schemas"]["JoinRequest"]["properties"]["name"]["$ref"],
            "#/components/schemas/PlayerName"
        );
        let target = &schema(&doc, "AttackRequest")["properties"]["target"]["oneOf"][0];
        assert_eq!(target["maxLength"].as_u64(), Some(MAX_NAME_CHARS as u64));
    }

    /// The pattern is the server's own rules, built from the Unicode data it checks with.
    #[test]
    fn the_name_pattern_is_the_one_the_rules_give() {
        let doc = doc();
        let expected = sim::names::name_pattern();
        assert_eq!(
            schema(&doc, "PlayerName")["pattern"].as_str(),
            Some(expected.as_str()),
            "openapi.json's PlayerName pattern must be {}",
            serde_json::Value::String(expected.clone())
        );
    }

    proptest::proptest! {
        #[test]
        fn any_name_is_valid_by_the_document_exactly_when_the_server_takes_it(
            name in "[ \\t\\n\\u{0}-\\u{9f}a-zé🚀\\u{a0}\\u{2000}-\\u{200f}\\u{202e}\\u{3000}\\u{feff}]{0,50}"
        ) {
            let doc = doc();
            proptest::prop_assert_eq!(
                name_allowed_by_document(&doc, &name),
                validate_name(&name).is_ok(),
                "{:?}", name
            );
        }
    }

    #[test]
    fn the_document_states_the_goods_exactly() {
        let doc = doc();
        let good = pattern(&schema(&doc, "TradeRequest")["properties"]["good"]);
        for g in Good::ALL {
            for text in [
                g.name().to_string(),
                g.name().to_uppercase(),
                format!(" {} ", g.name()),
            ] {
                assert!(good.is_match(&text), "{text:?}");
                assert!(Good::parse(&text).is_ok(), "{text:?}");
            }
        }
        for text in ["", "foo", "foods", "ore ore", "gold", "\u{17f}ore", "metal"] {
            assert!(!good.is_match(text), "{text:?}");
            assert!(Good::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn the_documents_limits_are_the_servers() {
        let doc = doc();
        let units = &schema(&doc, "RefuelRequest")["properties"]["units"];
        assert_eq!(
            units["maximum"].as_u64(),
            Some(u64::from(Rules::default().fuel_capacity)),
            "the tank's size"
        );
        let qty = &schema(&doc, "TradeRequest")["properties"]["qty"];
        assert_eq!(qty["maximum"].as_u64(), Some(u64::from(MAX_TRADE_UNITS)));
        for (request, field) in [("TradeRequest", "limit_cr"), ("LootRequest", "wreck")] {
            let f = &schema(&doc, request)["properties"][field];
            assert_eq!(
                f["maximum"].as_u64(),
                Some(MAX_BODY_INTEGER),
                "{request}.{field}"
            );
        }
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
