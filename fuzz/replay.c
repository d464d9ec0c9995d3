/*
 * A plain main() for a libFuzzer harness: runs LLVMFuzzerTestOneInput()
 * once on every file named, or in a directory named, in name order.
 * Built without libFuzzer (make unit), it replays the seed corpora and
 * the regression inputs of fuzz/regress/ in `make test`; a failed check
 * aborts.  Prints "replayed N inputs" at the end.
 */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path);
static int replay_dir(const char *path);
static int replay_cmp(const void *a, const void *b);


static unsigned long  replay_count;


static int
replay_file(const char *path)
{
    long      n;
    FILE     *f;
    uint8_t  *data;

    f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        perror(path);
        fclose(f);
        return -1;
    }

    data = malloc(n ? (size_t) n : 1);
    if (data == NULL || fread(data, 1, (size_t) n, f) != (size_t) n) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(data);
        fclose(f);
        return -1;
    }

    fclose(f);

    fprintf(stderr, "replay %s (%ld bytes)\n", path, n);
    (void) LLVMFuzzerTestOneInput(data, (size_t) n);
    replay_count++;

    free(data);

    return 0;
}


static int
replay_cmp(const void *a, const void *b)
{
    return strcmp(*(char * const *) a, *(char * const *) b);
}


static int
replay_dir(const char *path)
{
    int             rc;
    char          **names, **more, buf[4096];
    size_t          n, cap, i;
    DIR            *d;
    struct dirent  *e;

    d = opendir(path);
    if (d == NULL) {
        perror(path);
        return -1;
    }

    names = NULL;
    n = 0;
    cap = 0;

    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }

        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            more = realloc(names, cap * sizeof(char *));
            if (more == NULL) {
                closedir(d);
                return -1;
            }

            names = more;
        }

        names[n] = strdup(e->d_name);
        if (names[n] == NULL) {
            closedir(d);
            return -1;
        }

        n++;
    }

    closedir(d);

    qsort(names, n, sizeof(char *), replay_cmp);

    rc = 0;

    for (i = 0; i < n; i++) {
        snprintf(buf, sizeof(buf), "%s/%s", path, names[i]);

        if (rc == 0 && replay_file(buf) != 0) {
            rc = -1;
        }

        free(names[i]);
    }

    free(names);

    return rc;
}


int
main(int argc, char **argv)
{
    int          i;
    struct stat  st;

    for (i = 1; i < argc; i++) {
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }

        if ((S_ISDIR(st.st_mode) ? replay_dir(argv[i])
                                 : replay_file(argv[i])) != 0)
        {
            return 1;
        }
    }

    printf("replayed %lu inputs\n", replay_count);

    return 0;
}
