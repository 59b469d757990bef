//! Child processes watched from one thread: their stdout lines and their exits as timed events.
//!
//! `bitmill swarm` runs every peer of its swarm as a separate `bitmill` process and learns
//! their progress from the JSON lines they print (`--status-every`). This module owns the
//! operating-system side of that: spawning with a piped stdout, a `mio::Poll` over the pipes
//! (non-blocking, drained until `WouldBlock`), splitting lines, stamping each with the clock,
//! and stopping the processes (SIGTERM, then SIGKILL after a grace period). What the lines
//! mean is the caller's business.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

/// A line longer than this is cut (the rest of it is dropped up to the next newline).
const MAX_LINE: usize = 64 << 10;

/// Something one child did.
#[derive(Debug)]
pub enum ChildEvent {
    /// A line it printed on stdout (without the newline).
    Line(usize, String),
    /// It exited (its stdout is closed and it was reaped).
    Exited(usize, ExitStatus),
}

struct Kid {
    child: Child,
    out: Option<ChildStdout>,
    buf: Vec<u8>,
    status: Option<ExitStatus>,
}

/// A set of child processes, each known by the index [`Children::spawn`] returned.
pub struct Children {
    poll: Poll,
    events: Events,
    kids: Vec<Kid>,
}

impl Children {
    /// An empty set.
    pub fn new() -> io::Result<Children> {
        Ok(Children {
            poll: Poll::new()?,
            events: Events::with_capacity(64),
            kids: Vec::new(),
        })
    }

    /// Starts `cmd` with its stdout piped to us (stdin closed; stderr as the caller set it).
    pub fn spawn(&mut self, cmd: &mut Command) -> io::Result<usize> {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
        let i = self.kids.len();
        let out = child.stdout.take();
        if let Some(o) = &out {
            set_nonblocking(o.as_raw_fd())?;
            self.poll.registry().register(
                &mut SourceFd(&o.as_raw_fd()),
                Token(i),
                Interest::READABLE,
            )?;
        }
        self.kids.push(Kid {
            child,
            out,
            buf: Vec::new(),
            status: None,
        });
        Ok(i)
    }

    /// The operating system's id of child `i`.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.kids.get(i).map(|k| k.child.id())
    }

    /// Children that have not exited yet.
    pub fn running(&self) -> usize {
        self.kids.iter().filter(|k| k.status.is_none()).count()
    }

    /// Waits up to `timeout` for output or exits and returns what happened, each with the
    /// time it was seen. Returns early (possibly with nothing) when a signal interrupts.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Vec<(Instant, ChildEvent)>> {
        let mut out = Vec::new();
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(out),
            Err(e) => return Err(e),
        }
        let now = super::clock::now();
        let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        for i in ready {
            self.drain(i, now, &mut out)?;
        }
        // Children whose stdout closed: reap them. (A child that closed stdout but lives on is
        // reaped on a later call.)
        for i in 0..self.kids.len() {
            let k = &mut self.kids[i];
            if k.out.is_none() && k.status.is_none() {
                if let Some(st) = k.child.try_wait()? {
                    k.status = Some(st);
                    out.push((now, ChildEvent::Exited(i, st)));
                }
            }
        }
        Ok(out)
    }

    fn drain(
        &mut self,
        i: usize,
        now: Instant,
        out: &mut Vec<(Instant, ChildEvent)>,
    ) -> io::Result<()> {
        let Some(k) = self.kids.get_mut(i) else {
            return Ok(()); // a stale token
        };
        let mut chunk = [0u8; 16 << 10];
        loop {
            let Some(pipe) = k.out.as_mut() else {
                return Ok(());
            };
            match pipe.read(&mut chunk) {
                Ok(0) => {
                    if let Some(p) = k.out.take() {
                        self.poll
                            .registry()
                            .deregister(&mut SourceFd(&p.as_raw_fd()))?;
                    }
                    if !k.buf.is_empty() {
                        let line = String::from_utf8_lossy(&k.buf).into_owned();
                        k.buf.clear();
                        out.push((now, ChildEvent::Line(i, line)));
                    }
                    return Ok(());
                }
                Ok(n) => {
                    for &b in &chunk[..n] {
                        if b == b'\n' {
                            let line = String::from_utf8_lossy(&k.buf).into_owned();
                            k.buf.clear();
                            out.push((now, ChildEvent::Line(i, line)));
                        } else if k.buf.len() < MAX_LINE {
                            k.buf.push(b);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends SIGTERM to child `i` (if it still runs).
    pub fn terminate(&mut self, i: usize) {
        if let Some(k) = self.kids.get_mut(i) {
            if k.status.is_none() {
                // SAFETY: kill(2) with a pid we spawned and have not reaped; no memory involved.
                unsafe {
                    libc::kill(k.child.id() as libc::pid_t, libc::SIGTERM);
                }
            }
        }
    }

    /// Stops every child: SIGTERM, up to `grace` for them to exit, then SIGKILL. Reaps all.
    /// Returns the events seen meanwhile (their last lines and exits).
    pub fn stop_all(&mut self, grace: Duration) -> Vec<(Instant, ChildEvent)> {
        for i in 0..self.kids.len() {
            self.terminate(i);
        }
        let deadline = super::clock::now() + grace;
        let mut seen = Vec::new();
        while self.running() > 0 && super::clock::now() < deadline {
            match self.wait(Duration::from_millis(20)) {
                Ok(ev) => seen.extend(ev),
                Err(_) => break,
            }
            // Exits of children whose stdout is still open somewhere (a grandchild).
            for (i, k) in self.kids.iter_mut().enumerate() {
                if k.status.is_none() {
                    if let Ok(Some(st)) = k.child.try_wait() {
                        k.status = Some(st);
                        seen.push((super::clock::now(), ChildEvent::Exited(i, st)));
                    }
                }
            }
        }
        for k in &mut self.kids {
            if k.status.is_none() {
                let _ = k.child.kill();
                if let Ok(st) = k.child.wait() {
                    k.status = Some(st);
                }
            }
        }
        seen
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        // Never leave processes behind, whatever path we leave by.
        for k in &mut self.kids {
            if k.status.is_none() {
                let _ = k.child.kill();
                let _ = k.child.wait();
            }
        }
    }
}

fn set_nonblocking(fd: std::os::fd::RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL touch no memory.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(c: &mut Children, until_exits: usize) -> Vec<ChildEvent> {
        let mut all = Vec::new();
        let deadline = crate::net::clock::now() + Duration::from_secs(10);
        let mut exits = 0;
        while exits < until_exits && crate::net::clock::now() < deadline {
            for (_, e) in c.wait(Duration::from_millis(50)).unwrap() {
                if matches!(e, ChildEvent::Exited(..)) {
                    exits += 1;
                }
                all.push(e);
            }
        }
        all
    }

    #[test]
    fn lines_and_exits_of_several_children_arrive_in_order_per_child() {
        let mut c = Children::new().unwrap();
        let a = c
            .spawn(Command::new("sh").args(["-c", "echo one; echo two; printf tail"]))
            .unwrap();
        let b = c
            .spawn(Command::new("sh").args(["-c", "echo other; exit 3"]))
            .unwrap();
        let ev = collect(&mut c, 2);
        let lines = |i: usize| -> Vec<String> {
            ev.iter()
                .filter_map(|e| match e {
                    ChildEvent::Line(j, l) if *j == i => Some(l.clone()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(lines(a), ["one", "two", "tail"]);
        assert_eq!(lines(b), ["other"]);
        let code = |i: usize| {
            ev.iter().find_map(|e| match e {
                ChildEvent::Exited(j, st) if *j == i => st.code(),
                _ => None,
            })
        };
        assert_eq!(code(a), Some(0));
        assert_eq!(code(b), Some(3));
        assert_eq!(c.running(), 0);
    }

    #[test]
    fn stop_all_ends_children_that_would_run_forever() {
        let mut c = Children::new().unwrap();
        c.spawn(Command::new("sleep").arg("600")).unwrap();
        // A child that ignores SIGTERM gets SIGKILL after the grace period.
        c.spawn(Command::new("sh").args(["-c", "trap '' TERM; echo up; sleep 600"]))
            .unwrap();
        let t0 = crate::net::clock::now();
        // Wait until the second one has set its trap.
        let mut up = false;
        while !up && t0.elapsed() < Duration::from_secs(5) {
            up = c
                .wait(Duration::from_millis(50))
                .unwrap()
                .iter()
                .any(|(_, e)| matches!(e, ChildEvent::Line(1, l) if l == "up"));
        }
        assert!(up);
        c.stop_all(Duration::from_millis(300));
        assert_eq!(c.running(), 0);
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
