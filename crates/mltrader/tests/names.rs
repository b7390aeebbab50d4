//! Player names over HTTP, on a real server: a name is stored in NFC, names that look like a
//! taken one are refused with the same 409 `name_taken` as the taken name itself and say whom
//! they look like, invisible and bidirectional characters are 400 `bad_name` naming the
//! character, and an attack's target resolves a typed name the way it looks.

mod common;

use common::{Answer, Http, Server};
use serde_json::json;

#[track_caller]
fn refused(a: &Answer, status: u16, code: &str, message: &str) {
    assert_eq!((a.status, a.code()), (status, code), "{a:?}");
    let said = a.body["error"]["message"].as_str().unwrap_or("");
    assert!(said.contains(message), "{said:?} should say {message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_names_are_refused_and_names_are_stored_in_nfc() {
    let server = Server::start(&[]);
    let http = Http::new(server.url());
    let ann = http.join("Ann").await;
    let bob = http.join("Bob").await;
    let join = |name: &str| http.post("/v1/join", None, json!({ "name": name }));

    refused(
        &join("Ann").await,
        409,
        "name_taken",
        "the name 'Ann' is taken",
    );
    for (name, like) in [
        ("ann", "Ann"),
        ("ANN", "Ann"),
        ("\u{0410}nn", "Ann"),
        ("B0B", "Bob"),
    ] {
        let why = format!("'{name}' is taken: too similar to '{like}'");
        refused(&join(name).await, 409, "name_taken", &why);
    }
    for (name, code) in [
        ("Ann\u{200B}", "U+200B at character 4"),
        ("\u{202E}nnA", "U+202E at character 1"),
        ("Ann\u{2066}x", "U+2066 at character 4"),
        ("\u{3164}", "U+3164 at character 1"),
    ] {
        let a = join(name).await;
        refused(&a, 400, "bad_name", code);
        refused(&a, 400, "bad_name", "invisible or bidirectional");
    }

    // Decomposed in, precomposed out: in the answer, in /v1/me and in others' scan.
    let zoe = join("Zoe\u{0308}").await;
    assert_eq!(
        (zoe.status, &zoe.body["name"]),
        (201, &json!("Zo\u{00EB}")),
        "{zoe:?}"
    );
    let token = zoe.body["token"].as_str().unwrap();
    let me = http.get("/v1/me", Some(token)).await;
    assert_eq!(me.body["name"], "Zo\u{00EB}", "{me:?}");
    let scan = http.get("/v1/scan", Some(&bob)).await;
    let names = scan.body["names"].as_array().unwrap();
    assert!(names.contains(&json!("Zo\u{00EB}")), "{scan:?}");
    refused(
        &join("Zo\u{00EB}").await,
        409,
        "name_taken",
        "'Zo\u{00EB}' is taken",
    );

    // `attack ann` is Ann: the standing order names her as she is named.
    let a = http
        .post("/v1/attack", Some(&bob), json!({ "target": "aNN" }))
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let me = http.get("/v1/me", Some(&bob)).await;
    assert_eq!(me.body["attacking"]["target"], "Ann", "{me:?}");
    let a = http
        .post("/v1/attack", Some(&ann), json!({ "target": "Nobody" }))
        .await;
    assert_eq!((a.status, a.code()), (409, "not_here"), "{a:?}");
}
