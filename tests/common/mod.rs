//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod transmission;

use sha2::Digest;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

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

/// Writes `len` bytes of [`data`]`(len, seed)` to `path` without holding them all in memory
/// (256 MiB take well under a second in a release build): the same SplitMix64 stream, 4 MiB
/// at a time.
pub fn write_data_file(path: &Path, len: u64, seed: u64) {
    use std::io::Write;
    const CHUNK: usize = 4 << 20; // a multiple of 8: the stream continues across chunks
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut f = std::io::BufWriter::with_capacity(
        CHUNK,
        std::fs::File::create(path).unwrap_or_else(|e| panic!("cannot create {path:?}: {e}")),
    );
    let mut rng = bitmill::rng::Rng::new(seed);
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("cannot write {path:?}: {e}"));
        left -= n as u64;
    }
    f.flush().unwrap();
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

/// A running process whose stderr lines we can wait for; killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    code: Option<Option<i32>>,
}

impl Proc {
    /// Starts a bitmill process.
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc::named("bitmill", cmd)
    }

    /// Starts a process called `name` in failure messages.
    pub fn named(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name}: {e}"));
        let err = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc {
            name: name.to_string(),
            child,
            lines,
            seen: Vec::new(),
            code: None,
        }
    }

    /// Everything seen so far, plus whatever is queued.
    pub fn log(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }

    /// `Some(exit code)` once the process has exited (its output then fully read).
    pub fn exited(&mut self) -> Option<Option<i32>> {
        if self.code.is_none() {
            if let Some(st) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                self.code = Some(st.code());
            }
        }
        self.code
    }

    /// Waits for a stderr line containing `pat`; returns it.
    pub fn wait_for(&mut self, pat: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        if let Some(l) = self.seen.iter().find(|l| l.contains(pat)) {
            return l.clone();
        }
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(pat) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "{}: no line with {pat:?} within {timeout:?}; got:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The listening address it printed (`listening on IP:PORT`).
    pub fn addr(&mut self) -> String {
        let l = self.wait_for("listening on ", Duration::from_secs(30));
        let a = l
            .split("listening on ")
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_string();
        assert!(
            !a.is_empty() && !a.ends_with(":0"),
            "{}: bad address in {l:?}",
            self.name
        );
        a
    }

    /// Waits for exit; returns the exit code and all stderr.
    pub fn finish(self, timeout: Duration) -> (Option<i32>, String) {
        self.finish_with(timeout, None)
    }

    /// [`Proc::finish`], showing `other`'s log too if it times out (the peer on the other
    /// side).
    pub fn finish_beside(self, timeout: Duration, other: &mut Proc) -> (Option<i32>, String) {
        self.finish_with(timeout, Some(other))
    }

    fn finish_with(mut self, timeout: Duration, other: Option<&mut Proc>) -> (Option<i32>, String) {
        let end = Instant::now() + timeout;
        loop {
            if let Some(code) = self.exited() {
                return (code, self.seen.join("\n"));
            }
            while let Ok(l) = self.lines.try_recv() {
                self.seen.push(l);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let other = other
                    .map(|o| {
                        let log = o.log();
                        format!("\n--- {} ---\n{log}", o.name)
                    })
                    .unwrap_or_default();
                panic!(
                    "{} did not exit within {timeout:?}:\n{}{other}",
                    self.name,
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT: a clean shutdown.
    pub fn interrupt(&self) {
        self.signal(libc::SIGINT);
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SHA-256 of every file under `root` (or of `root` itself when it is a file), as
/// (relative path, hex digest), sorted.
pub fn sha256_tree(root: &Path) -> Vec<(String, String)> {
    if root.is_file() {
        let name = root.file_name().unwrap().to_string_lossy().into_owned();
        return vec![(name, sha256_file(root))];
    }
    let mut out = Vec::new();
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                out.push((rel, sha256_file(&p)));
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

/// SHA-256 of every non-empty file under `root`: Transmission 3.00 never creates zero-length
/// files (fixed in 4.0), so those are left out of the comparisons.
pub fn sha256_non_empty(root: &Path) -> Vec<(String, String)> {
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    sha256_tree(root)
        .into_iter()
        .filter(|(_, h)| h != empty)
        .collect()
}

/// SHA-256 of a file as hex, read in 1 MiB chunks (big files are never held in memory).
pub fn sha256_file(path: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {path:?}: {e}"));
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("cannot read {path:?}: {e}"));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("{:x}", h.finalize())
}

/// Copies the tree at `from` to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let q = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &q);
        } else {
            std::fs::copy(&p, &q).unwrap();
        }
    }
}
/// A free TCP port on 127.0.0.1 (free when asked; nothing else here races for it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Python that has the `python3-libtorrent` bindings (Debian's, not a pyenv one).
pub const PYTHON: &str = "/usr/bin/python3";

/// Fails (never skips) when the python3-libtorrent bindings are not usable.
pub fn check_libtorrent() {
    assert!(
        Path::new(PYTHON).is_file(),
        "{PYTHON} is not installed: run tools/install-deps (CI does)"
    );
    let out = Command::new(PYTHON)
        .args(["-c", "import libtorrent; print(libtorrent.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e}"));
    assert!(
        out.status.success(),
        "python3-libtorrent is not installed for {PYTHON}: run tools/install-deps (CI does)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What an interop test shares: a temporary folder `root` holding the source data (`content`,
/// a file or a folder, inside `parent`) and a torrent of it (`torrent`), made by `bitmill
/// create`. The folder goes away when the fixture is dropped.
pub struct Fixture {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub parent: PathBuf,
    pub content: PathBuf,
    pub torrent: PathBuf,
}

impl Fixture {
    /// [`ODD_TREE`] in a folder `stuff`, in 32 KiB pieces.
    pub fn odd_tree() -> Fixture {
        Fixture::new(|content| make_tree(content, ODD_TREE), "stuff", "32K")
    }

    /// One file `big.bin` of `len` pseudo-random bytes ([`write_data_file`]) in pieces of
    /// `piece` (as `bitmill create -l` takes it: `256K`, `1M`, ...).
    pub fn single_file(len: u64, seed: u64, piece: &str) -> Fixture {
        Fixture::new(
            |content| write_data_file(content, len, seed),
            "big.bin",
            piece,
        )
    }

    fn new(make: impl FnOnce(&Path), name: &str, piece: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let parent = root.join("src");
        std::fs::create_dir_all(&parent).unwrap();
        let content = parent.join(name);
        make(&content);
        let torrent = root.join("t.torrent");
        run_expect(
            bitmill()
                .args(["create", "-q", "-l", piece, "-o"])
                .arg(&torrent)
                .arg(&content),
            0,
        );
        Fixture {
            _tmp: tmp,
            root,
            parent,
            content,
            torrent,
        }
    }

    /// The name of the torrent's file or folder.
    pub fn name(&self) -> &std::ffi::OsStr {
        self.content.file_name().unwrap()
    }
}

/// 256 MiB: the size of the big single-file interop cases.
pub const BIG_FILE: u64 = 256 << 20;

/// `bitmill seed` listening on 127.0.0.1 (any port), resume records in `resume`, plus `extra`.
pub fn seed_proc(torrent: &Path, data: &Path, resume: &Path, extra: &[&str]) -> Proc {
    Proc::spawn(
        bitmill()
            .arg("seed")
            .arg(torrent)
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--resume-dir"])
            .arg(resume)
            .args(extra),
    )
}

/// `bitmill download` into `out`, listening on 127.0.0.1 and dialing `peer`, resume records in
/// `resume`, plus `extra`.
pub fn download_proc(
    torrent: &Path,
    out: &Path,
    resume: &Path,
    peer: &str,
    extra: &[&str],
) -> Proc {
    Proc::spawn(
        bitmill()
            .arg("download")
            .arg(torrent)
            .arg("-o")
            .arg(out)
            .args(["--listen", "127.0.0.1:0", "--peer", peer, "--resume-dir"])
            .arg(resume)
            .args(extra),
    )
}
