#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/fuzz_frame.c (frame/, json/) and
fuzz/fuzz_spawn_opts.c (spawn_opts/) under fuzz/corpus/.

Frame seeds wrap every codec seed (fuzz/corpus/codec) in a 4-byte length,
singly and several to a stream, plus the hostile frames: lengths near
2^32, a zero length, a handle marker with no handle, bytes after a value.
Each seed starts with the two header bytes of fuzz_frame.c (options and
read-split seed). Run from the repository root:
python3 fuzz/make_channel_corpus.py
"""
import os
import struct

ROOT = "fuzz/corpus"


def frame(body):
    return struct.pack(">I", len(body)) + body


def write(d, name, data):
    os.makedirs(os.path.join(ROOT, d), exist_ok=True)
    with open(os.path.join(ROOT, d, name), "wb") as f:
        f.write(data)


codec = {}
for n in sorted(os.listdir(os.path.join(ROOT, "codec"))):
    with open(os.path.join(ROOT, "codec", n), "rb") as f:
        codec[n] = f.read()

# header byte 0: max_message choice in bits 0-1, read size in bits 2-4
HDRS = [bytes([0x00, 7]), bytes([0x04, 3]), bytes([0x11, 9]), bytes([0x0e, 1])]

for i, (n, body) in enumerate(codec.items()):
    write("frame", "one_" + n, HDRS[i % 4] + frame(body))
stream = b"".join(frame(b) for b in codec.values())
write("frame", "all_split1", bytes([0x00, 0]) + stream)
write("frame", "all_split7", bytes([0x0c, 5]) + stream)
write("frame", "len_2p32_minus1", bytes([0x03, 0]) + b"\xff\xff\xff\xff\xc0")
write("frame", "len_max_plus1", bytes([0x01, 0]) + struct.pack(">I", 20) + b"\xc0")
write("frame", "len_zero", bytes([0x00, 0]) + b"\0\0\0\0" + frame(b"\xc3"))
write("frame", "marker_no_handle", bytes([0x00, 0]) + frame(b"\xd4\x01\x02\xc0"))
write("frame", "trailing", bytes([0x00, 0]) + frame(b"\xc0\xc0"))
write("frame", "truncated", bytes([0x04, 0]) + frame(b"\x92\x01")[:-0] + b"\0\0")
write("frame", "huge_count", bytes([0x00, 0]) + frame(b"\xdd\xff\xff\xff\xff"))
write("frame", "deep", bytes([0x00, 0]) + frame(b"\x91" * 200 + b"\xc0"))
write("frame", "ext_unknown", bytes([0x00, 0]) + frame(b"\xd4\x7f\x00"))

J = [b'{"a":1,"b":[1,2,3]}\n', b'"str"\n', b'1\n2.5\n-3\n', b'null\ntrue\n',
     b'{"cmd":"NODE_HANDLE","x":1}\n', b'[[[[[[[[1]]]]]]]]\n', b'{bad json\n',
     b'\r\n\n{"k":"\\u00e9"}\r\n', b'1e400\n', b'"' + b"x" * 40 + b'"\n',
     b"[" * 200 + b"]" * 200 + b"\n", b'{"a":"\xff\xfe"}\n']
for i, j in enumerate(J):
    write("json", "line%02d" % i, HDRS[i % 4] + j)
write("json", "all", bytes([0x08, 3]) + b"".join(J[:6]))

# spawn_opts: the driver reads bytes as choices; a few shapes to start from
S = [b"\x00\x00\x00", b"\x00\x08\x02\x03\x01", b"\x41\x08\x03\x00\x01\x06\x05abcde",
     b"\x00\x08\x01\x01\x04\x08\x04\x00\x05\x01\x05\x02\x05\x03",
     b"\x02\x00\x02\x06\x04\x10\x07\x04\x11", b"\x01\x00\x01\x0a\x06\x04a\x00b=",
     b"\x40\x00\x02\x05\x06\x03in\n\x0c\x04\x0f"]
for i, b in enumerate(S):
    write("spawn_opts", "s%02d" % i, b)
