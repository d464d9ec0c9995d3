/*
 * Helpers shared by the libFuzzer harnesses (fuzz/NAME_fuzz.c): an arena
 * allocator for the core's pool-style allocations, a deterministic
 * chunk splitter, and a check that aborts with a message (libFuzzer and
 * the replay driver both report an abort as a failure).
 */

#ifndef _GI2_FUZZ_H_INCLUDED_
#define _GI2_FUZZ_H_INCLUDED_


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define FZ_CHECK(cond, what)                                                 \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz check failed: %s (%s:%d): %s\n", what,     \
                    __FILE__, __LINE__, #cond);                              \
            abort();                                                         \
        }                                                                    \
    } while (0)


/* a pool: every block lives until fz_arena_reset() */

typedef struct {
    void                **blocks;
    size_t                n;
    size_t                cap;
} fz_arena_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void *fz_arena_alloc(void *data, size_t size);
static inline void fz_arena_reset(fz_arena_t *a);
static inline void *fz_malloc(void *data, size_t size);
static inline void fz_free(void *data, void *p);
static inline uint64_t fz_hash(const uint8_t *data, size_t size);
static inline uint64_t fz_next(uint64_t *state);
static inline size_t fz_piece(uint64_t *state, size_t left);


static inline void *
fz_arena_alloc(void *data, size_t size)
{
    void        *p, **b;
    fz_arena_t  *a;

    a = data;

    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;

        b = realloc(a->blocks, a->cap * sizeof(void *));
        if (b == NULL) {
            abort();
        }

        a->blocks = b;
    }

    p = malloc(size ? size : 1);
    if (p == NULL) {
        abort();
    }

    a->blocks[a->n++] = p;

    return p;
}


static inline void
fz_arena_reset(fz_arena_t *a)
{
    size_t  i;

    for (i = 0; i < a->n; i++) {
        free(a->blocks[i]);
    }

    a->n = 0;
}


static inline void *
fz_malloc(void *data, size_t size)
{
    (void) data;

    return malloc(size);
}


static inline void
fz_free(void *data, void *p)
{
    (void) data;

    free(p);
}


/* FNV-1a: the split pattern follows from the input, so it reproduces */

static inline uint64_t
fz_hash(const uint8_t *data, size_t size)
{
    size_t    i;
    uint64_t  h;

    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < size; i++) {
        h = (h ^ data[i]) * 0x100000001b3ULL;
    }

    return h;
}


/* splitmix64 */

static inline uint64_t
fz_next(uint64_t *state)
{
    uint64_t  z;

    z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


/* the next piece: mostly tiny, sometimes large, never empty */

static inline size_t
fz_piece(uint64_t *state, size_t left)
{
    size_t    n;
    uint64_t  r;

    r = fz_next(state);

    switch (r & 3) {
    case 0:
        n = 1;
        break;
    case 1:
        n = 1 + (size_t) ((r >> 8) % 7);
        break;
    case 2:
        n = 1 + (size_t) ((r >> 8) % 64);
        break;
    default:
        n = 1 + (size_t) ((r >> 8) % 4096);
    }

    return (n < left) ? n : left;
}


#endif /* _GI2_FUZZ_H_INCLUDED_ */
