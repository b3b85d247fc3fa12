/*
 * writer: a helper, not a case. Writes BYTES zero bytes to stdout with
 * write()s of CHUNK bytes (default 8 KiB) and exits. The child of every
 * stdout_read implementation, so that the case measures the reading side.
 *
 *   writer BYTES [CHUNK]
 */
#include "common.h"

int main(int argc, char **argv) {
  if (argc < 2)
    fail("usage: writer BYTES [CHUNK]");
  uint64_t left = strtoull(argv[1], NULL, 10);
  size_t chunk = argc > 2 ? strtoull(argv[2], NULL, 10) : 8192;
  char *buf = calloc(1, chunk);
  if (!buf)
    die("calloc");
  while (left > 0) {
    size_t n = left < chunk ? (size_t)left : chunk;
    write_all(1, buf, n);
    left -= n;
  }
  return 0;
}
