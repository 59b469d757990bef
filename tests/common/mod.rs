//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `bitmill` binary cargo built for these tests.
pub fn bitmill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bitmill"))
}

/// Runs a command; panics with its output unless it exits with `code`.
pub fn run_expect(cmd: &mut Command, code: i32) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// stdout as a string.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A third-party tool that CI installs; a missing one fails the test (never skips it).
pub fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
        || Path::new(name).is_file();
    assert!(
        found,
        "{name} is not installed: run tools/install-deps (CI does)"
    );
    Command::new(name)
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0; len];
    bitmill::rng::Rng::new(seed).fill(&mut v);
    v
}

/// Creates files under `root` from (relative path, length) pairs.
pub fn make_tree(root: &Path, files: &[(&str, usize)]) {
    for (i, (rel, len)) in files.iter().enumerate() {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data(*len, i as u64 + 1)).unwrap();
    }
}

/// A folder of files with awkward sizes: empty, one byte, sizes that make blocks and pieces
/// cross file boundaries, nested folders, a hidden file, names that sort differently
/// component-wise and byte-wise (`a.txt` vs `a/b`).
pub const ODD_TREE: &[(&str, usize)] = &[
    ("a.txt", 1),
    ("a/b", 100_003),
    ("a/empty", 0),
    ("a-c", 16_383),
    (".hidden", 7),
    ("B/deep/er/file.bin", 262_145),
    ("z", 65_536),
    ("Ω unicode name", 33_333),
];

/// Path of a file under the tests folder.
pub fn tests_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}
