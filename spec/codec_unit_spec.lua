-- codec_unit_spec.lua - the codec's own C unit test (fuzz/codec_test.c:
-- exact encodings, round trips, refusals with their messages, hostile
-- input), compiled against channel/codec.c and run.
local support = require "support"
local q = support.shell_quote

describe("the MessagePack codec's C unit test", function()
  it("compiles and passes every case", function()
    local dir = support.tmpdir()
    local asan = support.lipc:find("asan") and "-fsanitize=address,undefined -g" or "-O2"
    local out, status = support.sh(("cd %s && cc %s -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE " ..
      "$(pkg-config --cflags lua5.4) -Ichannel fuzz/codec_test.c channel/codec.c " ..
      "$(pkg-config --libs lua5.4) -lm -o %s/codec_test 2>&1"):format(q(support.root), asan, q(dir)))
    assert.are.equal(0, status, out)
    out, status = support.sh(q(dir .. "/codec_test") .. " 2>&1")
    support.check_sanitizers(out)
    assert.are.equal(0, status, out)
    assert.matches("\n?(%d+) passed, 0 failed", out)
  end)
end)
