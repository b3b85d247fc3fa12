/*
 * codec.h - internal interface of the MessagePack codec (channel/codec.c).
 *
 * The codec turns one Lua value into one MessagePack value appended to a
 * growable byte buffer, and one MessagePack value from a byte range back into
 * a Lua value. It knows nothing of frames, channels or handles: send.c
 * adds the 4-byte length prefix and the handle marker (docs/wire-format.md).
 */
#ifndef LIPC_CODEC_H
#define LIPC_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>

/* A growable byte buffer. Zero-initialise it ({0}) before first use. */
typedef struct lipc__buf {
  char *data;
  size_t len;
  size_t cap;
} lipc__buf;

/* Makes room for n more bytes. Returns 0, or UV_ENOMEM-style -12 on failure. */
int lipc__buf_reserve(lipc__buf *b, size_t n);
void lipc__buf_free(lipc__buf *b);

/* Nesting deeper than this is refused by both encoder and decoder. */
#define LIPC_CODEC_MAX_DEPTH 128

/*
 * Appends the Lua value at stack index idx to b.
 * Returns 0 on success. On failure returns -1, leaves b->len as it was on
 * entry (nothing partial is kept) and pushes one error string naming the
 * offending key path, e.g. "value.jobs[3].fn: cannot send a function".
 * Uses at most a bounded amount of Lua stack (it calls lua_checkstack).
 */
int lipc__codec_encode(lua_State *L, int idx, lipc__buf *b);

/*
 * lipc__codec_encode, but a string of LIPC_CODEC_REF_MIN bytes or more is
 * not copied: its header is appended, then refs->add(ctx, L, sidx, s, n)
 * is called with the string's stack index and bytes, which belong right
 * after b's current end. add keeps the string alive until written and
 * returns 0, or nonzero for "not enough memory". When the encoder writes
 * a table again (an array that turned out to be a map) it first calls
 * refs->drop(ctx, k) to take back the last k strings added. A failed
 * encode may have called add: the caller forgets those calls.
 */
#define LIPC_CODEC_REF_MIN (64 * 1024)
typedef struct lipc__codec_refs {
  int (*add)(void *ctx, lua_State *L, int sidx, const char *s, size_t n);
  void (*drop)(void *ctx, size_t k);
  void *ctx;
} lipc__codec_refs;
int lipc__codec_encode_ref(lua_State *L, int idx, lipc__buf *b,
                           const lipc__codec_refs *refs);

/*
 * Appends the Lua value at idx to b as JSON text, as JavaScript's
 * JSON.stringify writes it: integers exact, floats in the fewest digits
 * that read back the same, NaN and infinities as null, nil and cjson.null
 * as null, a sequence (keys 1..n) as an array, any other table as an
 * object (number keys written as JavaScript writes them; an empty table
 * is {}). Strings must be UTF-8. Same failure contract as
 * lipc__codec_encode.
 */
int lipc__codec_encode_json(lua_State *L, int idx, lipc__buf *b);

/*
 * JSON text -> Lua value (jsonread.c), for Node's IPC lines: strict JSON,
 * integral numbers within 2^53 as integers, null as lipc.null.
 * lipc__json_decode pushes the value of p[0..n) and returns 1, or returns
 * -1 with the reason (naming the byte) in why. In steps: each
 * lipc__json_steps_run takes at most `work` more tokens and returns 1
 * (the value on top of L), -1 (nothing left on L;
 * lipc__json_steps_error says why) or LIPC_CODEC_MORE: call again with
 * the same L and text (p may have moved), leaving L's stack alone.
 */
typedef struct lipc__json_steps lipc__json_steps;
int lipc__json_decode(lua_State *L, const char *p, size_t n, char *why,
                      size_t size);
lipc__json_steps *lipc__json_steps_new(void);
int lipc__json_steps_run(lipc__json_steps *s, lua_State *L, const char *p,
                         size_t n, size_t work);
const char *lipc__json_steps_error(const lipc__json_steps *s);
void lipc__json_steps_free(lipc__json_steps *s);

/*
 * Decodes one MessagePack value from p[0..n) and pushes it.
 * Returns the number of bytes consumed (> 0) on success.
 * Returns 0 when p[0..n) holds only a prefix of a valid value (need more).
 * Returns -1 on malformed input, pushing nothing but setting *err to a
 * static message ("invalid MessagePack: unknown type byte 0xc1", ...).
 * "unknown ext type N" lives in a thread-local buffer that the next such
 * failure on the same thread overwrites: push or copy it before that.
 * The messages are listed in docs/wire-format.md, section 5.
 * Never reads outside p[0..n), never allocates more than the input can
 * justify (claimed counts are checked against the bytes that remain).
 */
ptrdiff_t lipc__codec_decode(lua_State *L, const char *p, size_t n,
                             const char **err);

/*
 * Checks one MessagePack value at p[0..n) exactly as lipc__codec_decode
 * decodes it and returns what decode would, touching no Lua state: a
 * value that passes decodes later without a fault (a Lua state out of
 * memory or stack aside).
 */
ptrdiff_t lipc__codec_check(const char *p, size_t n, const char **err);

/* lipc__codec_check that also refuses (-1, *err ==
 * lipc__codec_over_budget) a value whose Lua objects would take more than
 * budget bytes, as estimated: 64 a table, 16 an array element, 32 a map
 * entry, 40 + its length a string. */
ptrdiff_t lipc__codec_check_budget(const char *p, size_t n, uint64_t budget,
                                   const char **err);
extern const char lipc__codec_over_budget[];

/* lipc__codec_decode of exactly the bytes lipc__codec_check passed: skips
 * the checks already made (UTF-8 of str values). */
ptrdiff_t lipc__codec_decode_checked(lua_State *L, const char *p, size_t n,
                                     const char **err);

/*
 * Decoding in steps: the value at p[0..n) built (or, with L NULL,
 * checked) a slice at a time, for a value too large to build in one go
 * without holding the loop. lipc__codec_steps_new(budget, checked)
 * starts one: budget and checked as for lipc__codec_check_budget and
 * lipc__codec_decode_checked (UINT64_MAX, 0: neither); NULL when out of
 * memory. Each lipc__codec_steps_run goes through at most `work` more
 * values (scalars and containers) and returns what lipc__codec_decode
 * (or _check_budget) would, or LIPC_CODEC_MORE when the work ran out:
 * call it again with the same L and the same bytes (p may have moved),
 * leaving what it put on L's stack alone meanwhile (the partial value).
 * A failure drops that. lipc__codec_steps_free ends it at any point
 * (what is on L then is the caller's to drop).
 */
#define LIPC_CODEC_MORE (-2)
typedef struct lipc__codec_steps lipc__codec_steps;
lipc__codec_steps *lipc__codec_steps_new(uint64_t budget, int checked);
ptrdiff_t lipc__codec_steps_run(lipc__codec_steps *s, lua_State *L,
                                const char *p, size_t n, size_t work,
                                const char **err);
void lipc__codec_steps_free(lipc__codec_steps *s);
/* Before it builds a table or string whose block takes
 * LIPC_CODEC_READY_MIN bytes or more (as Lua 5.4 lays them out on 64
 * bits), the walk calls ready(ctx, bytes): 0 ends the slice there
 * (LIPC_CODEC_MORE), to ask again in the next one. */
#define LIPC_CODEC_READY_MIN ((size_t)1 << 20)
void lipc__codec_steps_ready(lipc__codec_steps *s,
                             int (*ready)(void *ctx, size_t bytes), void *ctx);

/* 1 when p[0..n) is valid UTF-8 (used to choose str or bin). */
int lipc__utf8_valid(const char *p, size_t n);

#endif
