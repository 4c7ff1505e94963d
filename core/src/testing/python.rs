//! Python programs the tests drive as their users would (the official MCP client, an S3 server),
//! each in a virtualenv made on first use under `~/.cache/wafleet`. Without python3 and its venv
//! module the tests fail saying so: they never skip.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The python of a virtualenv named `name` (under `~/.cache/wafleet`, or `$override_var` when
/// set) in which `requirement` (a pip requirement, pinned) is installed and `imports` (a Python
/// import statement's modules, e.g. `mcp, httpx`) import; made now when it is not there yet.
/// Safe to call from test processes running at once: a virtualenv is built beside its place and
/// renamed into it.
pub fn virtualenv(name: &str, override_var: &str, requirement: &str, imports: &str) -> PathBuf {
    let venv = std::env::var_os(override_var).map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        home.join(".cache/wafleet").join(name)
    });
    let python = venv.join("bin/python");
    let ready = |python: &PathBuf| {
        Command::new(python)
            .args(["-c", &format!("import {imports}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&python) {
        return python;
    }
    let staging = venv.with_extension(format!("installing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(staging.parent().expect("a cache directory"))
        .unwrap_or_else(|e| panic!("creating {}: {e}", venv.display()));
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&staging)
        .status()
        .unwrap_or_else(|e| panic!("these tests need python3 to install {requirement} ({e}): install python3 and python3-venv (infra/test does)"));
    assert!(
        made.success(),
        "python3 -m venv failed: install python3-venv (infra/test does)"
    );
    let pip = Command::new(staging.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", requirement])
        .status()
        .expect("pip in the new virtualenv");
    assert!(pip.success(), "pip could not install {requirement} from PyPI");
    if std::fs::rename(&staging, &venv).is_err() {
        // Another test process finished first: use its virtualenv.
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(ready(&python), "{requirement} in {} does not import", venv.display());
    python
}
