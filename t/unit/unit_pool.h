/*
 * Shared by C unit tests: a pool allocator for gi2_alloc_t (everything
 * freed at once, after each parse) and a seeded xorshift64* generator, so
 * that random cases are the same on every run.  Each test sets unit_state
 * to its own seed.
 */

#ifndef _UNIT_POOL_H_INCLUDED_
#define _UNIT_POOL_H_INCLUDED_


#include <stdint.h>
#include <stdlib.h>


typedef struct unit_blk_s  unit_blk_t;

struct unit_blk_s {
    unit_blk_t          *next;
    size_t               pad;       /* keeps what follows 16-byte aligned */
};

typedef struct {
    unit_blk_t          *head;
} unit_pool_t;


static uint64_t  unit_state;


static void *
unit_alloc(void *data, size_t size)
{
    unit_pool_t  *pool = data;
    unit_blk_t   *b;

    b = malloc(sizeof(unit_blk_t) + size);
    if (b == NULL) {
        return NULL;
    }

    b->next = pool->head;
    pool->head = b;

    return b + 1;
}


static void
unit_pool_free(unit_pool_t *pool)
{
    unit_blk_t  *b, *next;

    for (b = pool->head; b; b = next) {
        next = b->next;
        free(b);
    }

    pool->head = NULL;
}


/* xorshift64* */

static uint64_t
unit_rand(void)
{
    unit_state ^= unit_state >> 12;
    unit_state ^= unit_state << 25;
    unit_state ^= unit_state >> 27;

    return unit_state * 0x2545f4914f6cdd1dULL;
}


static size_t
unit_rnd(size_t n)
{
    return (size_t) ((unit_rand() >> 11) % n);
}


#endif /* _UNIT_POOL_H_INCLUDED_ */
