/* Where a failure happened: the call stack of tg_fail's caller, printed by the default error
 * handler with the library's own frames left out, so that its first line is the user's call:
 *
 *       called from train_step (train.c:42)
 *              from main (train.c:97)
 *
 * glibc's backtrace() gives the return addresses. With elfutils' libdw (meson finds it when
 * Debian's libdw-dev is installed; TG_HAVE_LIBDW) each address is resolved through the DWARF
 * of the module that holds it to a function name and, for code built with -g, file:line.
 * Without libdw, or for a module without debug information, dladdr gives the exported symbol
 * name and the module and offset (for addr2line). */
#define _GNU_SOURCE /* dladdr */
#include "backtrace_internal.h"

#ifdef __EMSCRIPTEN__
/* WebAssembly has no backtrace(): the browser's console shows the wasm and JavaScript stack. */
void tg_backtrace_print(FILE *out) { (void)out; }
#else

#include <dlfcn.h>
#include <execinfo.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef TG_HAVE_LIBDW
#include <elfutils/libdwfl.h>
#endif

enum { MAX_FRAMES = 64 };

typedef struct frame_info {
    const char *function; /* NULL if unknown */
    const char *file;     /* NULL if unknown */
    int line;
    const char *module; /* path of the program or shared object holding the address */
    uintptr_t offset;   /* address - module base, what addr2line takes */
    const void *base;   /* the module's load address */
} frame_info;

#ifdef TG_HAVE_LIBDW
/* The session reads /proc/self/maps once; NULL when libdw cannot start. */
static Dwfl *dwfl_open(void) {
    static char *debuginfo_path = NULL;
    static const Dwfl_Callbacks callbacks = {
        .find_elf = dwfl_linux_proc_find_elf,
        .find_debuginfo = dwfl_standard_find_debuginfo,
        .debuginfo_path = &debuginfo_path,
    };
    Dwfl *d = dwfl_begin(&callbacks);
    if (!d) return NULL;
    if (dwfl_linux_proc_report(d, getpid()) != 0 || dwfl_report_end(d, NULL, NULL) != 0) {
        dwfl_end(d);
        return NULL;
    }
    return d;
}

static void dwfl_resolve(Dwfl *d, uintptr_t pc, frame_info *f) {
    Dwfl_Module *mod = d ? dwfl_addrmodule(d, pc) : NULL;
    if (!mod) return;
    const char *name = dwfl_module_addrname(mod, pc);
    if (name) f->function = name;
    Dwfl_Line *line = dwfl_module_getsrc(mod, pc);
    int lineno = 0;
    const char *file = line ? dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL) : NULL;
    if (file && lineno > 0) f->file = file, f->line = lineno;
}
#endif

/* A return address points after the call; the call's own line is at the byte before. */
static frame_info frame_resolve(void *d, void *return_address) {
    const uintptr_t pc = (uintptr_t)return_address - 1;
    frame_info f = {0};
    Dl_info info;
    if (dladdr((void *)pc, &info)) {
        f.function = info.dli_sname;
        f.module = info.dli_fname;
        f.base = info.dli_fbase;
        f.offset = pc - (uintptr_t)info.dli_fbase;
    }
#ifdef TG_HAVE_LIBDW
    dwfl_resolve(d, pc, &f);
#else
    (void)d;
#endif
    return f;
}

/* The path as the user would write it: relative to the working directory when under it. */
static const char *path_shorten(const char *path, const char *cwd) {
    const size_t n = cwd ? strlen(cwd) : 0;
    if (n > 1 && strncmp(path, cwd, n) == 0 && path[n] == '/') return path + n + 1;
    return path;
}

static void frame_print(FILE *out, const char *lead, const frame_info *f, const char *cwd) {
    fprintf(out, "  %s %s", lead, f->function ? f->function : "??");
    if (f->file)
        fprintf(out, " (%s:%d)\n", path_shorten(f->file, cwd), f->line);
    else if (f->module)
        fprintf(out, " (%s+0x%jx)\n", path_shorten(f->module, cwd), (uintmax_t)f->offset);
    else
        fputc('\n', out);
}

static bool named_tg(const frame_info *f) {
    return f->function && strncmp(f->function, "tg_", 3) == 0;
}

void tg_backtrace_print(FILE *out) {
    void *pcs[MAX_FRAMES];
    const int n = backtrace(pcs, MAX_FRAMES);
    void *d = NULL;
#ifdef TG_HAVE_LIBDW
    Dwfl *dwfl = dwfl_open();
    d = dwfl;
#endif
    frame_info frames[MAX_FRAMES];
    int count = 0;
    while (count < n) {
        const frame_info *f = &frames[count];
        frames[count] = frame_resolve(d, pcs[count]);
        count++;
        /* Below main is the C library's start-up code: nothing of the user's. */
        if (f->function && strcmp(f->function, "main") == 0) break;
    }
    /* The library's frames are those in the module that holds this code. When that module is
     * a shared object, they are the leading frames in it, and the first frame outside is the
     * user's call (a callback the library runs, as in tg_gradcheck, counts as the user's).
     * When the library is linked into the program itself every frame is in one module; then
     * the user's call is the frame after the last tg_-named one. */
    Dl_info self;
    const void *library =
        dladdr((void *)(uintptr_t)&tg_backtrace_print, &self) ? self.dli_fbase : NULL;
    int first = 0;
    /* frames before the library's own: a sanitizer's interceptor of backtrace() */
    while (first < count && frames[first].base != library) first++;
    while (first < count && frames[first].base == library) first++;
    if (first == count) {
        first = 0;
        for (int i = 0; i < count; i++)
            if (named_tg(&frames[i])) first = i + 1;
    }
    char *cwd = getcwd(NULL, 0);
    for (int i = first; i < count; i++)
        frame_print(out, i == first ? "called from" : "       from", &frames[i], cwd);
    if (first == count) fprintf(out, "  (no frame outside tapegrad found)\n");
    free(cwd);
#ifdef TG_HAVE_LIBDW
    if (dwfl) dwfl_end(dwfl);
#endif
}

#endif /* __EMSCRIPTEN__ */
