/* tensor/file_internal.h — the file machinery behind the library's loaders and savers
 * (tensor/file.c; not installed). Every function takes `fn`, the public function on whose
 * behalf it works, to begin its messages with ("tg_safetensors_read: 'x' is a FIFO, ..."). */
#ifndef TAPEGRAD_FILE_INTERNAL_H
#define TAPEGRAD_FILE_INTERNAL_H

#include "tapegrad/file.h"

/* Opens path for reading by the rules of tapegrad/file.h: on success *fd is a descriptor of
 * a regular file (back in blocking mode) and *size its size, at most max_bytes (0: the
 * default); the caller closes *fd. */
tg_status tg_file_open_regular(const char *fn, const char *path, uint64_t max_bytes, int *fd,
                               uint64_t *size);

/* Reads exactly n bytes from fd (retrying short reads), or fails naming path. */
tg_status tg_file_read_exact(const char *fn, const char *path, int fd, void *buf, size_t n);

/* Writes the whole new file content to fd; false with errno set on failure. */
typedef bool (*tg_file_fill_fn)(int fd, void *ctx);

/* Replaces path atomically with what fill writes: a crash at any moment leaves either the old
 * file or the new one, complete, and no file of ours beside it that a later save would not
 * remove (see tensor/file.c). Temporary names are "<path>.tmp.<pid>". */
tg_status tg_file_save_atomic(const char *fn, const char *path, tg_file_fill_fn fill, void *ctx);

/* Whether the open file fd of `size` bytes can be a temporary file of the caller's format. */
typedef bool (*tg_file_temp_check_fn)(int fd, uint64_t size);

/* Removes from path's folder the temporary files "<name>.tmp.<pid>" that saves of processes
 * no longer alive left behind: regular files owned by this user, whose content looks_ours
 * accepts. Errors are ignored (it is housekeeping); returns how many were removed. */
int tg_file_remove_stale_temps(const char *path, tg_file_temp_check_fn looks_ours);

#endif
