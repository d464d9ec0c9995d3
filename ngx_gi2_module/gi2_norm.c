/*
 * ngx_gi2_module: prompt normalizer.
 *
 * Rules are matched against one canonical form so that width, case,
 * invisible characters and spacing tricks cannot hide a word: NFKC with
 * case folding (utf8proc), format and default-ignorable characters
 * dropped, controls and whitespace runs folded to one space.
 */

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "gi2_core.h"


#define GI2_NORM_OPTIONS  (UTF8PROC_STABLE | UTF8PROC_DECOMPOSE              \
                           | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD             \
                           | UTF8PROC_IGNORE)


static int gi2_normalize_ascii(const unsigned char *in, size_t len,
    gi2_str_t *out, gi2_alloc_t *a);
static int gi2_is_space(utf8proc_int32_t c);
static int gi2_is_ascii(const unsigned char *p, size_t len);


/* ASCII folding: controls and space to ' ', A-Z to a-z */

static const unsigned char  gi2_ascii_fold[128] = {
    ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
    ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
    ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
    ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
    ' ', '!', '"', '#', '$', '%', '&', '\'',
    '(', ')', '*', '+', ',', '-', '.', '/',
    '0', '1', '2', '3', '4', '5', '6', '7',
    '8', '9', ':', ';', '<', '=', '>', '?',
    '@', 'a', 'b', 'c', 'd', 'e', 'f', 'g',
    'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w',
    'x', 'y', 'z', '[', '\\', ']', '^', '_',
    '`', 'a', 'b', 'c', 'd', 'e', 'f', 'g',
    'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w',
    'x', 'y', 'z', '{', '|', '}', '~', ' '
};


static int
gi2_is_ascii(const unsigned char *p, size_t len)
{
    size_t    i;
    uint64_t  w, acc;

    acc = 0;

    for (i = 0; len - i >= 8; i += 8) {
        memcpy(&w, p + i, 8);
        acc |= w;
    }

    for ( /* void */ ; i < len; i++) {
        acc |= p[i];
    }

    return (acc & GI2_HIGHS) == 0;
}


int
gi2_utf8_valid(const unsigned char *p, size_t len)
{
    size_t          i, n;
    uint32_t        c, min;
    uint64_t        w;
    unsigned char   b;

    i = 0;

    while (i < len) {
        b = p[i];

        if (b < 0x80) {
            if (len - i >= 8) {
                memcpy(&w, p + i, 8);

                if ((w & GI2_HIGHS) == 0) {
                    i += 8;
                    continue;
                }
            }

            i++;
            continue;
        }

        if (b >= 0xc2 && b <= 0xdf) {
            n = 1; c = b & 0x1f; min = 0x80;

        } else if (b >= 0xe0 && b <= 0xef) {
            n = 2; c = b & 0x0f; min = 0x800;

        } else if (b >= 0xf0 && b <= 0xf4) {
            n = 3; c = b & 0x07; min = 0x10000;

        } else {
            return 0;
        }

        if (len - i <= n) {
            return 0;
        }

        for (i++; n; n--, i++) {
            if ((p[i] & 0xc0) != 0x80) {
                return 0;
            }

            c = (c << 6) | (p[i] & 0x3f);
        }

        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}


int
gi2_normalize(const unsigned char *in, size_t len, gi2_str_t *out,
    gi2_alloc_t *a)
{
    size_t              cap;
    unsigned char      *dst;
    utf8proc_int32_t   *buf, c;
    utf8proc_ssize_t    n, m, j;
    int                 space, cat;

    if (gi2_is_ascii(in, len)) {
        return gi2_normalize_ascii(in, len, out, a);
    }

    if (!gi2_utf8_valid(in, len)) {
        return GI2_EINVAL;
    }

    /* decomposition seldom more than doubles; retry once with the size */

    cap = len * 2 + 16;

    for ( ;; ) {
        buf = a->alloc(a->data, cap * sizeof(utf8proc_int32_t) + 1);
        if (buf == NULL) {
            return GI2_ENOMEM;
        }

        n = utf8proc_decompose(in, (utf8proc_ssize_t) len, buf,
                               (utf8proc_ssize_t) cap, GI2_NORM_OPTIONS);
        if (n < 0) {
            if (a->free) {
                a->free(a->data, buf);
            }

            return (n == UTF8PROC_ERROR_NOMEM) ? GI2_ENOMEM : GI2_EINVAL;
        }

        if ((size_t) n <= cap) {
            break;
        }

        if (a->free) {
            a->free(a->data, buf);
        }

        cap = (size_t) n;
    }

    /* drop format characters, fold controls and white space runs */

    m = 0;
    space = 1;

    for (j = 0; j < n; j++) {
        c = buf[j];
        cat = utf8proc_category(c);

        if (cat == UTF8PROC_CATEGORY_CF) {
            continue;
        }

        if (gi2_is_space(c) || cat == UTF8PROC_CATEGORY_CC) {
            if (!space) {
                buf[m++] = ' ';
                space = 1;
            }

            continue;
        }

        buf[m++] = c;
        space = 0;
    }

    if (m && buf[m - 1] == ' ') {
        m--;
    }

    m = utf8proc_normalize_utf32(buf, m,
                                 UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0) {
        return GI2_EINVAL;
    }

    /* re-encoding in place: four bytes a code point always fit */

    m = utf8proc_reencode(buf, m, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0) {
        return GI2_EINVAL;
    }

    dst = (unsigned char *) buf;
    dst[m] = '\0';

    out->data = dst;
    out->len = (size_t) m;

    return GI2_OK;
}


static void *
gi2_norm_malloc(void *data, size_t size)
{
    (void) data;

    return malloc(size);
}


static void
gi2_norm_free(void *data, void *p)
{
    (void) data;

    free(p);
}


int
gi2_pattern_folds(const unsigned char *p, size_t len)
{
    int                changed;
    size_t             i, m;
    gi2_str_t          norm;
    gi2_alloc_t        a;
    unsigned char     *low;
    utf8proc_int32_t   c;
    utf8proc_ssize_t   n;

    if (gi2_is_ascii(p, len)) {
        return 0;
    }

    a.alloc = gi2_norm_malloc;
    a.data = NULL;
    a.free = gi2_norm_free;

    /* gi2_normalize allocates once on success */

    if (gi2_normalize(p, len, &norm, &a) != GI2_OK) {
        return 0;
    }

    low = malloc(len * 4 + 1);
    if (low == NULL) {
        free((void *) norm.data);
        return 0;
    }

    m = 0;

    for (i = 0; i < len; i += n) {
        n = utf8proc_iterate(p + i, len - i, &c);
        if (n <= 0) {
            break;
        }

        m += utf8proc_encode_char(utf8proc_tolower(c), low + m);
    }

    changed = (m != norm.len || memcmp(low, norm.data, m) != 0);

    free(low);
    free((void *) norm.data);

    return changed;
}


static int
gi2_normalize_ascii(const unsigned char *in, size_t len, gi2_str_t *out,
    gi2_alloc_t *a)
{
    size_t          i, m;
    uint64_t        w, x, ctl, del, sp, up;
    unsigned char  *dst, c;
    int             space;

    dst = a->alloc(a->data, len + 1);
    if (dst == NULL) {
        return GI2_ENOMEM;
    }

    m = 0;
    space = 1;
    i = 0;

    while (i < len) {

        /*
         * Eight bytes a step while they need no more than lowercasing:
         * no controls, no DEL, no space after a space.  All bytes are
         * below 0x80 here, so the additions cannot carry between bytes.
         */

#if (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
        if (len - i >= 8) {
            memcpy(&w, in + i, 8);

            ctl = ~(w + GI2_ONES * (0x80 - 0x20)) & GI2_HIGHS;
            x = w ^ (GI2_ONES * 0x7f);
            del = ~(((x & ~GI2_HIGHS) + ~GI2_HIGHS) | x) & GI2_HIGHS;
            x = w ^ (GI2_ONES * ' ');
            sp = ~(((x & ~GI2_HIGHS) + ~GI2_HIGHS) | x) & GI2_HIGHS;

            /* little-endian: byte k is bits 8k..8k+7 */

            if ((ctl | del | (sp & (sp << 8)) | (space ? (sp & 0x80) : 0))
                == 0)
            {
                up = (w + GI2_ONES * (0x80 - 'A'))
                     & ~(w + GI2_ONES * (0x80 - 'Z' - 1)) & GI2_HIGHS;
                w |= up >> 2;

                memcpy(dst + m, &w, 8);
                m += 8;
                i += 8;
                space = (sp >> 63) & 1;
                continue;
            }
        }
#endif

        /* branch-free: a space is written, then kept only after another */

        c = gi2_ascii_fold[in[i++]];
        dst[m] = c;
        m += !(c == ' ' && space);
        space = (c == ' ');
    }

    if (m && dst[m - 1] == ' ') {
        m--;
    }

    dst[m] = '\0';

    out->data = dst;
    out->len = m;

    return GI2_OK;
}


static int
gi2_is_space(utf8proc_int32_t c)
{
    int  cat;

    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || c == 0x85) {
        return 1;
    }

    cat = utf8proc_category(c);

    return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL
           || cat == UTF8PROC_CATEGORY_ZP;
}
