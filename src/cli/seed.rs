//! `bitmill seed`: serve a torrent's complete data to peers until stopped.

use std::net::SocketAddr;
use std::path::PathBuf;

use bitmill::net::clock;
use bitmill::storage::{content_files, resume, MmapOptions, MmapStorage, OpenMode};
use clap::Args;

use super::session::{entropy, initial_have, record_path, save_resume, Session, SwarmArgs};
use super::verify::resolve_content;
use super::{human_bytes, load_torrent, CliResult};

#[derive(Args, Debug)]
pub(crate) struct SeedArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// Where the data is: the folder holding the torrent's file or folder, or the file or
    /// folder itself.
    path: PathBuf,
    /// Most connections for this torrent.
    #[arg(long, default_value_t = 200)]
    max_peers: usize,
    /// Also run a tracker (HTTP and UDP) on this address in the same process, so one command
    /// hosts a whole small swarm.
    #[arg(long, value_name = "ADDR")]
    tracker: Option<SocketAddr>,
    #[command(flatten)]
    swarm: SwarmArgs,
}

pub(crate) fn run(a: SeedArgs) -> CliResult {
    let quiet = a.swarm.quiet;
    let m = load_torrent(&a.torrent)?;
    let content = resolve_content(&m.info, &a.path);
    let content =
        std::fs::canonicalize(&content).map_err(|e| format!("{}: {e}", content.display()))?;
    let specs = content_files(&m.info, &content);
    let rpath = record_path(a.swarm.resume_dir.clone(), &m);
    let stamps = resume::stamps(&specs);
    let storage = MmapStorage::open(
        m.info.layout().clone(),
        specs.clone(),
        OpenMode::ReadOnly,
        MmapOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let have = initial_have(&m, &content, &specs, &stamps, Some(&rpath), quiet)?;
    if !have.is_full() {
        return Err(format!(
            "{}: only {} of {} pieces are good; `bitmill verify` shows which, `bitmill download` completes them",
            content.display(),
            have.count(),
            have.len()
        ));
    }
    let mut engine = a.swarm.engine(a.max_peers);
    let t = engine.add_torrent(m.info_hash, m.info.clone(), Box::new(storage), have);
    let mut reactor = a.swarm.reactor()?;
    if let Some(addr) = a.tracker {
        let cfg = super::tracker::tracker_config(&super::tracker::TrackerArgs::serving(addr))?;
        let local = reactor
            .serve_tracker(addr, cfg, entropy())
            .map_err(|e| format!("tracker on {addr}: {e}"))?;
        eprintln!("tracker listening on {local}");
    }
    a.swarm.connect(&mut reactor, &mut engine, t, &m);
    let mut session = Session::new(
        t,
        &m.info.name,
        m.info.total_length(),
        quiet,
        true,
        clock::now(),
    )
    .with_status(a.swarm.status());
    let result = reactor.run(&mut engine, &mut session);
    session.finish();
    save_resume(&mut engine, t, &m, &content, &specs, &rpath);
    result.map_err(|e| format!("network: {e}"))?;
    if let Some(e) = &session.failed {
        return Err(format!("{}: {e}", m.info.name));
    }
    let s = engine.stats(t);
    if !quiet {
        let secs = clock::now().duration_since(session.started).as_secs_f64();
        eprintln!(
            "{}: sent {} in {secs:.1} s",
            m.info.name,
            human_bytes(s.uploaded)
        );
    }
    Ok(0)
}
