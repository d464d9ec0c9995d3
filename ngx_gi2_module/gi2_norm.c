/*
 * ngx_gi2_module: prompt normalizer.
 *
 * Rules are matched against one canonical form so that width, case,
 * invisible characters and spacing tricks cannot hide a word: NFKC with
 * case folding (utf8proc), format and default-ignorable characters
 * dropped, controls and whitespace runs folded to one space.
 *
 * The skeleton (gi2_skeleton) goes one step further for matching only:
 * accents stripped and the Cyrillic, Greek and other letters that look
 * like Latin ones replaced by those, so "nud\u0435" (Cyrillic e) and
 * "nud\u00e9" read "nude".  It is a second text to match, not a
 * replacement of the first: rules written in those scripts still match
 * the normal form.
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
static int gi2_skeleton_cp(utf8proc_int32_t c);
static int gi2_norm_encode(utf8proc_int32_t *buf, utf8proc_ssize_t m,
    gi2_str_t *out);


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


/*
 * Look-alikes of Latin letters, as they are after case folding (so an
 * upper-case look-alike, e.g. Greek capital eta for H, is found by its
 * lower-case form), after Unicode's confusables (UTS #39) for the letters
 * used to spell words in Latin script.  Sorted by code point.
 */

typedef struct {
    uint16_t       cp;
    unsigned char  latin;
} gi2_lookalike_t;

static const gi2_lookalike_t  gi2_lookalikes[] = {
    { 0x0131, 'i' },    /* dotless i */
    { 0x0251, 'a' },    /* Latin alpha */
    { 0x0261, 'g' },    /* script g */
    { 0x0269, 'i' },    /* Latin iota */
    { 0x03b1, 'a' },    /* Greek alpha */
    { 0x03b2, 'b' },    /* beta, capital B */
    { 0x03b5, 'e' },    /* epsilon, capital E */
    { 0x03b6, 'z' },    /* zeta, capital Z */
    { 0x03b7, 'h' },    /* eta, capital H */
    { 0x03b9, 'i' },    /* iota */
    { 0x03ba, 'k' },    /* kappa */
    { 0x03bc, 'm' },    /* mu, capital M */
    { 0x03bd, 'n' },    /* nu, capital N */
    { 0x03bf, 'o' },    /* omicron */
    { 0x03c1, 'p' },    /* rho */
    { 0x03c4, 't' },    /* tau, capital T */
    { 0x03c5, 'y' },    /* upsilon, capital Y */
    { 0x03c7, 'x' },    /* chi */
    { 0x03c9, 'w' },    /* omega */
    { 0x0430, 'a' },    /* Cyrillic a */
    { 0x0432, 'b' },    /* ve, capital B */
    { 0x0435, 'e' },    /* ie */
    { 0x043a, 'k' },    /* ka */
    { 0x043c, 'm' },    /* em, capital M */
    { 0x043d, 'h' },    /* en, capital H */
    { 0x043e, 'o' },    /* o */
    { 0x0440, 'p' },    /* er */
    { 0x0441, 'c' },    /* es */
    { 0x0442, 't' },    /* te, capital T */
    { 0x0443, 'y' },    /* u */
    { 0x0445, 'x' },    /* ha */
    { 0x0455, 's' },    /* dze */
    { 0x0456, 'i' },    /* Ukrainian i */
    { 0x0458, 'j' },    /* je */
    { 0x0475, 'v' },    /* izhitsa */
    { 0x04af, 'y' },    /* straight u */
    { 0x04bb, 'h' },    /* shha */
    { 0x04cf, 'l' },    /* palochka */
    { 0x0501, 'd' },    /* komi de */
    { 0x051b, 'q' },    /* qa */
    { 0x051d, 'w' },    /* we */
    { 0x0578, 'n' },    /* Armenian vo */
    { 0x0585, 'o' }     /* Armenian oh */
};


/* the skeleton of one code point: -1 drop it, 0 keep it, else a letter */

static int
gi2_skeleton_cp(utf8proc_int32_t c)
{
    size_t  lo, hi, mid;

    /* combining diacritical marks of Latin, Greek and Cyrillic letters */

    if ((c >= 0x0300 && c <= 0x036f) || (c >= 0x1ab0 && c <= 0x1aff)
        || (c >= 0x1dc0 && c <= 0x1dff) || (c >= 0x20d0 && c <= 0x20ff)
        || (c >= 0xfe20 && c <= 0xfe2f))
    {
        return -1;
    }

    if (c < 0x0131 || c > 0x0585) {
        return 0;
    }

    lo = 0;
    hi = sizeof(gi2_lookalikes) / sizeof(gi2_lookalikes[0]);

    while (lo < hi) {
        mid = (lo + hi) / 2;

        if (gi2_lookalikes[mid].cp == c) {
            return gi2_lookalikes[mid].latin;
        }

        if (gi2_lookalikes[mid].cp < c) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return 0;
}


int
gi2_skeleton(const unsigned char *norm, size_t len, gi2_str_t *out,
    gi2_alloc_t *a)
{
    int                 k, changed;
    utf8proc_int32_t   *buf;
    utf8proc_ssize_t    n, m, j;

    out->data = NULL;
    out->len = 0;

    if (gi2_is_ascii(norm, len)) {
        return GI2_OK;
    }

    /* the normal form is composed: a decomposition is at most 4 times */

    buf = a->alloc(a->data, (len * 4 + 1) * sizeof(utf8proc_int32_t) + 1);
    if (buf == NULL) {
        return GI2_ENOMEM;
    }

    n = utf8proc_decompose(norm, (utf8proc_ssize_t) len, buf,
                           (utf8proc_ssize_t) (len * 4 + 1),
                           UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
    if (n < 0 || (size_t) n > len * 4 + 1) {
        if (a->free) {
            a->free(a->data, buf);
        }

        return (n == UTF8PROC_ERROR_NOMEM) ? GI2_ENOMEM : GI2_EINVAL;
    }

    changed = 0;
    m = 0;

    for (j = 0; j < n; j++) {
        k = gi2_skeleton_cp(buf[j]);

        if (k < 0) {
            changed = 1;
            continue;
        }

        if (k > 0) {
            changed = 1;
            buf[m++] = k;
            continue;
        }

        buf[m++] = buf[j];
    }

    if (!changed) {
        if (a->free) {
            a->free(a->data, buf);
        }

        return GI2_OK;
    }

    if (gi2_norm_encode(buf, m, out) != GI2_OK) {
        if (a->free) {
            a->free(a->data, buf);
        }

        return GI2_EINVAL;
    }

    return GI2_OK;
}


/* composed (NFC) and re-encoded in place: four bytes a code point fit */

static int
gi2_norm_encode(utf8proc_int32_t *buf, utf8proc_ssize_t m, gi2_str_t *out)
{
    unsigned char  *dst;

    m = utf8proc_normalize_utf32(buf, m, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0) {
        return GI2_EINVAL;
    }

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

    return gi2_norm_encode(buf, m, out);
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
