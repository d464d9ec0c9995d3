/*
 * TAP output shared by the C unit tests: one "ok N - name" line a check,
 * "# ..." diagnostics, the plan and the exit status at the end.
 */

#ifndef _UNIT_TAP_H_INCLUDED_
#define _UNIT_TAP_H_INCLUDED_


#include <stdarg.h>
#include <stdio.h>


static unsigned      unit_tests;
static unsigned      unit_failed;


static int
unit_ok(int cond, const char *fmt, ...)
{
    char     name[300], clean[600];
    size_t   i, j;
    va_list  args;

    va_start(args, fmt);
    vsnprintf(name, sizeof(name), fmt, args);
    va_end(args);

    /* a bare '#' would start a TAP directive */

    for (i = 0, j = 0; name[i] != '\0'; i++) {
        if (name[i] == '#') {
            clean[j++] = '\\';
        }

        clean[j++] = (name[i] == '\n') ? ' ' : name[i];
    }

    clean[j] = '\0';

    unit_tests++;

    if (!cond) {
        unit_failed++;
    }

    printf("%sok %u - %s\n", cond ? "" : "not ", unit_tests, clean);

    return cond;
}


static void
unit_diag(const char *fmt, ...)
{
    char     msg[2048], *p;
    va_list  args;

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    for (p = msg; *p; p++) {
        if (*p == '\n') {
            *p = ' ';
        }
    }

    printf("# %s\n", msg);
}


/* the plan, then the exit status for main() to return */

static int
unit_done(void)
{
    printf("1..%u\n", unit_tests);

    if (unit_failed) {
        printf("# %u of %u tests failed\n", unit_failed, unit_tests);
    }

    return unit_failed ? 1 : 0;
}


#endif /* _UNIT_TAP_H_INCLUDED_ */
