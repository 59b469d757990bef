//! `bitmill seed`: serve a torrent's complete data to peers until stopped.

use std::net::SocketAddr;
use std::path::PathBuf;

use bitmill::engine::Engine;
use bitmill::net::{clock, Reactor, ReactorConfig};
use bitmill::storage::{content_files, resume, MmapOptions, MmapStorage, OpenMode};
use clap::Args;

use super::session::{
    engine_config, initial_have, record_path, save_resume, tracker_client, Session,
};
use super::verify::resolve_content;
use super::{human_bytes, load_torrent, CliResult};

#[derive(Args, Debug)]
pub(crate) struct SeedArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// Where the data is: the folder holding the torrent's file or folder, or the file or
    /// folder itself.
    path: PathBuf,
    /// Address to accept peers on.
    #[arg(long, default_value = "0.0.0.0:6881")]
    listen: SocketAddr,
    /// A peer to connect to (IP:PORT); repeat for more.
    #[arg(long = "peer", value_name = "IP:PORT")]
    peers: Vec<SocketAddr>,
    /// Folder of resume records (default: $XDG_STATE_HOME/bitmill/resume).
    #[arg(long, value_name = "DIR")]
    resume_dir: Option<PathBuf>,
    /// Most connections for this torrent.
    #[arg(long, default_value_t = 200)]
    max_peers: usize,
    /// Cap on the download rate, bytes/s (`500K`, `10M`).
    #[arg(long, value_name = "RATE", value_parser = super::parse_rate)]
    max_download_rate: Option<u64>,
    /// Cap on the upload rate, bytes/s (`500K`, `10M`).
    #[arg(long, value_name = "RATE", value_parser = super::parse_rate)]
    max_upload_rate: Option<u64>,
    /// Peers unchoked at once by tit-for-tat (plus one optimistic unchoke).
    #[arg(long, default_value_t = 4, value_name = "N")]
    upload_slots: usize,
    /// Do not announce to the torrent's trackers (use only --peer and incoming peers).
    #[arg(long)]
    no_trackers: bool,
    /// Also run a tracker (HTTP and UDP) on this address in the same process, so one command
    /// hosts a whole small swarm.
    #[arg(long, value_name = "ADDR")]
    tracker: Option<SocketAddr>,
    /// No progress display.
    #[arg(short, long)]
    quiet: bool,
}

pub(crate) fn run(a: SeedArgs) -> CliResult {
    let m = load_torrent(&a.torrent)?;
    let content = resolve_content(&m.info, &a.path);
    let content =
        std::fs::canonicalize(&content).map_err(|e| format!("{}: {e}", content.display()))?;
    let specs = content_files(&m.info, &content);
    let rpath = record_path(a.resume_dir.clone(), &m);
    let stamps = resume::stamps(&specs);
    let storage = MmapStorage::open(
        m.info.layout().clone(),
        specs.clone(),
        OpenMode::ReadOnly,
        MmapOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let have = initial_have(&m, &content, &specs, &stamps, Some(&rpath), a.quiet)?;
    if !have.is_full() {
        return Err(format!(
            "{}: only {} of {} pieces are good; `bitmill verify` shows which, `bitmill download` completes them",
            content.display(),
            have.count(),
            have.len()
        ));
    }
    let mut cfg = engine_config();
    cfg.max_peers_per_torrent = a.max_peers;
    cfg.choker.regular_slots = a.upload_slots;
    cfg.max_peers = cfg.max_peers.max(a.max_peers);
    let mut engine = Engine::new(cfg);
    let t = engine.add_torrent(m.info_hash, m.info.clone(), Box::new(storage), have);
    let now = clock::now();
    engine.add_peers(now, t, a.peers.iter().copied());
    let mut reactor = Reactor::new(ReactorConfig {
        listen: Some(a.listen),
        max_download_rate: a.max_download_rate,
        max_upload_rate: a.max_upload_rate,
        ..Default::default()
    })
    .map_err(|e| format!("listen on {}: {e}", a.listen))?;
    if let Some(addr) = a.tracker {
        let cfg = super::tracker::tracker_config(&super::tracker::TrackerArgs {
            listen: addr,
            whitelist: None,
            interval: 1800,
            max_numwant: 50,
            max_torrents: 100_000,
            max_peers_per_torrent: 50_000,
            stats_every: 0,
            quiet: true,
        })?;
        let local = reactor
            .serve_tracker(addr, cfg, super::session::entropy())
            .map_err(|e| format!("tracker on {addr}: {e}"))?;
        eprintln!("tracker listening on {local}");
    }
    if let Some(addr) = reactor.local_addr() {
        eprintln!("listening on {addr}");
        if !a.no_trackers {
            if let Some(c) = tracker_client(&m, engine.peer_id(), addr.port()) {
                reactor.add_tracker_client(t, c);
            }
        }
    }
    let mut session = Session::new(t, &m.info.name, m.info.total_length(), a.quiet, true, now);
    let result = reactor.run(&mut engine, &mut session);
    session.finish();
    save_resume(&mut engine, t, &m, &content, &specs, &rpath);
    result.map_err(|e| format!("network: {e}"))?;
    if let Some(e) = &session.failed {
        return Err(format!("{}: {e}", m.info.name));
    }
    let s = engine.stats(t);
    if !a.quiet {
        let secs = clock::now().duration_since(session.started).as_secs_f64();
        eprintln!(
            "{}: sent {} in {secs:.1} s",
            m.info.name,
            human_bytes(s.uploaded)
        );
    }
    Ok(0)
}
