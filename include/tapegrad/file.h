/* tapegrad/file.h — reading files that come from outside the program, by one set of rules.
 * Layer: tensor.
 *
 * Every loader of the library (tg_safetensors_read, tg_params_load, tg_file_read) opens its
 * file with O_NONBLOCK, O_CLOEXEC and O_NOCTTY, fstat()s the descriptor it got and accepts
 * only a regular file (a symbolic link to one is fine): a FIFO, a device, a directory or a
 * socket is refused at once with TG_ERR_IO and a message such as
 *   tg_file_read: 'x.fifo' is a FIFO, not a regular file
 * so that a path given by mistake can neither block the program nor make it read forever.
 * A file larger than the caller's limit is refused before anything is allocated. */
#ifndef TAPEGRAD_FILE_H
#define TAPEGRAD_FILE_H

#include "tapegrad/base.h"

/* The size limit of every loader when the caller gives none (max_bytes 0): 4 GiB. */
#define TG_FILE_MAX_BYTES_DEFAULT ((uint64_t)4 << 30)

/* Reads the whole regular file at path into a malloc'd buffer with a NUL byte after its
 * last byte (so text can be used as a C string; *size does not count it). A file longer than
 * max_bytes (0: TG_FILE_MAX_BYTES_DEFAULT) is refused. On failure *data is NULL, *size 0 and
 * tg_error_message() says why. Free *data with free(). */
tg_status tg_file_read(const char *path, uint64_t max_bytes, char **data, size_t *size);

/* Maps the whole regular file at path read-only (mmap), opened and checked as tg_file_read
 * does: its pages are read when first touched and, being the file's own, the kernel may drop
 * them again under memory pressure, so a file larger than memory can be read through it. An
 * empty file gives *size 0 and a valid (empty) *data. On failure *data is NULL, *size 0 and
 * tg_error_message() says why. Release with tg_file_unmap(*data, *size). */
tg_status tg_file_map(const char *path, uint64_t max_bytes, const unsigned char **data,
                      size_t *size);
void tg_file_unmap(const unsigned char *data, size_t size); /* NULL or size 0: no-op */

/* True when both paths exist and name the same file (same device and inode, symbolic links
 * followed): e.g. for refusing a checkpoint path that is one of the program's inputs. */
bool tg_file_same(const char *path_a, const char *path_b);

#endif
