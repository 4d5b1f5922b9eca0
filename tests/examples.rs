//! The deployment examples in examples/ are checked: every YAML file parses (each
//! document of a multi-document file), every systemd unit passes `systemd-analyze verify`
//! (with the binary path pointed at the built cairn), and every metric the alert rules
//! name appears in cairn's metrics output.

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_testkit::TestDir;
use serde::Deserialize;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn all_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    files(&examples(), &mut out);
    out.sort();
    out
}

fn yaml_documents(path: &Path) -> Vec<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            serde_yaml_ng::Value::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .collect()
}

#[test]
fn every_yaml_example_parses() {
    let yaml: Vec<PathBuf> = all_files()
        .into_iter()
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .collect();
    assert!(yaml.len() >= 5, "{yaml:?}");
    let mut kinds = Vec::new();
    for p in &yaml {
        let docs = yaml_documents(p);
        assert!(!docs.is_empty(), "{}", p.display());
        for d in docs {
            assert!(d.is_mapping(), "{}: a document is a mapping", p.display());
            if let Some(k) = d.get("kind").and_then(|k| k.as_str()) {
                kinds.push(k.to_string());
            }
        }
    }
    for k in ["StatefulSet", "CronJob", "ConfigMap", "Service"] {
        assert!(kinds.iter().any(|x| x == k), "a Kubernetes {k}: {kinds:?}");
    }
    let compose = &yaml_documents(&examples().join("compose/docker-compose.yml"))[0];
    for service in ["postgres", "cairn", "prometheus"] {
        assert!(
            compose["services"].get(service).is_some(),
            "compose service {service}"
        );
    }
}

#[test]
fn the_toml_examples_are_valid_configurations() {
    let path = examples().join("compose/cairn.toml");
    let cfg = cairn_config::Config::load(Some(&path), &Default::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(cfg.schedule.backup_full.is_some());
    assert!(cfg.schedule.max_replay.is_some());
    assert!(cfg.serve.token_file.is_some());
    // The ConfigMap's cairn.toml too.
    let docs = yaml_documents(&examples().join("kubernetes/cairn-serve-sidecar.yaml"));
    let text = docs
        .iter()
        .find_map(|d| d["data"]["cairn.toml"].as_str())
        .expect("the ConfigMap holds cairn.toml");
    let dir = TestDir::new().unwrap();
    // The Secret's file, mounted in the pod, is made here.
    let pass = dir.path().join("cipher-pass");
    std::fs::write(&pass, "a passphrase for the test\n").unwrap();
    assert!(text.contains("/etc/cairn-secret/cipher-pass"));
    let text = text.replace("/etc/cairn-secret/cipher-pass", &pass.display().to_string());
    let p = dir.path().join("cairn.toml");
    std::fs::write(&p, text).unwrap();
    let cfg = cairn_config::Config::load(Some(&p), &Default::default())
        .unwrap_or_else(|e| panic!("the ConfigMap's cairn.toml: {e}"));
    assert!(cfg.schedule.drill.is_some());
}

#[test]
fn systemd_units_verify() {
    let dir = TestDir::new().unwrap();
    let bin = cairn_testkit::install_bins(&dir).unwrap();
    let units: Vec<PathBuf> = all_files()
        .into_iter()
        .filter(|p| p.parent().unwrap().ends_with("systemd"))
        .collect();
    let names: Vec<String> = units
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"cairn-serve.service".to_string()),
        "{names:?}"
    );
    // Every timer has its service.
    for n in &names {
        if let Some(stem) = n.strip_suffix(".timer") {
            assert!(
                names.contains(&format!("{stem}.service")),
                "{n} has no service"
            );
        }
    }
    // The units name /usr/local/bin/cairn; verify checks the binary exists.
    let copy = dir.subdir("units").unwrap();
    for (p, n) in units.iter().zip(&names) {
        let text = std::fs::read_to_string(p).unwrap();
        let text = text.replace("/usr/local/bin/", &format!("{}/", bin.display()));
        assert!(text.contains("ExecStart=") || n.ends_with(".timer"), "{n}");
        std::fs::write(copy.join(n), text).unwrap();
    }
    let paths: Vec<PathBuf> = names.iter().map(|n| copy.join(n)).collect();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // verify also warns without failing; a unit of ours must not be named in a warning.
    for n in &names {
        assert!(!stderr.contains(n.as_str()), "{n}: {stderr}");
    }
}

/// Every `cairn_*` metric name in an alert expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("cairn_") {
        let start = i + at;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        out.push(expr[start..end].to_string());
        i = end;
    }
    out
}

#[test]
fn every_metric_in_the_alert_rules_is_one_cairn_exports() {
    let rules = &yaml_documents(&examples().join("compose/alert-rules.yml"))[0];
    let mut named = Vec::new();
    let mut alerts = Vec::new();
    for g in rules["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            alerts.push(r["alert"].as_str().unwrap().to_string());
            named.extend(metric_names(r["expr"].as_str().unwrap()));
        }
    }
    for a in [
        "CairnBackupTooOld",
        "CairnArchiveLag",
        "CairnDrillTooOld",
        "CairnVerifyFailed",
    ] {
        assert!(alerts.iter().any(|x| x == a), "alert {a}: {alerts:?}");
    }
    // The metrics text cairn serve answers /metrics with (and `cairn metrics` prints).
    let text = cairn_serve::status::metrics_text(&[]);
    for m in &named {
        assert!(
            text.contains(&format!("# TYPE {m} gauge")),
            "alert rules name {m}, which cairn does not export:\n{text}"
        );
    }
    // And every one is in the registry `cairn metrics` renders (cairn-status).
    for m in &named {
        assert!(
            cairn_status::metrics::METRICS.iter().any(|d| d.name == m),
            "alert rules name {m}, which `cairn metrics` does not export"
        );
    }
    assert!(named.len() >= 4, "{named:?}");
}
