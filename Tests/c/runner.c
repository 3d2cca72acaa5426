/*
 * runner.c — registers tests, runs each in a forked child (a crash or hang in
 * the library fails that test only), prints failures with file:line and ends
 * with the line "N passed, N failed". Exit status 1 if any test failed.
 *
 * Usage: fieldsync-tests [SUBSTRING...]   runs tests whose name contains one
 * of the substrings. FS_TEST_NOFORK=1 runs in-process (for a debugger),
 * FS_TEST_KEEP=1 keeps every temp dir, FS_TEST_TIMEOUT=s (default 120).
 */
#include "runner.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    const char *name;
    fs_test_fn fn;
    const char *file;
    int line;
} test_entry;

static test_entry *g_tests = NULL;
static size_t g_count = 0, g_cap = 0;

static const char *g_current = NULL;
static int g_failures = 0;
static char g_dir[4096] = "";

void fs_test_register(const char *name, fs_test_fn fn, const char *file, int line) {
    if (g_count == g_cap) {
        size_t cap = g_cap ? g_cap * 2 : 64;
        test_entry *grown = (test_entry *)realloc(g_tests, cap * sizeof *grown);
        if (grown == NULL) {
            fprintf(stderr, "runner: out of memory registering %s\n", name);
            exit(2);
        }
        g_tests = grown;
        g_cap = cap;
    }
    g_tests[g_count].name = name;
    g_tests[g_count].fn = fn;
    g_tests[g_count].file = file;
    g_tests[g_count].line = line;
    g_count++;
}

void fs_test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    g_failures++;
    printf("  %s:%d: in %s: ", file, line, g_current ? g_current : "?");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

int fs_test_failures(void) { return g_failures; }

void fs_test_copy_last_error(char *buf) {
    const char *m = fs_last_error();
    if (m == NULL) m = "(fs_last_error returned NULL)";
    strncpy(buf, m, FS_TEST_MSG_MAX - 1);
    buf[FS_TEST_MSG_MAX - 1] = '\0';
}

const char *fs_test_dir(void) {
    if (g_dir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        if (base == NULL || base[0] == '\0') base = "/tmp";
        snprintf(g_dir, sizeof g_dir, "%s/fieldsync-test-XXXXXX", base);
        if (mkdtemp(g_dir) == NULL) {
            fprintf(stderr, "runner: mkdtemp(%s): %s\n", g_dir, strerror(errno));
            exit(2);
        }
    }
    return g_dir;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void cleanup_dir(void) {
    if (g_dir[0] == '\0') return;
    if (g_failures > 0 || getenv("FS_TEST_KEEP") != NULL) {
        printf("  (kept temp dir %s)\n", g_dir);
    } else {
        nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    g_dir[0] = '\0';
}

static int by_file_then_line(const void *a, const void *b) {
    const test_entry *x = (const test_entry *)a, *y = (const test_entry *)b;
    int c = strcmp(x->file, y->file);
    if (c != 0) return c;
    return x->line - y->line;
}

static int selected(const test_entry *t, int argc, char **argv) {
    int i;
    if (argc <= 1) return 1;
    for (i = 1; i < argc; i++)
        if (strstr(t->name, argv[i]) != NULL) return 1;
    return 0;
}

/* Runs one test in this process; returns its failure count. */
static int run_here(const test_entry *t) {
    g_current = t->name;
    g_failures = 0;
    g_dir[0] = '\0';
    t->fn();
    cleanup_dir();
    return g_failures;
}

int main(int argc, char **argv) {
    size_t i;
    int passed = 0, failed = 0;
    int nofork = getenv("FS_TEST_NOFORK") != NULL;
    unsigned timeout = 120;
    const char *tenv = getenv("FS_TEST_TIMEOUT");
    if (tenv != NULL && atoi(tenv) > 0) timeout = (unsigned)atoi(tenv);

    setvbuf(stdout, NULL, _IOLBF, 0);
    qsort(g_tests, g_count, sizeof *g_tests, by_file_then_line);
    printf("fieldsync C suite: header %s, library %s, ABI %d\n", FS_VERSION, fs_version(),
           (int)fs_abi_version());

    for (i = 0; i < g_count; i++) {
        const test_entry *t = &g_tests[i];
        int ok;
        if (!selected(t, argc, argv)) continue;
        if (nofork) {
            ok = run_here(t) == 0;
            printf("%s %s\n", ok ? "ok  " : "FAIL", t->name);
        } else {
            int status = 0;
            pid_t pid;
            fflush(NULL);
            pid = fork();
            if (pid < 0) {
                perror("runner: fork");
                return 2;
            }
            if (pid == 0) {
                int failures;
                alarm(timeout);
                failures = run_here(t);
                fflush(NULL);
                _exit(failures > 0 ? 1 : 0);
            }
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            if (WIFSIGNALED(status)) {
                int sig = WTERMSIG(status);
                printf("  %s:%d: in %s: %s (signal %d)\n", t->file, t->line, t->name,
                       sig == SIGALRM ? "timed out" : "crashed", sig);
            }
            printf("%s %s\n", ok ? "ok  " : "FAIL", t->name);
        }
        if (ok)
            passed++;
        else
            failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0 ? 1 : 0;
}
