//! The lab's results as text: an aligned table for a person, CSV for a spreadsheet, JSON for
//! everything else (and for redrawing a plot later with [`from_json`]).
//!
//! Pure functions from a [`Lab`] to a `String` (and back, for JSON); nothing here writes a
//! file. Runs are reported in the order they are in [`Lab::results`].

use super::{human_rate, human_size, Lab, Rates, RunResult};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The first row of [`to_csv`]; its columns, in order.
pub const CSV_HEADER: &str = "mode,n,file_size,seed_up,peer_up,peer_down,piece_length,\
distribution_time_s,bound_s,ratio,seed_uploaded,peers_uploaded";

/// The `format` field of [`to_json`]'s output, checked by [`from_json`].
pub const JSON_FORMAT: &str = "bitmill-lab";

/// The `version` field of [`to_json`]'s output; [`from_json`] reads this version only.
pub const JSON_VERSION: u32 = 1;

/// One line naming the lab's parameters in human units:
/// `F = 16 MiB, u_s = 2 MiB/s, u = 1 MiB/s, d = 4 MiB/s, piece 256 KiB`.
pub fn caption(lab: &Lab) -> String {
    let r = &lab.rates;
    format!(
        "F = {}, u_s = {}, u = {}, d = {}, piece {}",
        human_size(r.file_size),
        human_rate(r.seed_up),
        human_rate(r.peer_up),
        human_rate(r.peer_down),
        human_size(lab.piece_length)
    )
}

/// An aligned text table, one row per run, under a [`caption`] line:
///
/// ```text
/// F = 16 MiB, u_s = 2 MiB/s, u = 1 MiB/s, d = 4 MiB/s, piece 256 KiB
/// mode            N   D (s)  bound (s)  ratio  slowest (s)  fastest (s)  seed share
/// client-server  10   84.10      80.00   1.05        84.10        80.90      100.0%
/// ```
///
/// Times have two decimals; a run without peers shows `-` for slowest/fastest, and one where
/// nothing was uploaded shows `-` for the seed's share. Ends with a newline.
pub fn table(lab: &Lab) -> String {
    let head = [
        "mode",
        "N",
        "D (s)",
        "bound (s)",
        "ratio",
        "slowest (s)",
        "fastest (s)",
        "seed share",
    ];
    let secs = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    let rows: Vec<[String; 8]> = lab
        .results
        .iter()
        .map(|r| {
            [
                r.mode.to_string(),
                r.n.to_string(),
                secs(Some(r.distribution_time)),
                secs(Some(r.bound)),
                secs(Some(r.ratio())),
                secs(r.slowest()),
                secs(r.fastest()),
                r.seed_share()
                    .map_or_else(|| "-".to_string(), |s| format!("{:.1}%", s * 100.0)),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = caption(lab);
    out.push('\n');
    let mut line = |cells: [&str; 8]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(width).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            // The mode is text: left-aligned; every other column is a number: right-aligned.
            // NOTE(unwrap): writing to a String cannot fail.
            if i == 0 {
                write!(l, "{cell:<w$}").unwrap();
            } else {
                write!(l, "{cell:>w$}").unwrap();
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(head);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

/// CSV: [`CSV_HEADER`] and one row per run. The lab's rates repeat on every row so each row
/// stands alone when files from several labs are concatenated. Times are in seconds, written
/// with Rust's shortest exact representation; non-finite values are written as `NaN`/`inf`.
/// Ends with a newline.
pub fn to_csv(lab: &Lab) -> String {
    let r = &lab.rates;
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for run in &lab.results {
        // NOTE(unwrap): writing to a String cannot fail.
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            run.mode,
            run.n,
            r.file_size,
            r.seed_up,
            r.peer_up,
            r.peer_down,
            lab.piece_length,
            run.distribution_time,
            run.bound,
            run.ratio(),
            run.seed_uploaded,
            run.peers_uploaded()
        )
        .unwrap();
    }
    out
}

/// A run as written to JSON: every field of [`RunResult`] plus the derived ratio (handy for
/// `jq`; ignored when read back).
#[derive(Serialize)]
struct RunOut<'a> {
    #[serde(flatten)]
    run: &'a RunResult,
    /// `null` when not finite (a run with a zero bound).
    ratio: Option<f64>,
}

/// [`to_json`]'s document.
#[derive(Serialize)]
struct LabOut<'a> {
    format: &'static str,
    version: u32,
    rates: &'a Rates,
    piece_length: u64,
    results: Vec<RunOut<'a>>,
}

/// [`from_json`]'s document.
#[derive(Deserialize)]
struct LabIn {
    format: String,
    version: u32,
    rates: Rates,
    piece_length: u64,
    results: Vec<RunResult>,
}

/// The whole lab as pretty-printed JSON: `format` (`"bitmill-lab"`), `version` (1), `rates`
/// (`file_size`, `seed_up`, `peer_up`, `peer_down`), `piece_length`, and `results`, each run
/// with `mode` (`"p2p"` or `"client-server"`), `n`, `distribution_time`, `bound`, `ratio`,
/// `seed_uploaded` and `peers` (`index`, `completed`, `downloaded`, `uploaded`). Sizes are
/// bytes, rates bytes/s, times seconds. NaN and infinities are written as `null`.
pub fn to_json(lab: &Lab) -> String {
    let doc = LabOut {
        format: JSON_FORMAT,
        version: JSON_VERSION,
        rates: &lab.rates,
        piece_length: lab.piece_length,
        results: lab
            .results
            .iter()
            .map(|run| RunOut {
                run,
                ratio: Some(run.ratio()).filter(|v| v.is_finite()),
            })
            .collect(),
    };
    // NOTE(unwrap): the document is plain structs of numbers and strings with string keys;
    // serde_json cannot fail to serialise it (non-finite floats become null).
    let mut s = serde_json::to_string_pretty(&doc).unwrap();
    s.push('\n');
    s
}

/// Reads [`to_json`]'s output back into a [`Lab`], so reports and plots can be redrawn from
/// saved results. Unknown fields are ignored (so later versions may add some); a wrong
/// `format` or `version` is an error, and so is anything that is not such a document. A `null`
/// time reads back as NaN.
pub fn from_json(s: &str) -> Result<Lab, String> {
    let doc: LabIn = serde_json::from_str(s).map_err(|e| format!("not a lab result: {e}"))?;
    if doc.format != JSON_FORMAT {
        return Err(format!(
            "not a lab result: format is '{}', expected '{JSON_FORMAT}'",
            doc.format
        ));
    }
    if doc.version != JSON_VERSION {
        return Err(format!(
            "lab result version {} is not supported (this build reads version {JSON_VERSION})",
            doc.version
        ));
    }
    Ok(Lab {
        rates: doc.rates,
        piece_length: doc.piece_length,
        results: doc.results,
    })
}
