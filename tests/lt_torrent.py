#!/usr/bin/python3
"""libtorrent as a third party for the metainfo tests.

  lt_torrent.py info FILE.torrent      print what libtorrent parses, as JSON
  lt_torrent.py create PATH OUT [v1]   make a torrent with libtorrent (hybrid v1+v2 with
                                       padding files by default, v1-only with 'v1')
"""
import json
import os
import sys

import libtorrent as lt


def info(path):
    ti = lt.torrent_info(path)
    fs = ti.files()
    files = []
    for i in range(fs.num_files()):
        files.append({
            "path": fs.file_path(i),
            "size": fs.file_size(i),
            "offset": fs.file_offset(i),
            "pad": bool(fs.file_flags(i) & lt.file_storage.flag_pad_file),
        })
    print(json.dumps({
        "info_hash": str(ti.info_hashes().v1),
        "name": ti.name(),
        "total_size": ti.total_size(),
        "piece_length": ti.piece_length(),
        "num_pieces": ti.num_pieces(),
        "private": ti.priv(),
        "files": files,
        "trackers": [t.url for t in ti.trackers()],
    }))


def create(path, out, v1_only):
    fs = lt.file_storage()
    lt.add_files(fs, path)
    flags = lt.create_torrent.v1_only if v1_only else 0
    ct = lt.create_torrent(fs, 0, flags)
    ct.add_tracker("http://127.0.0.1:6969/announce")
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(path)))
    with open(out, "wb") as f:
        f.write(lt.bencode(ct.generate()))


if __name__ == "__main__":
    if sys.argv[1] == "info":
        info(sys.argv[2])
    elif sys.argv[1] == "create":
        create(sys.argv[2], sys.argv[3], len(sys.argv) > 4 and sys.argv[4] == "v1")
    else:
        sys.exit("unknown command")
