/* hostile_input.c — what hostile input costs (issue 12's time and memory
 * bounds), each figure beside jansson reading the same text in the same run:
 *   1. an object with N keys in reverse order, through fs_hub_handle
 *      (parse, then refused for a missing "protocol") vs json_loadb;
 *   2. peak memory of parsing a message of dense shapes (`[1,1,…]`,
 *      `[[[[[[[[1]]]]]]]],…`), each in a fresh child process: VmHWM growth per
 *      byte of text, fs_hub_handle vs json_loadb;
 *   3. 100,000 `[` refused before parsing (time);
 *   4. 20,000 distinct fs_audit_query limits: resident memory growth.
 * Usage: hostile_input [MiB for part 2, default 60] */
#include "bench_common.h"

#include <sys/wait.h>

static char *reversed_keys_object(long n, size_t *len) {
    size_t cap = (size_t)n * 24 + 16, at = 0;
    char *s = malloc(cap);
    if (!s) die("out of memory");
    s[at++] = '{';
    for (long i = n - 1; i >= 0; i--)
        at += (size_t)snprintf(s + at, cap - at, "\"k%09ld\":%ld%s", i, i, i ? "," : "");
    s[at++] = '}';
    s[at] = 0;
    *len = at;
    return s;
}

static double ms_since(int64_t t0) { return (double)(now_ns() - t0) / 1e6; }

static void keys_out_of_order(fs_hub *hub, long n) {
    size_t len;
    char *text = reversed_keys_object(n, &len);
    char *out = NULL;
    int64_t t0 = now_ns();
    fs_status st = fs_hub_handle(hub, text, &out);
    double ours = ms_since(t0);
    if (st != FS_ERR_ARG) die("fs_hub_handle of %ld keys: %s %s", n, fs_status_name(st), fs_last_error());
    json_error_t e;
    t0 = now_ns();
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    double theirs = ms_since(t0);
    if (!v) die("jansson: %s", e.text);
    json_decref(v);
    printf("  %7ld keys in reverse order (%5.1f MiB): fieldsync %8.1f ms, jansson %8.1f ms, ratio %.2f\n", n,
           len / 1048576.0, ours, theirs, ours / theirs);
    free(text);
}

/* Peak growth of resident memory while `parse` reads `text`, in a child
 * process of its own so that each figure starts from the same heap. */
static double peak_growth_per_byte(const char *text, size_t len, int jansson) {
    int fds[2];
    if (pipe(fds)) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        close(fds[0]);
        fs_hub *hub = NULL;
        char dir[256], path[300];
        make_workdir(dir, sizeof dir, NULL, "fs-hostile-mem");
        snprintf(path, sizeof path, "%s/hub.db", dir);
        if (!jansson) hub = bench_hub_open(path);
        /* Reset the high-water mark so that it measures this parse only. */
        FILE *f = fopen("/proc/self/clear_refs", "w");
        if (f) {
            fputs("5", f);
            fclose(f);
        }
        long before = proc_status_kib("VmHWM");
        if (jansson) {
            json_error_t e;
            json_t *v = json_loadb(text, len, 0, &e);
            json_decref(v);
        } else {
            char *out = NULL;
            fs_hub_handle(hub, text, &out);
            fs_free(out);
        }
        long after = proc_status_kib("VmHWM");
        double per = (double)(after - before) * 1024.0 / (double)len;
        if (write(fds[1], &per, sizeof per) != sizeof per) _exit(1);
        if (hub) bench_hub_close(hub);
        remove_db(path);
        rmdir(dir);
        _exit(0);
    }
    close(fds[1]);
    double per = -1;
    if (read(fds[0], &per, sizeof per) != sizeof per) per = -1;
    close(fds[0]);
    waitpid(pid, NULL, 0);
    return per;
}

static char *repeated(const char *unit, size_t bytes, size_t *len) {
    size_t u = strlen(unit), n = bytes / (u + 1), at = 0;
    char *s = malloc(n * (u + 1) + 3);
    if (!s) die("out of memory");
    s[at++] = '[';
    for (size_t i = 0; i < n; i++) {
        memcpy(s + at, unit, u);
        at += u;
        s[at++] = ',';
    }
    s[at - 1] = ']';
    s[at] = 0;
    *len = at;
    return s;
}

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 60;
    char dir[256], path[300];
    g_prog = "hostile_input";
    make_workdir(dir, sizeof dir, NULL, "fs-hostile");
    print_machine(dir);
    snprintf(path, sizeof path, "%s/hub.db", dir);
    fs_hub *hub = bench_hub_open(path);

    printf("\n1. objects with keys out of order (fieldsync sorts them; jansson hashes them)\n");
    keys_out_of_order(hub, 40000);
    keys_out_of_order(hub, 200000);
    keys_out_of_order(hub, 2000000);

    printf("\n2. peak memory while a %ld MiB message is parsed, bytes per byte of text\n", mib);
    static const char *units[] = {"1", "[[[[[[[[1]]]]]]]]", "[]", "\"\"", "{\"a\":1}"};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        size_t len;
        char *text = repeated(units[i], (size_t)mib << 20, &len);
        double ours = peak_growth_per_byte(text, len, 0), theirs = peak_growth_per_byte(text, len, 1);
        printf("  [%s,…]%*s fieldsync %5.1f, jansson %5.1f (documented bound: 32)\n", units[i],
               (int)(20 - strlen(units[i])), "", ours, theirs);
        free(text);
    }

    printf("\n3. nesting far past the limit, refused before parsing\n");
    {
        size_t n = 100000;
        char *deep = malloc(n + 1), *out = NULL;
        memset(deep, '[', n);
        deep[n] = 0;
        int64_t t0 = now_ns();
        fs_status st = fs_hub_handle(hub, deep, &out);
        printf("  100,000 '[': %s in %.2f ms\n", fs_status_name(st), ms_since(t0));
        free(deep);
    }

    printf("\n4. 20,000 distinct fs_audit_query limits\n");
    {
        char spath[300], filter[64], *out = NULL;
        snprintf(spath, sizeof spath, "%s/store.db", dir);
        fs_store *st = bench_store_open(spath, NULL);
        long before = rss_now_kib();
        int64_t t0 = now_ns();
        for (int i = 1; i <= 20000; i++) {
            snprintf(filter, sizeof filter, "{\"limit\":%d}", i);
            if (fs_audit_query(st, filter, &out) != FS_OK) die("fs_audit_query: %s", fs_last_error());
            fs_free(out);
        }
        printf("  resident memory %+.1f MiB, %.1f µs a query\n", (rss_now_kib() - before) / 1024.0,
               (double)(now_ns() - t0) / 1e3 / 20000);
        bench_store_close(st);
        remove_db(spath);
    }
    bench_hub_close(hub);
    remove_db(path);
    rmdir(dir);
    return 0;
}
