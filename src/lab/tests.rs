//! The lab's tests: bounds on hand-computed cases, the parsers' good and bad inputs, and every
//! report checked against a small hand-made lab.

use super::report::{caption, from_json, table, to_csv, to_json, CSV_HEADER};
use super::*;

const MIB: u64 = 1 << 20;

/// F = 16 MiB, u_s = 2 MiB/s, u = 1 MiB/s, d = 4 MiB/s: seed-limited for small N.
fn rates() -> Rates {
    Rates {
        file_size: 16 * MIB,
        seed_up: 2 * MIB,
        peer_up: MIB,
        peer_down: 4 * MIB,
    }
}

/// A run whose peers completed at `times`; each downloaded F and uploaded `up` bytes; the seed
/// uploaded `seed` bytes.
fn run(mode: Mode, times: &[f64], up: u64, seed: u64) -> RunResult {
    let peers = times
        .iter()
        .enumerate()
        .map(|(index, &completed)| PeerResult {
            index,
            completed,
            downloaded: 16 * MIB,
            uploaded: up,
        })
        .collect();
    RunResult::new(mode, &rates(), peers, seed)
}

/// Three client-server runs (N = 1, 2, 5) and three P2P runs (N = 1, 2, 5).
fn lab() -> Lab {
    let mut lab = Lab::new(rates(), 256 * 1024);
    lab.results = vec![
        run(Mode::ClientServer, &[8.5], 0, 16 * MIB),
        run(Mode::ClientServer, &[16.25, 17.0], 0, 32 * MIB),
        run(
            Mode::ClientServer,
            &[40.5, 41.0, 41.5, 41.75, 42.0],
            0,
            80 * MIB,
        ),
        run(Mode::P2p, &[8.5], 0, 16 * MIB),
        run(Mode::P2p, &[9.0, 9.5], 8 * MIB, 24 * MIB),
        run(
            Mode::P2p,
            &[12.0, 13.0, 14.0, 15.0, 16.0],
            12 * MIB,
            20 * MIB,
        ),
    ];
    lab
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

// ---- bound ----

#[test]
fn client_server_bound_is_seed_limited_and_linear() {
    let r = rates();
    // max(N·16/2, 16/4)
    assert_eq!(bound(Mode::ClientServer, 1, &r), 8.0);
    assert_eq!(bound(Mode::ClientServer, 2, &r), 16.0);
    assert_eq!(bound(Mode::ClientServer, 5, &r), 40.0);
    assert_eq!(bound(Mode::ClientServer, 30, &r), 240.0);
}

#[test]
fn p2p_bound_hand_computed() {
    let r = rates();
    // max(16/2, 16/4, N·16/(2 + N·1))
    assert_eq!(bound(Mode::P2p, 1, &r), 8.0); // 16/3 < 8: F/u_s
    assert_eq!(bound(Mode::P2p, 2, &r), 8.0); // 32/4 = 8
    assert!(close(bound(Mode::P2p, 5, &r), 80.0 / 7.0)); // swarm upload limits
    assert!(close(bound(Mode::P2p, 10, &r), 160.0 / 12.0));
    // As N grows the P2P bound approaches F/u = 16 s from below; it never reaches it.
    let big = bound(Mode::P2p, 1000, &r);
    assert!(big < 16.0 && big > 15.9, "{big}");
}

#[test]
fn download_limited_regime() {
    // A fast seed (64 MiB/s) and slow leechers (d = 1 MiB/s): F/d = 16 s dominates.
    let r = Rates {
        file_size: 16 * MIB,
        seed_up: 64 * MIB,
        peer_up: MIB,
        peer_down: MIB,
    };
    assert_eq!(bound(Mode::ClientServer, 2, &r), 16.0);
    assert_eq!(bound(Mode::ClientServer, 64, &r), 16.0); // 64·16/64 = 16 = F/d: the knee
    assert_eq!(bound(Mode::ClientServer, 100, &r), 25.0); // past the knee, seed-limited
    assert_eq!(bound(Mode::P2p, 4, &r), 16.0);
    assert_eq!(bound(Mode::P2p, 1000, &r), 16.0);
}

#[test]
fn p2p_without_peer_upload_is_client_server() {
    let r = Rates {
        peer_up: 0,
        ..rates()
    };
    for n in 1..=50 {
        assert_eq!(
            bound(Mode::P2p, n, &r),
            bound(Mode::ClientServer, n, &r),
            "n={n}"
        );
    }
    assert_eq!(bound(Mode::P2p, 3, &r), 24.0);
}

#[test]
fn p2p_never_above_client_server_and_both_grow_with_n() {
    let r = rates();
    let mut last = (0.0, 0.0);
    for n in 1..=200 {
        let (cs, p2p) = (bound(Mode::ClientServer, n, &r), bound(Mode::P2p, n, &r));
        assert!(p2p <= cs, "n={n}: {p2p} > {cs}");
        assert!(cs >= last.0 && p2p >= last.1, "n={n}: not monotone");
        last = (cs, p2p);
    }
}

#[test]
fn bound_of_no_peers_is_zero() {
    assert_eq!(bound(Mode::P2p, 0, &rates()), 0.0);
    assert_eq!(bound(Mode::ClientServer, 0, &rates()), 0.0);
}

#[test]
fn rates_validate() {
    assert!(rates().validate().is_ok());
    assert!(Rates {
        peer_up: 0,
        ..rates()
    }
    .validate()
    .is_ok());
    for bad in [
        Rates {
            file_size: 0,
            ..rates()
        },
        Rates {
            seed_up: 0,
            ..rates()
        },
        Rates {
            peer_down: 0,
            ..rates()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

// ---- Mode ----

#[test]
fn mode_display_and_parse() {
    assert_eq!(Mode::P2p.to_string(), "p2p");
    assert_eq!(Mode::ClientServer.to_string(), "client-server");
    for m in Mode::ALL {
        assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
    }
    assert_eq!("cs".parse::<Mode>(), Ok(Mode::ClientServer));
    assert_eq!(" CS ".parse::<Mode>(), Ok(Mode::ClientServer));
    assert_eq!("P2P".parse::<Mode>(), Ok(Mode::P2p));
    for bad in ["", "peer", "client", "p2p2", "client server"] {
        assert!(bad.parse::<Mode>().is_err(), "{bad:?}");
    }
}

// ---- RunResult ----

#[test]
fn run_result_from_peers() {
    let r = run(
        Mode::ClientServer,
        &[41.0, 42.0, 40.5, 41.5, 41.75],
        0,
        80 * MIB,
    );
    assert_eq!(r.n, 5);
    assert_eq!(r.distribution_time, 42.0);
    assert_eq!(r.bound, 40.0);
    assert!(close(r.ratio(), 1.05));
    assert_eq!(r.slowest(), Some(42.0));
    assert_eq!(r.fastest(), Some(40.5));
    assert_eq!(r.seed_share(), Some(1.0));

    let p = run(Mode::P2p, &[9.0, 9.5], 8 * MIB, 24 * MIB);
    assert_eq!(p.peers_uploaded(), 16 * MIB);
    assert_eq!(p.seed_share(), Some(0.6));

    let empty = RunResult::new(Mode::P2p, &rates(), vec![], 0);
    assert_eq!(
        (empty.n, empty.distribution_time, empty.bound),
        (0, 0.0, 0.0)
    );
    assert!(empty.ratio().is_nan());
    assert_eq!(
        (empty.slowest(), empty.fastest(), empty.seed_share()),
        (None, None, None)
    );
}

#[test]
fn lab_max_n_and_modes() {
    let mut l = lab();
    assert_eq!(l.max_n(), 5);
    assert_eq!(l.modes(), vec![Mode::ClientServer, Mode::P2p]);
    l.results.retain(|r| r.mode == Mode::P2p);
    assert_eq!(l.modes(), vec![Mode::P2p]);
    assert_eq!(Lab::new(rates(), 1).max_n(), 0);
    assert!(Lab::new(rates(), 1).modes().is_empty());
}

// ---- parse_counts ----

#[test]
fn counts_good() {
    let ok = |s: &str| parse_counts(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    assert_eq!(ok("5"), vec![5]);
    assert_eq!(ok("1,2,5"), vec![1, 2, 5]);
    assert_eq!(ok("1..5"), vec![1, 2, 3, 4, 5]);
    assert_eq!(ok("1..30:5"), vec![1, 6, 11, 16, 21, 26]);
    assert_eq!(ok("2..10:4"), vec![2, 6, 10]);
    assert_eq!(ok("7..7"), vec![7]);
    assert_eq!(ok("1..3:100"), vec![1]);
    assert_eq!(ok("1..3:99999999999999999999999"), vec![1]);
    assert_eq!(ok(" 5, 1 ,1..3 "), vec![1, 2, 3, 5]);
    assert_eq!(ok("10,1..4:3,4"), vec![1, 4, 10]);
    assert_eq!(ok("1000"), vec![1000]);
    assert_eq!(ok("1..30").len(), 30);
    assert_eq!(ok("1..1000").len(), MAX_PEERS);
}

#[test]
fn counts_bad() {
    for bad in [
        "",
        "  ",
        "0",
        "0..5",
        "1,,2",
        "1,",
        ",1",
        "1001",
        "1..1001",
        "5..1",
        "1..30:0",
        "1..=30",
        "x",
        "-1",
        "+5",
        "1.5",
        "1..",
        "..5",
        "5:2",
        "1..30:x",
        "1..30:",
        "1..2..3",
        "99999999999999999999999",
    ] {
        assert!(parse_counts(bad).is_err(), "{bad:?} was accepted");
    }
    // The `..=` error says what to write instead.
    assert!(parse_counts("1..=30").unwrap_err().contains("A..B"));
}

// ---- parse_size, parse_rate, human_* ----

#[test]
fn sizes_good() {
    assert_eq!(parse_size("1000"), Ok(1000));
    assert_eq!(parse_size("512K"), Ok(512 * 1024));
    assert_eq!(parse_size("16M"), Ok(16 * MIB));
    assert_eq!(parse_size("1G"), Ok(1 << 30));
    assert_eq!(parse_size("16MiB"), Ok(16 * MIB));
    assert_eq!(parse_size("4 m"), Ok(4 * MIB));
    assert_eq!(parse_size("2kb"), Ok(2048));
    assert_eq!(parse_size("7B"), Ok(7));
    assert_eq!(parse_size(" 3G "), Ok(3 << 30));
}

#[test]
fn sizes_bad() {
    for bad in [
        "",
        "0",
        "0M",
        "M",
        "1.5M",
        "-1",
        "1T",
        "abc",
        "16MX",
        "16 M B",
        "99999999999G",
        "18446744073709551616",
    ] {
        assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn rates_parse() {
    assert_eq!(parse_rate("4M/s"), Ok(4 * MIB));
    assert_eq!(parse_rate("4M"), Ok(4 * MIB));
    assert_eq!(parse_rate("512KiB/s"), Ok(512 * 1024));
    assert!(parse_rate("0/s").is_err());
    assert!(parse_rate("/s").is_err());
    assert!(parse_rate("4M/h").is_err());
}

#[test]
fn human_units() {
    assert_eq!(human_size(1000), "1000 B");
    assert_eq!(human_size(1023), "1023 B");
    assert_eq!(human_size(1024), "1 KiB");
    assert_eq!(human_size(256 * 1024), "256 KiB");
    assert_eq!(human_size(16 * MIB), "16 MiB");
    assert_eq!(human_size(1536 * MIB), "1.5 GiB");
    assert_eq!(human_size(1126), "1.1 KiB");
    assert_eq!(human_size(u64::MAX), "16 EiB");
    assert_eq!(human_rate(2 * MIB), "2 MiB/s");
}

// ---- report ----

#[test]
fn caption_in_human_units() {
    assert_eq!(
        caption(&lab()),
        "F = 16 MiB, u_s = 2 MiB/s, u = 1 MiB/s, d = 4 MiB/s, piece 256 KiB"
    );
}

#[test]
fn table_rows_numbers_and_alignment() {
    let t = table(&lab());
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 2 + 6, "{t}");
    assert_eq!(lines[0], caption(&lab()));
    for col in [
        "mode",
        "N",
        "D (s)",
        "bound (s)",
        "ratio",
        "slowest (s)",
        "fastest (s)",
    ] {
        assert!(lines[1].contains(col), "{col} missing: {}", lines[1]);
    }
    // Client-server N = 5: D 42, bound 40, ratio 1.05, peers 40.5 .. 42, seed did it all.
    let cs5: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(
        cs5,
        [
            "client-server",
            "5",
            "42.00",
            "40.00",
            "1.05",
            "42.00",
            "40.50",
            "100.0%"
        ]
    );
    // P2P N = 5: bound 80/7 = 11.43; the seed sent 20 of 80 MiB.
    let p5: Vec<&str> = lines[7].split_whitespace().collect();
    assert_eq!(
        p5,
        ["p2p", "5", "16.00", "11.43", "1.40", "16.00", "12.00", "25.0%"]
    );
    // Every row of the table proper has the same width (numbers are right-aligned).
    let w = lines[1].len();
    assert!(lines[1..].iter().all(|l| l.len() == w), "{t}");
}

#[test]
fn table_dashes_for_missing_figures() {
    let mut l = lab();
    l.results = vec![RunResult::new(Mode::P2p, &rates(), vec![], 0)];
    let t = table(&l);
    let row: Vec<&str> = t.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(row, ["p2p", "0", "0.00", "0.00", "NaN", "-", "-", "-"]);
}

#[test]
fn csv_header_and_rows() {
    let c = to_csv(&lab());
    let lines: Vec<&str> = c.lines().collect();
    assert_eq!(lines.len(), 1 + 6);
    assert_eq!(lines[0], CSV_HEADER);
    assert_eq!(
        lines[0],
        "mode,n,file_size,seed_up,peer_up,peer_down,piece_length,distribution_time_s,bound_s,\
         ratio,seed_uploaded,peers_uploaded"
    );
    for l in &lines {
        assert_eq!(l.split(',').count(), 12, "{l}");
    }
    assert_eq!(
        lines[3],
        "client-server,5,16777216,2097152,1048576,4194304,262144,42,40,1.05,83886080,0"
    );
    assert_eq!(
        lines[5],
        "p2p,2,16777216,2097152,1048576,4194304,262144,9.5,8,1.1875,25165824,16777216"
    );
    assert!(c.ends_with('\n'));
    assert_eq!(to_csv(&Lab::new(rates(), 1)), format!("{CSV_HEADER}\n"));
}

#[test]
fn json_round_trip() {
    let l = lab();
    let j = to_json(&l);
    assert_eq!(from_json(&j), Ok(l.clone()));
    // The document says what it is, carries the derived ratio and every peer.
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["format"], "bitmill-lab");
    assert_eq!(v["version"], 1);
    assert_eq!(v["rates"]["seed_up"], 2 * MIB);
    assert_eq!(v["piece_length"], 256 * 1024);
    assert_eq!(v["results"][2]["mode"], "client-server");
    assert_eq!(v["results"][2]["ratio"], 1.05);
    assert_eq!(v["results"][2]["peers"].as_array().unwrap().len(), 5);
    assert_eq!(v["results"][2]["peers"][4]["completed"], 42.0);
    assert_eq!(v["results"][4]["mode"], "p2p");
    assert_eq!(v["results"][4]["peers"][1]["uploaded"], 8 * MIB);
}

#[test]
fn json_non_finite_values_load_as_nan() {
    let mut l = lab();
    l.results = vec![
        RunResult::new(Mode::P2p, &rates(), vec![], 0), // bound 0: ratio NaN
        run(Mode::ClientServer, &[f64::INFINITY], 0, 0),
    ];
    let j = to_json(&l);
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert!(v["results"][0]["ratio"].is_null());
    assert!(v["results"][1]["distribution_time"].is_null());
    let back = from_json(&j).unwrap();
    assert_eq!(back.results[0], l.results[0]);
    assert!(back.results[1].distribution_time.is_nan());
    assert!(back.results[1].peers[0].completed.is_nan());
}

#[test]
fn json_rejects_other_documents() {
    let j = to_json(&lab());
    assert!(from_json("").is_err());
    assert!(from_json("{}").is_err());
    assert!(from_json("[1,2]").is_err());
    assert!(from_json(&j[..j.len() / 2]).is_err());
    let other = j.replace("\"bitmill-lab\"", "\"something-else\"");
    assert!(from_json(&other).unwrap_err().contains("format"));
    let newer = j.replacen("\"version\": 1", "\"version\": 2", 1);
    assert_ne!(newer, j);
    assert!(from_json(&newer).unwrap_err().contains("version 2"));
    let bad_mode = j.replacen("\"client-server\"", "\"broadcast\"", 1);
    assert!(from_json(&bad_mode).is_err());
}

// ---- plot ----

/// The `<circle .../>` elements filled with `color`.
fn dots(svg: &str, color: plotters::style::RGBColor) -> Vec<&str> {
    let fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
    svg.split('<')
        .filter(|e| e.starts_with("circle ") && e.contains(&fill))
        .collect()
}

/// The numeric value of attribute `name` in an element's text.
fn attr(elem: &str, name: &str) -> f64 {
    let key = format!(" {name}=\"");
    let at = elem.find(&key).unwrap() + key.len();
    let len = elem[at..].find('"').unwrap();
    elem[at..at + len].parse().unwrap()
}

#[test]
fn svg_is_one_document_with_legend_and_caption() {
    let s = plot::svg(&lab()).unwrap();
    assert!(s.starts_with("<svg "), "{}", &s[..40]);
    assert!(s.trim_end().ends_with("</svg>"));
    assert_eq!(s.matches("<svg").count(), 1);
    assert_eq!(s.matches("</svg>").count(), 1);
    assert_eq!(s.matches("<text").count(), s.matches("</text>").count());
    assert!(s.contains("width=\"800\" height=\"500\""));
    for entry in [
        "client-server measured",
        "P2P measured",
        "client-server bound",
        "P2P bound",
        "N (number of leechers)",
        "distribution time (s)",
        "F = 16 MiB, u_s = 2 MiB/s, u = 1 MiB/s, d = 4 MiB/s, piece 256 KiB",
    ] {
        assert!(s.contains(entry), "{entry} missing");
    }
}

#[test]
fn svg_has_one_dot_per_run_plus_the_legend() {
    let s = plot::svg(&lab()).unwrap();
    assert_eq!(dots(&s, plot::CS_COLOR).len(), 3 + 1);
    assert_eq!(dots(&s, plot::P2P_COLOR).len(), 3 + 1);
    // A repeated run is another dot.
    let mut l = lab();
    l.results.push(run(Mode::P2p, &[13.0; 5], 0, 0));
    let s = plot::svg(&l).unwrap();
    assert_eq!(dots(&s, plot::P2P_COLOR).len(), 4 + 1);
}

#[test]
fn svg_dots_sit_where_the_numbers_say() {
    let s = plot::svg(&lab()).unwrap();
    // Client-server dots (the legend, drawn last, has the fourth): N = 1, 2, 5 at 8.5, 17,
    // 42 s. Further right for larger N, higher (smaller y) for longer times, evenly spaced in N.
    let cs = dots(&s, plot::CS_COLOR);
    let pts: Vec<(f64, f64)> = cs[..3]
        .iter()
        .map(|e| (attr(e, "cx"), attr(e, "cy")))
        .collect();
    assert!(pts[0].0 < pts[1].0 && pts[1].0 < pts[2].0, "{pts:?}");
    assert!(pts[0].1 > pts[1].1 && pts[1].1 > pts[2].1, "{pts:?}");
    let per_n = pts[1].0 - pts[0].0;
    assert!((pts[2].0 - pts[1].0 - 3.0 * per_n).abs() <= 2.0, "{pts:?}");
}

#[test]
fn svg_draws_both_bounds_even_for_one_mode() {
    let mut l = lab();
    l.results.retain(|r| r.mode == Mode::P2p);
    let s = plot::svg(&l).unwrap();
    assert!(s.contains("client-server bound") && s.contains("P2P bound"));
    assert!(s.contains("P2P measured"));
    assert!(!s.contains("client-server measured"));
    assert!(dots(&s, plot::CS_COLOR).is_empty());
    // The client-server bound is drawn: lines in its colour (dashes) beyond the legend's.
    let stroke = format!(
        "stroke=\"#{:02X}{:02X}{:02X}\"",
        plot::CS_COLOR.0,
        plot::CS_COLOR.1,
        plot::CS_COLOR.2
    );
    assert!(
        s.matches(&stroke).count() > 3,
        "{}",
        s.matches(&stroke).count()
    );
}

#[test]
fn svg_is_deterministic_and_depends_on_input() {
    let a = plot::svg(&lab()).unwrap();
    assert_eq!(a, plot::svg(&lab()).unwrap());
    let mut l = lab();
    l.results[0].distribution_time = 9.5;
    assert_ne!(a, plot::svg(&l).unwrap());
    // Redrawn from saved JSON: the same figure.
    assert_eq!(a, plot::svg(&from_json(&to_json(&lab())).unwrap()).unwrap());
}

#[test]
fn svg_needs_results() {
    assert!(plot::svg(&Lab::new(rates(), 1)).is_err());
    // One run of one peer still plots.
    let mut l = Lab::new(rates(), 1);
    l.results.push(run(Mode::ClientServer, &[8.5], 0, 16 * MIB));
    assert!(plot::svg(&l).unwrap().contains("client-server measured"));
}
