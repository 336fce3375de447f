/* Files from outside the program: the loaders' opening rules (tapegrad/file.h), atomic
 * saving, and the removal of what crashed saves left behind.
 *
 * Saving. The new content goes to an unnamed file in the target's folder (O_TMPFILE), is
 * fsynced, and only then gets a name, "<path>.tmp.<pid>", through linkat; that name is renamed
 * over path and the folder is fsynced. Until linkat the file has no name, so a process killed
 * while writing leaves nothing behind. linkat cannot replace an existing file, hence the
 * short-lived temporary name before the rename. Where the filesystem or the kernel has no
 * O_TMPFILE, or the link fails (no /proc, while AT_EMPTY_PATH needs a capability), the content
 * is written to "<path>.tmp.<pid>" directly. A process killed between naming and renaming, or
 * during the fallback, leaves "<path>.tmp.<pid>" of a dead process: the savers and loaders
 * remove such files from their folder (tg_file_remove_stale_temps). A pid is only meaningful
 * in its own pid namespace: two containers saving into one shared folder at once could take
 * each other's temporary file for stale, which makes that save fail, never a file corrupt. */
#define _GNU_SOURCE /* O_TMPFILE, AT_EMPTY_PATH */

#include "file_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Paths are cut to this many bytes in messages (tg_error_message holds 512 bytes). */
#define PATH_FMT "'%.200s'"

/* ---------------------------------------------------------------- reading */

static const char *file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "a file of unknown type";
}

static tg_status not_regular(const char *fn, const char *path, mode_t mode) {
    return tg_status_set(TG_ERR_IO, "%s: " PATH_FMT " is %s, not a regular file", fn, path,
                         file_kind(mode));
}

tg_status tg_file_open_regular(const char *fn, const char *path, uint64_t max_bytes, int *fd_out,
                               uint64_t *size_out) {
    *fd_out = -1;
    *size_out = 0;
    if (!path || !*path) return tg_status_set(TG_ERR_ARGUMENT, "%s: path is NULL or empty", fn);
    if (max_bytes == 0) max_bytes = TG_FILE_MAX_BYTES_DEFAULT;
    /* O_NONBLOCK: opening a FIFO that has no writer would otherwise wait for one forever.
     * O_NOCTTY: a terminal opened by mistake must not become our controlling terminal. */
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat sb;
    if (fd < 0) {
        const int err = errno;
        /* a socket cannot be opened at all (ENXIO): say what it is rather than why not */
        if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) return not_regular(fn, path, sb.st_mode);
        return tg_status_set(TG_ERR_IO, "%s: cannot open " PATH_FMT ": %s", fn, path,
                             strerror(err));
    }
    tg_status s = TG_OK;
    int flags;
    if (fstat(fd, &sb) != 0) {
        s = tg_status_set(TG_ERR_IO, "%s: cannot stat " PATH_FMT ": %s", fn, path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        s = not_regular(fn, path, sb.st_mode);
    } else if ((uint64_t)sb.st_size > max_bytes) {
        s = tg_status_set(TG_ERR_IO,
                          "%s: " PATH_FMT " is %" PRIu64 " bytes, more than the limit of %" PRIu64
                          " bytes",
                          fn, path, (uint64_t)sb.st_size, max_bytes);
    } else if ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        /* Back to blocking reads: Linux ignores O_NONBLOCK on regular files, but a network
         * or FUSE filesystem may answer EAGAIN instead of waiting for the data. */
        s = tg_status_set(TG_ERR_IO, "%s: cannot use " PATH_FMT ": %s", fn, path, strerror(errno));
    }
    if (s != TG_OK) {
        close(fd);
        return s;
    }
    *fd_out = fd;
    *size_out = (uint64_t)sb.st_size;
    return TG_OK;
}

tg_status tg_file_read_exact(const char *fn, const char *path, int fd, void *buf, size_t n) {
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        const ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            const int err = r < 0 ? errno : 0;
            return tg_status_set(
                TG_ERR_IO, "%s: reading " PATH_FMT " failed after %zu of %zu bytes%s%s", fn, path,
                got, n, err ? ": " : " (the file shrank)", err ? strerror(err) : "");
        }
        got += (size_t)r;
    }
    return TG_OK;
}

tg_status tg_file_read(const char *path, uint64_t max_bytes, char **data, size_t *size) {
    const char *fn = "tg_file_read";
    if (!data || !size) return tg_status_set(TG_ERR_ARGUMENT, "%s: data or size is NULL", fn);
    *data = NULL;
    *size = 0;
    int fd;
    uint64_t n;
    tg_status s = tg_file_open_regular(fn, path, max_bytes, &fd, &n);
    if (s != TG_OK) return s;
    char *buf = n < SIZE_MAX ? malloc((size_t)n + 1) : NULL;
    if (!buf)
        s = tg_status_set(TG_ERR_NOMEM, "%s: out of memory for the %" PRIu64 " bytes of " PATH_FMT,
                          fn, n, path);
    else
        s = tg_file_read_exact(fn, path, fd, buf, (size_t)n);
    close(fd);
    if (s != TG_OK) {
        free(buf);
        return s;
    }
    buf[n] = '\0';
    *data = buf;
    *size = (size_t)n;
    return TG_OK;
}

tg_status tg_file_map(const char *path, uint64_t max_bytes, const unsigned char **data,
                      size_t *size) {
    const char *fn = "tg_file_map";
    if (!data || !size) return tg_status_set(TG_ERR_ARGUMENT, "%s: data or size is NULL", fn);
    *data = NULL;
    *size = 0;
    int fd;
    uint64_t n;
    const tg_status s = tg_file_open_regular(fn, path, max_bytes, &fd, &n);
    if (s != TG_OK) return s;
    if (n == 0) { /* mmap refuses a length of 0; an empty file maps to an empty array */
        close(fd);
        static const unsigned char empty[1];
        *data = empty;
        return TG_OK;
    }
    void *map = n < SIZE_MAX ? mmap(NULL, (size_t)n, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    const int err = errno;
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED)
        return tg_status_set(TG_ERR_IO, "%s: cannot map " PATH_FMT ": %s", fn, path, strerror(err));
    *data = map;
    *size = (size_t)n;
    return TG_OK;
}

void tg_file_unmap(const unsigned char *data, size_t size) {
    if (data && size) munmap((void *)(uintptr_t)data, size);
}

bool tg_file_same(const char *path_a, const char *path_b) {
    struct stat a, b;
    return path_a && path_b && stat(path_a, &a) == 0 && stat(path_b, &b) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* ---------------------------------------------------------------- saving */

/* The folder that holds path ("." for a bare name), malloc'd; NULL when out of memory. */
static char *folder_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Makes a rename durable: fsync the folder. 0 or an errno value. */
static int sync_folder(const char *dir) {
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    int err = 0;
    /* Some filesystems cannot fsync a directory; that is no reason to fail the save. */
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) err = errno;
    close(fd);
    return err;
}

typedef enum { SAVE_DONE, SAVE_FAILED, SAVE_UNSUPPORTED } save_result;

/* Writes the content into the open file fd and makes it durable; false with errno and *step. */
static bool fill_and_sync(int fd, tg_file_fill_fn fill, void *ctx, const char **step) {
    *step = "cannot write the temporary file";
    if (!fill(fd, ctx)) return false;
    *step = "cannot fsync the temporary file";
    return fsync(fd) == 0;
}

/* Gives the unnamed file fd the name tmp. A file already there can only be from an earlier
 * process that had our pid and died mid-save: it is replaced. */
static bool link_unnamed(int fd, const char *tmp) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) == 0) return true;
        if (errno == ENOENT && linkat(fd, "", AT_FDCWD, tmp, AT_EMPTY_PATH) == 0) return true;
        if (errno != EEXIST) return false;
        unlink(tmp);
    }
    return false;
}

/* The content as an O_TMPFILE in dir, then linked as tmp. SAVE_UNSUPPORTED when this way is
 * not available here (nothing is left behind); SAVE_FAILED with errno and *step. */
static save_result save_unnamed(const char *dir, const char *tmp, tg_file_fill_fn fill, void *ctx,
                                const char **step) {
#ifdef O_TMPFILE
    *step = "cannot create the temporary file";
    const int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0) /* kernels before O_TMPFILE take it for O_DIRECTORY: EISDIR */
        return errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL ? SAVE_UNSUPPORTED
                                                                         : SAVE_FAILED;
    if (!fill_and_sync(fd, fill, ctx, step)) {
        const int err = errno;
        close(fd);
        errno = err;
        return SAVE_FAILED;
    }
    if (!link_unnamed(fd, tmp)) {
        close(fd);
        return SAVE_UNSUPPORTED;
    }
    *step = "cannot close the temporary file";
    if (close(fd) != 0) {
        const int err = errno;
        unlink(tmp);
        errno = err;
        return SAVE_FAILED;
    }
    return SAVE_DONE;
#else
    (void)dir, (void)tmp, (void)fill, (void)ctx, (void)step;
    return SAVE_UNSUPPORTED;
#endif
}

/* The content written to tmp directly; on failure tmp is removed. */
static save_result save_named(const char *tmp, tg_file_fill_fn fill, void *ctx, const char **step) {
    *step = "cannot create the temporary file";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST) {
        /* left by an earlier process with our pid that died mid-save */
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    if (fd < 0) return SAVE_FAILED;
    bool ok = fill_and_sync(fd, fill, ctx, step);
    int err = errno;
    if (close(fd) != 0 && ok) {
        err = errno;
        *step = "cannot close the temporary file";
        ok = false;
    }
    if (ok) return SAVE_DONE;
    unlink(tmp);
    errno = err;
    return SAVE_FAILED;
}

tg_status tg_file_save_atomic(const char *fn, const char *path, tg_file_fill_fn fill, void *ctx) {
    const size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len), *dir = folder_of(path);
    if (!tmp || !dir) {
        free(tmp), free(dir);
        return tg_status_set(TG_ERR_NOMEM, "%s: " PATH_FMT ": out of memory", fn, path);
    }
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());

    const char *step = "";
    save_result r = save_unnamed(dir, tmp, fill, ctx, &step);
    if (r == SAVE_UNSUPPORTED) r = save_named(tmp, fill, ctx, &step);
    if (r == SAVE_DONE && rename(tmp, path) != 0) {
        const int err = errno;
        step = "cannot rename the temporary file over it";
        unlink(tmp);
        errno = err;
        r = SAVE_FAILED;
    }
    tg_status s = TG_OK;
    if (r == SAVE_FAILED) {
        s = tg_status_set(TG_ERR_IO, "%s: '%.160s': %s (%.160s): %s", fn, path, step, tmp,
                          strerror(errno));
    } else {
        const int err = sync_folder(dir);
        if (err)
            s = tg_status_set(TG_ERR_IO, "%s: " PATH_FMT ": saved, but cannot fsync its folder: %s",
                              fn, path, strerror(err));
    }
    free(tmp);
    free(dir);
    return s;
}

/* ---------------------------------------------------------------- stale temporary files */

/* The pid of a name "<name>.tmp.<pid>", or 0 when the name has not that form. */
static pid_t temp_owner(const char *name) {
    const char *mark = NULL;
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp.")) mark = p;
    if (!mark || mark == name || !mark[5]) return 0;
    long pid = 0;
    for (const char *d = mark + 5; *d; d++) {
        if (*d < '0' || *d > '9' || pid > INT_MAX / 10) return 0;
        pid = pid * 10 + (*d - '0');
    }
    return pid <= INT_MAX ? (pid_t)pid : 0;
}

/* kill(pid, 0) fails with ESRCH only when no such process exists (EPERM: it exists). */
static bool process_alive(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

int tg_file_remove_stale_temps(const char *path, tg_file_temp_check_fn looks_ours) {
    if (!path) return 0;
    char *dir = folder_of(path);
    const int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    free(dir);
    if (dfd < 0) return 0;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return 0;
    }
    int removed = 0;
    const struct dirent *de;
    while ((de = readdir(d))) {
        const pid_t pid = temp_owner(de->d_name);
        if (pid <= 0 || process_alive(pid)) continue;
        /* O_NOFOLLOW: a symbolic link is never ours; O_NONBLOCK: nor is a FIFO, which must
         * not block us either */
        const int fd =
            openat(dfd, de->d_name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) continue;
        struct stat sb, again;
        const bool ours = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_uid == geteuid() &&
                          looks_ours(fd, (uint64_t)sb.st_size);
        close(fd);
        /* and it is still the file that was looked at */
        if (ours && fstatat(dfd, de->d_name, &again, AT_SYMLINK_NOFOLLOW) == 0 &&
            again.st_dev == sb.st_dev && again.st_ino == sb.st_ino &&
            unlinkat(dfd, de->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}
