//! The control plane has no HTTP in it: neither it nor anything it depends on
//! may pull in an HTTP, WebSocket or TLS crate. (The HTTP layer, `api`,
//! depends on the control plane, never the other way round.)

use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "api",
    "axum",
    "hyper",
    "hyper-util",
    "http",
    "http-body",
    "tower",
    "tungstenite",
    "tokio-tungstenite",
    "rustls",
    "tokio-rustls",
    "reqwest",
];

#[test]
fn the_control_crate_depends_on_no_http_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "--edges", "normal", "--package", "control", "--prefix", "none", "--format", "{p}", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.contains(&"control") && names.contains(&"store"), "unexpected cargo tree output: {tree}");
    let found: Vec<&&str> = FORBIDDEN.iter().filter(|f| names.contains(f)).collect();
    assert!(found.is_empty(), "the control crate depends on HTTP crates: {found:?}");
}
