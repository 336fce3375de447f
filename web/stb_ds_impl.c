/* web/stb_ds_impl.c — the implementation of stb_ds (the tape's growing arrays) for the
 * WebAssembly build: natively it comes from Debian's libstb, which has no wasm build; the
 * header is the same package's (libstb-dev). */
#define STB_DS_IMPLEMENTATION
#include <stb_ds.h>
