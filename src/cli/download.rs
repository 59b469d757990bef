//! `bitmill download`: fetch a torrent's data from peers (and keep seeding if asked).

use std::net::SocketAddr;
use std::path::PathBuf;

use bitmill::engine::Engine;
use bitmill::net::{clock, Reactor, ReactorConfig};
use bitmill::storage::{content_files, resume, Allocation, MmapOptions, MmapStorage, OpenMode};
use clap::Args;

use super::session::{
    engine_config, initial_have, record_path, save_resume, tracker_client, Session,
};
use super::{human_bytes, load_torrent, CliResult};

#[derive(Args, Debug)]
pub(crate) struct DownloadArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// Folder to download into (the torrent's file or folder is created inside it).
    #[arg(short, long, default_value = ".")]
    output: PathBuf,
    /// A peer to connect to (IP:PORT); repeat for more.
    #[arg(long = "peer", value_name = "IP:PORT")]
    peers: Vec<SocketAddr>,
    /// Keep running and seeding after the download completes (until Ctrl-C).
    #[arg(long)]
    seed_after: bool,
    /// Address to accept peers on.
    #[arg(long, default_value = "0.0.0.0:6881")]
    listen: SocketAddr,
    /// Folder of resume records (default: $XDG_STATE_HOME/bitmill/resume).
    #[arg(long, value_name = "DIR")]
    resume_dir: Option<PathBuf>,
    /// Most connections for this torrent.
    #[arg(long, default_value_t = 80)]
    max_peers: usize,
    /// Threads that verify pieces beside the network thread (default: 1 on a multi-core
    /// machine, 0 = verify on the network thread, right for one-core devices).
    #[arg(long, value_name = "N")]
    hash_threads: Option<usize>,
    /// Create files sparse instead of reserving their disk space up front.
    #[arg(long)]
    sparse: bool,
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
    /// No progress display.
    #[arg(short, long)]
    quiet: bool,
}

pub(crate) fn run(a: DownloadArgs) -> CliResult {
    let m = load_torrent(&a.torrent)?;
    for w in &m.warnings {
        eprintln!("warning: {w}");
    }
    std::fs::create_dir_all(&a.output).map_err(|e| format!("{}: {e}", a.output.display()))?;
    let out =
        std::fs::canonicalize(&a.output).map_err(|e| format!("{}: {e}", a.output.display()))?;
    let content = out.join(&m.info.name);
    let specs = content_files(&m.info, &content);
    let rpath = record_path(a.resume_dir.clone(), &m);
    // Stamps before we create or extend anything.
    let stamps = resume::stamps(&specs);
    let allocation = if a.sparse {
        Allocation::Sparse
    } else {
        Allocation::Full
    };
    let opts = MmapOptions {
        allocation,
        ..MmapOptions::default()
    };
    let storage = MmapStorage::open(
        m.info.layout().clone(),
        specs.clone(),
        OpenMode::ReadWrite,
        opts,
    )
    .map_err(|e| e.to_string())?;
    let have = initial_have(&m, &content, &specs, &stamps, Some(&rpath), a.quiet)?;

    let mut cfg = engine_config();
    cfg.max_peers_per_torrent = a.max_peers;
    cfg.choker.regular_slots = a.upload_slots;
    let mut engine = Engine::new(cfg);
    let t = engine.add_torrent(m.info_hash, m.info.clone(), Box::new(storage), have);
    let now = clock::now();
    engine.add_peers(now, t, a.peers.iter().copied());

    let mut reactor = match Reactor::new(ReactorConfig {
        listen: Some(a.listen),
        max_download_rate: a.max_download_rate,
        max_upload_rate: a.max_upload_rate,
        ..Default::default()
    }) {
        Ok(r) => r,
        Err(e) if a.listen.port() != 0 => {
            // The usual port is taken (another client): any free port will do.
            eprintln!(
                "warning: cannot listen on {}: {e}; using a free port",
                a.listen
            );
            let any = SocketAddr::new(a.listen.ip(), 0);
            Reactor::new(ReactorConfig {
                listen: Some(any),
                max_download_rate: a.max_download_rate,
                max_upload_rate: a.max_upload_rate,
                ..Default::default()
            })
            .map_err(|e| e.to_string())?
        }
        Err(e) => return Err(format!("listen on {}: {e}", a.listen)),
    };
    let threads = a.hash_threads.unwrap_or_else(|| {
        if super::hashing::default_threads() > 1 {
            1
        } else {
            0
        }
    });
    if threads > 0 {
        reactor
            .offload_hashing(threads, t, &m.info, &specs)
            .map_err(|e| format!("hashing threads: {e}"))?;
    }
    if let Some(addr) = reactor.local_addr() {
        eprintln!("listening on {addr}");
        if !a.no_trackers {
            if let Some(c) = tracker_client(&m, engine.peer_id(), addr.port()) {
                reactor.add_tracker_client(t, c);
            }
        }
    }
    let total = m.info.total_length();
    let mut session = Session::new(t, &m.info.name, total, a.quiet, a.seed_after, now);
    {
        let (m2, content2, specs2, rpath2) =
            (m.clone(), content.clone(), specs.clone(), rpath.clone());
        session = session.with_periodic_save(Box::new(move |e: &mut Engine| {
            save_resume(e, t, &m2, &content2, &specs2, &rpath2)
        }));
    }
    if engine.is_complete(t) {
        eprintln!("{}: already complete", m.info.name);
        if !a.seed_after {
            save_resume(&mut engine, t, &m, &content, &specs, &rpath);
            return Ok(0);
        }
    }
    let result = reactor.run(&mut engine, &mut session);
    session.finish();
    save_resume(&mut engine, t, &m, &content, &specs, &rpath);
    result.map_err(|e| format!("network: {e}"))?;
    let s = engine.stats(t);
    if let Some(e) = &session.failed {
        return Err(format!(
            "{}: {e} (verified data kept; run again to resume)",
            m.info.name
        ));
    }
    if !a.quiet {
        eprintln!(
            "{}: {} of {} pieces, received {}, sent {}",
            m.info.name,
            s.have_pieces,
            s.num_pieces,
            human_bytes(s.downloaded),
            human_bytes(s.uploaded)
        );
    }
    if engine.is_complete(t) {
        Ok(0)
    } else {
        eprintln!(
            "{}: interrupted; resume record written, run again to continue",
            m.info.name
        );
        Ok(130)
    }
}
