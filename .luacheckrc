-- luacheck configuration for lipc's Lua: scripts, specs, embedded module
-- parts and benchmarks.
std = "lua54"
max_line_length = 110
codes = true

files["spec/**/*.lua"] = { std = "+busted" }
files["examples/**/spec/*.lua"] = { std = "+busted" }
-- Embedded chunks receive their module table as `...`.
files["modules/*.lua"] = { allow_defined_top = false }
files["runtime/*.lua"] = { allow_defined_top = false }
-- The API description: signatures are data, one per string.
files["docs/api/*.lua"] = { max_line_length = 180 }
