//! `bitmill download`: fetch a torrent's data from peers (and keep seeding if asked).

use std::path::PathBuf;

use bitmill::engine::Engine;
use bitmill::net::clock;
use bitmill::storage::{content_files, resume, Allocation, MmapOptions, MmapStorage, OpenMode};
use clap::Args;

use super::session::{initial_have, record_path, save_resume, Session, SwarmArgs};
use super::{human_bytes, load_torrent, CliResult};

#[derive(Args, Debug)]
pub(crate) struct DownloadArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// Folder to download into (the torrent's file or folder is created inside it).
    #[arg(short, long, default_value = ".")]
    output: PathBuf,
    /// Keep running and seeding after the download completes (until Ctrl-C).
    #[arg(long)]
    seed_after: bool,
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
    #[command(flatten)]
    swarm: SwarmArgs,
}

pub(crate) fn run(a: DownloadArgs) -> CliResult {
    let quiet = a.swarm.quiet;
    let m = load_torrent(&a.torrent)?;
    for w in &m.warnings {
        eprintln!("warning: {w}");
    }
    std::fs::create_dir_all(&a.output).map_err(|e| format!("{}: {e}", a.output.display()))?;
    let out =
        std::fs::canonicalize(&a.output).map_err(|e| format!("{}: {e}", a.output.display()))?;
    let content = out.join(&m.info.name);
    let specs = content_files(&m.info, &content);
    let rpath = record_path(a.swarm.resume_dir.clone(), &m);
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
    let have = initial_have(&m, &content, &specs, &stamps, Some(&rpath), quiet)?;

    let mut engine = a.swarm.engine(a.max_peers);
    let t = engine.add_torrent(m.info_hash, m.info.clone(), Box::new(storage), have);
    let mut reactor = a.swarm.reactor()?;
    let threads = a
        .hash_threads
        .unwrap_or(if super::hashing::default_threads() > 1 {
            1
        } else {
            0
        });
    if threads > 0 {
        reactor
            .offload_hashing(threads, t, &m.info, &specs)
            .map_err(|e| format!("hashing threads: {e}"))?;
    }
    a.swarm.connect(&mut reactor, &mut engine, t, &m);

    let now = clock::now();
    let mut session = Session::new(
        t,
        &m.info.name,
        m.info.total_length(),
        quiet,
        a.seed_after,
        now,
    )
    .with_status(a.swarm.status());
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
    if !quiet {
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
