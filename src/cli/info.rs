//! `bitmill info`: show what a .torrent holds.

use std::path::PathBuf;

use bitmill::metainfo::Metainfo;
use clap::Args;
use serde_json::json;

use super::{human_bytes, load_torrent, utc_date, CliResult};

#[derive(Args, Debug)]
pub(crate) struct InfoArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: InfoArgs) -> CliResult {
    let m = load_torrent(&a.torrent)?;
    if a.json {
        println!("{}", to_json(&m));
    } else {
        print!("{}", to_text(&m));
    }
    Ok(0)
}

pub(crate) fn to_json(m: &Metainfo) -> serde_json::Value {
    let l = m.info.layout();
    json!({
        "name": m.info.name,
        "info_hash": m.info_hash.to_hex(),
        "total_length": l.total_length(),
        "piece_length": l.piece_length(),
        "pieces": l.num_pieces(),
        "private": m.info.private,
        "single_file": m.info.single_file,
        "source": m.info.source,
        "files": m.info.files.iter().map(|f| json!({
            "path": f.display_path(),
            "length": f.length,
            "offset": f.offset,
            "padding": f.pad,
        })).collect::<Vec<_>>(),
        "trackers": m.tracker_tiers(),
        "web_seeds": m.url_list,
        "created_by": m.created_by,
        "creation_date": m.creation_date,
        "comment": m.comment,
        "warnings": m.warnings,
    })
}

fn to_text(m: &Metainfo) -> String {
    use std::fmt::Write;
    let l = m.info.layout();
    let mut s = String::new();
    // NOTE: writing to a String cannot fail; the results are ignored.
    let _ = writeln!(s, "name:          {}", m.info.name);
    let _ = writeln!(s, "info hash:     {}", m.info_hash);
    let _ = writeln!(
        s,
        "size:          {} ({} bytes)",
        human_bytes(l.total_length()),
        l.total_length()
    );
    let _ = writeln!(
        s,
        "pieces:        {} x {}",
        l.num_pieces(),
        human_bytes(u64::from(l.piece_length()))
    );
    let _ = writeln!(
        s,
        "private:       {}",
        if m.info.private { "yes" } else { "no" }
    );
    if let Some(src) = &m.info.source {
        let _ = writeln!(s, "source:        {src}");
    }
    if let Some(c) = &m.created_by {
        let _ = writeln!(s, "created by:    {c}");
    }
    if let Some(d) = m.creation_date {
        let _ = writeln!(s, "creation date: {}", utc_date(d));
    }
    if let Some(c) = &m.comment {
        let _ = writeln!(s, "comment:       {c}");
    }
    let tiers = m.tracker_tiers();
    if tiers.is_empty() {
        let _ = writeln!(s, "trackers:      none");
    } else {
        let _ = writeln!(s, "trackers:");
        for (i, tier) in tiers.iter().enumerate() {
            let _ = writeln!(s, "  tier {}: {}", i + 1, tier.join(" "));
        }
    }
    for w in &m.url_list {
        let _ = writeln!(s, "web seed:      {w}");
    }
    let _ = writeln!(s, "files:         {}", m.info.files.len());
    for f in &m.info.files {
        let pad = if f.pad { " (padding)" } else { "" };
        let _ = writeln!(s, "  {:>14}  {}{pad}", f.length, f.display_path());
    }
    for w in &m.warnings {
        let _ = writeln!(s, "warning:       {w}");
    }
    s
}
