//! The deployment artifacts: `scripts/deploy/validate.sh` validates the kustomize base
//! (`deploy/kubernetes`) against the Kubernetes JSON schemas in strict mode, lints it as an
//! operator would (selectors, ports, one Service and ingress path per replica, the drain
//! fitting the termination grace period, whole cores, known `BOTMEDIA_*` variables) and
//! checks the `Dockerfile`'s shape.
//!
//! The first test runs it on the repository as it is. The others copy the base and the
//! Dockerfile, break one thing an operator could get wrong, and expect the script to fail
//! naming it, so the check is seen to catch what it claims to.
//!
//! The script makes a Python venv under `target/deploy-venv` on its first run (PyPI:
//! kubernetes-validate, PyYAML; a few seconds), then reuses it (under a second a run).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs validate.sh with `args`: (exit code, stdout and stderr together).
fn validate(args: &[&Path]) -> (Option<i32>, String) {
    let script = repo().join("scripts/deploy/validate.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    for (flag, value) in ["--base", "--dockerfile"].iter().zip(args) {
        cmd.arg(flag).arg(value);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn the_base_and_the_dockerfile_validate() {
    let (code, out) = validate(&[]);
    assert_eq!(
        code,
        Some(0),
        "scripts/deploy/validate.sh found problems in deploy/kubernetes or the Dockerfile:\n{out}"
    );
    assert!(
        out.contains("valid against the Kubernetes") && out.contains("(strict"),
        "the script did not say what it validated against:\n{out}"
    );
}

/// A copy of the base and the Dockerfile in a fresh directory of its own.
struct Copy {
    base: PathBuf,
    dockerfile: PathBuf,
}

fn copy(name: &str) -> Copy {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("deploy-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    let base = dir.join("kubernetes");
    std::fs::create_dir_all(&base).unwrap();
    for entry in std::fs::read_dir(repo().join("deploy/kubernetes")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), base.join(entry.file_name())).unwrap();
        }
    }
    let dockerfile = dir.join("Dockerfile");
    std::fs::copy(repo().join("Dockerfile"), &dockerfile).unwrap();
    Copy { base, dockerfile }
}

/// Replaces `from` (which must be there: an edit that no longer applies would make the test
/// pass for the wrong reason) by `to` in `file`.
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.contains(from),
        "{} no longer contains {from:?}: update this test",
        file.display()
    );
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

/// Validates the broken copy and expects exit 1 with every one of `expected` in the output.
fn fails_with(copy: &Copy, expected: &[&str]) {
    let (code, out) = validate(&[&copy.base, &copy.dockerfile]);
    assert_eq!(code, Some(1), "expected the check to fail (exit 1):\n{out}");
    for e in expected {
        assert!(out.contains(e), "expected {e:?} in the output:\n{out}");
    }
}

#[test]
fn an_unknown_field_fails_the_strict_schema() {
    let c = copy("unknown-field");
    edit(
        &c.base.join("statefulset.yaml"),
        "  minReadySeconds: 10",
        "  minReadySecond: 10",
    );
    fails_with(
        &c,
        &["StatefulSet/botmedia", "'minReadySecond' was unexpected"],
    );
}

#[test]
fn a_per_instance_service_that_selects_no_pod() {
    let c = copy("selector");
    edit(
        &c.base.join("services-per-instance.yaml"),
        "statefulset.kubernetes.io/pod-name: botmedia-2",
        "statefulset.kubernetes.io/pod-name: botmedia-02",
    );
    fails_with(
        &c,
        &[
            "Service/botmedia-2: selector",
            "no Service selects botmedia-2",
        ],
    );
}

#[test]
fn a_replica_without_its_service_and_ingress_path() {
    let c = copy("replicas");
    edit(
        &c.base.join("statefulset.yaml"),
        "  replicas: 3",
        "  replicas: 4",
    );
    fails_with(
        &c,
        &[
            "no Service selects botmedia-3",
            "no ingress rule for bot.contoso.com/callback/botmedia-3",
        ],
    );
}

#[test]
fn a_drain_longer_than_the_termination_grace() {
    let c = copy("grace");
    edit(
        &c.base.join("config.yaml"),
        "drain_grace_seconds = 30",
        "drain_grace_seconds = 90",
    );
    fails_with(
        &c,
        &["terminationGracePeriodSeconds 60 < drain_grace_seconds 90 + hangup_timeout_seconds 10"],
    );
}

#[test]
fn a_variable_botmedia_does_not_read() {
    let c = copy("variable");
    edit(
        &c.base.join("env.yaml"),
        "BOTMEDIA_ICE_PORTS:",
        "BOTMEDIA_ICE_PORT_RANGE:",
    );
    fails_with(
        &c,
        &["BOTMEDIA_ICE_PORT_RANGE is set, but botmedia reads no such variable"],
    );
}

#[test]
fn fractional_cores_and_an_unlisted_manifest() {
    let c = copy("cores");
    let sts = c.base.join("statefulset.yaml");
    edit(&sts, "cpu: \"2\"", "cpu: 1500m");
    edit(&sts, "cpu: \"2\"", "cpu: 1500m");
    std::fs::write(
        c.base.join("extra.yaml"),
        "apiVersion: v1\nkind: ConfigMap\n",
    )
    .unwrap();
    fails_with(
        &c,
        &[
            "requests.cpu 1500m is not a whole number of cores",
            "extra.yaml is in the folder but not in `resources`",
        ],
    );
}

#[test]
fn a_root_image_with_the_build_context() {
    let c = copy("dockerfile");
    edit(&c.dockerfile, "USER 10001:10001", "USER root");
    edit(
        &c.dockerfile,
        "COPY --from=builder /out/botmedia /usr/local/bin/botmedia",
        "COPY . /src",
    );
    fails_with(
        &c,
        &[
            "the runtime stage's USER is root",
            "COPY into the runtime stage from the build context",
        ],
    );
}
