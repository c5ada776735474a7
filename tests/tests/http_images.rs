//! A manifest of `http://` image URLs (as img2dataset takes), served by a loopback server
//! (`infra/tests/http_images.py`) that answers good images, 404, slowly, 500 then 200, with a
//! dropped connection then 200, with a redirect, with a redirect loop and with an HTML page; a
//! cloud metadata URL is in it too. Every id must end once in `items` or `errors`; the
//! failures are `read` errors that name the HTTP status or the cause; every request names vemo
//! in its User-Agent and the flaky ones were retried.

use std::collections::BTreeMap;
use std::process::Command;

use arrow_array::cast::AsArray;
use vemo_tests::rows::read_output;
use vemo_tests::servers::{Server, free_port, repo_root};
use vemo_tests::{read_lance, synth_corpus, tiny_bundle, vemo_ok, write_job};

#[test]
fn image_urls_are_fetched_retried_and_their_failures_are_errors_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("corpus");
    synth_corpus(&corpus, 6, 64);
    let images = corpus.join("images");
    let port = free_port();
    let mut command = Command::new("python3");
    command
        .arg(repo_root().join("infra/tests/http_images.py"))
        .arg(port.to_string())
        .arg(&images);
    let _server = Server::start(command, port, Vec::new()).expect("start the HTTP server");

    let base = format!("http://127.0.0.1:{port}");
    let urls = [
        ("good-0", format!("{base}/img/0000000.jpg")),
        ("good-1", format!("{base}/img/0000001.jpg?size=64&v=2")),
        ("flaky", format!("{base}/flaky/0000002.jpg")),
        ("reset", format!("{base}/reset/0000003.jpg")),
        ("redirect", format!("{base}/redirect/0000004.jpg")),
        ("missing", format!("{base}/missing.jpg")),
        ("slow", format!("{base}/slow.jpg")),
        ("page", format!("{base}/page.jpg")),
        ("loop", format!("{base}/loop.jpg")),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data/".to_string(),
        ),
    ];
    let manifest_dir = dir.path().join("urls");
    std::fs::create_dir(&manifest_dir).expect("mkdir");
    let lines: Vec<String> = urls
        .iter()
        .map(|(id, url)| {
            serde_json::json!({"id": id, "image": url, "caption": format!("photo {id}")})
                .to_string()
        })
        .collect();
    std::fs::write(manifest_dir.join("manifest.jsonl"), lines.join("\n")).expect("manifest");

    let out = dir.path().join("out");
    let job = write_job(
        dir.path(),
        &manifest_dir.display().to_string(),
        &out.display().to_string(),
        &tiny_bundle(),
        4,
    );
    let mut text = std::fs::read_to_string(&job).expect("job");
    text.push_str("http_timeout_s = 2\n");
    std::fs::write(&job, text).expect("job");
    vemo_ok(&["index", "--job", &job.display().to_string()]);

    let got = read_output(&out);
    let items: Vec<&str> = got.items.keys().map(String::as_str).collect();
    assert_eq!(items, ["flaky", "good-0", "good-1", "redirect", "reset"]);
    let mut reasons = BTreeMap::new();
    for batch in read_lance(&out.join("errors.lance").display().to_string()) {
        let ids = batch.column_by_name("id").expect("id").as_string::<i32>();
        let why = batch.column_by_name("reason").expect("reason");
        let why = why.as_string::<i32>();
        for row in 0..batch.num_rows() {
            reasons.insert(ids.value(row).to_string(), why.value(row).to_string());
        }
    }
    for (id, expected) in [
        ("missing", "HTTP 404"),
        ("slow", "timed out after 2 s"),
        ("page", "Content-Type text/html"),
        ("loop", "redirect"),
        ("metadata", "refused: 169.254.169.254"),
    ] {
        assert_eq!(got.errors.get(id).map(String::as_str), Some("read"), "{id}");
        let reason = &reasons[id];
        assert!(reason.contains(expected), "{id}: {reason}");
    }
    assert_eq!(got.errors.len(), 5, "{reasons:?}");

    let log = std::fs::read_to_string(images.join("requests.log")).expect("requests.log");
    assert!(
        log.lines().all(|l| l.contains("\tvemo/")),
        "a request without vemo's User-Agent:\n{log}"
    );
    assert!(
        log.contains("/img/0000001.jpg?size=64&v=2\t"),
        "query string lost:\n{log}"
    );
    for retried in ["/flaky/0000002.jpg", "/reset/0000003.jpg"] {
        let tries = log.lines().filter(|l| l.starts_with(retried)).count();
        assert!(tries >= 2, "{retried} requested {tries} times:\n{log}");
    }
    println!("http: 5 images fetched (2 after a retry), 5 failures as errors rows: {reasons:#?}");
}
