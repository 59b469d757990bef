#!/usr/bin/python3
"""libtorrent as a peer for the interop tests, on loopback only.

  lt_peer.py seed TORRENT DATA_DIR [--peer IP:PORT] [--port N] [--timeout S]
  lt_peer.py download TORRENT OUT_DIR [--peer IP:PORT] [--port N] [--timeout S]

DATA_DIR / OUT_DIR is the folder that holds the torrent's file or folder (libtorrent's
save_path). Prints `listening on 127.0.0.1:PORT` at start, then progress lines. `download`
exits 0 once the torrent is complete (state seeding, progress 1.0) and 1 on timeout; `seed`
runs until killed or until the timeout (exit 0). Everything goes to stderr, flushed.

No DHT, LSD, UPnP, NAT-PMP, uTP or PEX (the session is built without default plugins), so
the only peers are the ones passed with --peer or the ones that connect to us. Encryption is
left at libtorrent's default (pe_enabled): its first outgoing attempt is MSE, which bitmill
does not speak and closes, and libtorrent then reconnects in plaintext, as it would in the
wild. Peer connect/disconnect and error alerts are printed as `lt alert: ...` lines.
"""
import argparse
import sys
import time

import libtorrent as lt


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def make_session(port):
    settings = {
        "listen_interfaces": "127.0.0.1:%d" % port,
        "outgoing_interfaces": "",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_tcp": True,
        "enable_outgoing_tcp": True,
        "allow_multiple_connections_per_ip": True,
        "anonymous_mode": False,
        # Loopback peers are "local": make sure nothing rate-limits or filters them.
        "rate_limit_ip_overhead": False,
        "upload_rate_limit": 0,
        "download_rate_limit": 0,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.peer_notification
        | lt.alert.category_t.connect_notification
        | lt.alert.category_t.status_notification,
    }
    # No default plugins: no ut_pex, ut_metadata or smart_ban. (flags=0 leaves out
    # add_default_plugins; setting `extensions = []` on a session_params does nothing in the
    # 2.0 Python bindings, which have no such attribute: ut_pex was still advertised.)
    ses = lt.session(settings, 0)
    return ses


def drain_alerts(ses):
    for a in ses.pop_alerts():
        cat = a.category()
        if cat & lt.alert.category_t.error_notification:
            log("lt alert: %s: %s" % (a.what(), a.message()))
        elif isinstance(a, (lt.peer_connect_alert, lt.peer_disconnected_alert)):
            log("lt alert: %s: %s" % (a.what(), a.message()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["seed", "download"])
    ap.add_argument("torrent")
    ap.add_argument("dir")
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()

    ses = make_session(args.port)
    # Wait for the listen socket to be up so the port is real.
    deadline = time.time() + 10
    while ses.listen_port() == 0 and time.time() < deadline:
        drain_alerts(ses)
        time.sleep(0.05)
    log("listening on 127.0.0.1:%d" % ses.listen_port())

    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(args.torrent)
    atp.save_path = args.dir
    # Neither auto-managed (queueing could pause it) nor paused.
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    # A seed's data is checked on add (no seed_mode shortcut).
    h = ses.add_torrent(atp)

    start = time.time()
    end = start + args.timeout
    connected = False
    said_seeding = False
    last_print = 0.0
    last_connect = 0.0
    while True:
        now = time.time()
        drain_alerts(ses)
        st = h.status()
        checking = st.state in (
            lt.torrent_status.checking_files,
            lt.torrent_status.checking_resume_data,
        )
        # connect_peer is ignored while checking; retry until a peer shows up. (libtorrent
        # itself retries in plaintext when its first, encrypted (MSE) attempt is refused, as
        # bitmill, which has no MSE, does: leave it time for that before dialing again.)
        if args.peer and not checking and st.num_peers == 0 and now - last_connect > 3.0:
            for p in args.peer:
                ip, port = p.rsplit(":", 1)
                h.connect_peer((ip, int(port)))
            last_connect = now
            if not connected:
                log("connecting to %s" % ", ".join(args.peer))
                connected = True
        if now - last_print >= 1.0:
            log(
                "%s state=%s progress=%.4f peers=%d down=%d up=%d total_down=%d total_up=%d"
                % (
                    args.mode,
                    st.state,
                    st.progress,
                    st.num_peers,
                    st.download_rate,
                    st.upload_rate,
                    st.total_payload_download,
                    st.total_payload_upload,
                )
            )
            last_print = now
        if args.mode == "download" and st.is_seeding and st.progress >= 1.0:
            log(
                "download complete in %.2fs, %d payload bytes"
                % (now - start, st.total_payload_download)
            )
            return 0
        if args.mode == "seed" and st.is_seeding and not said_seeding:
            log("seeding %s" % st.name)
            said_seeding = True
        if now > end:
            log(
                "timeout after %.1fs: state=%s progress=%.4f"
                % (args.timeout, st.state, st.progress)
            )
            return 1 if args.mode == "download" else 0
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
