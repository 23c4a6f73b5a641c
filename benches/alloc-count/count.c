/* Counts malloc/realloc/calloc calls of a process (LD_PRELOAD) and prints them at exit. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <unistd.h>
static atomic_long n_malloc, n_realloc, n_calloc;
static void *(*real_malloc)(size_t);
static void *(*real_realloc)(void *, size_t);
static void *(*real_calloc)(size_t, size_t);
void *malloc(size_t s) { if (!real_malloc) real_malloc = dlsym(RTLD_NEXT, "malloc"); atomic_fetch_add(&n_malloc, 1); return real_malloc(s); }
void *realloc(void *p, size_t s) { if (!real_realloc) real_realloc = dlsym(RTLD_NEXT, "realloc"); atomic_fetch_add(&n_realloc, 1); return real_realloc(p, s); }
static char tmp[4096]; static int in_calloc;
void *calloc(size_t a, size_t b) { if (!real_calloc) { if (in_calloc) return tmp; in_calloc = 1; real_calloc = dlsym(RTLD_NEXT, "calloc"); in_calloc = 0; } atomic_fetch_add(&n_calloc, 1); return real_calloc(a, b); }
__attribute__((destructor)) static void report(void) { char b[200]; int l = snprintf(b, sizeof b, "ALLOC pid=%d malloc=%ld realloc=%ld calloc=%ld\n", getpid(), n_malloc, n_realloc, n_calloc); write(2, b, l); }
