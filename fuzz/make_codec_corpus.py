#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_codec.c to fuzz/corpus/codec/.

Seeds are small MessagePack values covering every type byte the codec
knows, plus a few malformed ones so the fuzzer starts next to each
refusal. Run from the repository root: python3 fuzz/make_codec_corpus.py
"""
import os
import struct

H = bytes.fromhex


def s(x):  # fixstr/str8 of an ASCII or UTF-8 text
    b = x.encode()
    return (bytes([0xA0 | len(b)]) if len(b) < 32 else H("d9") + bytes([len(b)])) + b


SEEDS = {
    "nil": H("c0"),
    "bools": H("92 c3 c2"),
    "ints": H("9f 00 7f cc 80 cd 01 00 ce 00 01 00 00 cf 00 00 00 01 00 00 00 00"
              " ff e0 d0 df d1 ff 7f d2 ff ff 7f ff d3 80 00 00 00 00 00 00 00"
              " cf 7f ff ff ff ff ff ff ff cf ff ff ff ff ff ff ff ff c0"),
    "floats": H("94 ca 3f c0 00 00 cb 3f f0 00 00 00 00 00 00 cb 7f f8 00 00 00 00 00 00"
                " cb 80 00 00 00 00 00 00 00"),
    "sum": H("82") + s("op") + s("sum") + s("xs") + H("93 01 02 03"),
    "strs": H("93") + s("") + s("x" * 40) + H("da 00 03") + b"abc",
    "utf8": H("93") + s("h\u00e9llo") + s("\u20ac") + s("w\U0001F600rld"),
    "bins": H("93 c4 02 ff fe c5 00 01 00 c6 00 00 00 01 80"),
    "empty": H("93 80 90 a0"),
    "holes": H("94 c0 01 c0 02"),
    "keys": H("85 01 a1 61 ff a1 62 c3 c2 cb 3f f8 00 00 00 00 00 00 01 a0 c0"),
    "array16": H("dc 00 14") + bytes(range(20)),
    "map16": H("de 00 02") + s("a") + H("01") + s("b") + H("02"),
    "deep": H("91") * 127 + H("90"),
    "deepmap": H("81 01") * 127 + H("80"),
    "request": H("83") + s("id") + H("2a") + s("method") + s("run") + s("params")
               + H("81") + s("jobs") + H("91 82") + s("name") + s("a") + s("args")
               + H("93 01 cb 40 04 00 00 00 00 00 00") + s("x"),
    "ext_marker": H("d4 01 01"),
    "ext8": H("c7 02 05 00 00"),
    "c1": H("92 01 c1"),
    "claims": H("dd ff ff ff ff 01 02 03"),
    "str32": H("db 00 00 00 05") + b"hello",
    "bad_utf8": H("a3 ed a0 80"),
    "nil_key": H("81 c0 01"),
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "codec")
os.makedirs(out, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(len(SEEDS), "seeds in", out)
