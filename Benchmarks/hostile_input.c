/* hostile_input.c — what hostile input costs (issue 12's bounds), each
 * figure beside jansson reading the same text in the same run:
 *   1. an object with N keys in reverse order, through fs_hub_handle (parsed,
 *      then refused for a missing "protocol"), vs json_loadb;
 *   2. peak memory parsing a message of dense shapes, each in a fresh child
 *      process: VmHWM growth per byte of text (documented bound: 32);
 *   3. 100,000 `[` refused before parsing;
 *   4. 20,000 distinct fs_audit_query limits: resident memory growth.
 * Usage: hostile_input [MiB for part 2, default 60] */
#include "harness.h"

#include <sys/wait.h>

static char *text_of(const char *unit, size_t bytes, size_t *len) { /* "[unit,unit,…]" */
    size_t u = strlen(unit), n = bytes / (u + 1), at = 0;
    char *s = malloc(n * (u + 1) + 3);
    if (!s) h_die("out of memory");
    s[at++] = '[';
    for (size_t i = 0; i < n; i++, at += u + 1) memcpy(s + at, unit, u), s[at + u] = ',';
    s[at - 1] = ']';
    s[*len = at] = 0;
    return s;
}

static void keys_out_of_order(fs_hub *hub, long n) {
    size_t cap = (size_t)n * 24 + 16, len = 1;
    char *text = malloc(cap), *out = NULL;
    text[0] = '{';
    for (long i = n - 1; i >= 0; i--) len += (size_t)snprintf(text + len, cap - len, "\"k%09ld\":%ld%s", i, i, i ? "," : "");
    strcpy(text + len++, "}");
    int64_t t0 = h_now_ns();
    fs_status st = fs_hub_handle(hub, text, &out);
    double ours = (h_now_ns() - t0) / 1e6;
    if (st != FS_ERR_ARG) h_die("fs_hub_handle of %ld keys: %s %s", n, fs_status_name(st), fs_last_error());
    json_error_t e;
    t0 = h_now_ns();
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    double theirs = (h_now_ns() - t0) / 1e6;
    if (!v) h_die("jansson: %s", e.text);
    json_decref(v);
    printf("  %7ld keys in reverse order (%5.1f MiB): fieldsync %8.1f ms, jansson %8.1f ms, ratio %.2f\n", n, len / 1048576.0,
           ours, theirs, ours / theirs);
    free(text);
}

/* Peak growth of resident memory while one parser reads `text`, in a child
 * of its own so that each figure starts from the same heap. */
static double peak_per_byte(const char *text, size_t len, int jansson, const char *dir) {
    int fds[2];
    if (pipe(fds)) h_die("pipe");
    pid_t pid = fork();
    if (pid < 0) h_die("fork");
    if (pid == 0) {
        char path[PATH_MAX + 64], *out = NULL;
        h_path(path, dir, "memory-hub.db");
        fs_hub *hub = jansson ? NULL : task_hub(path);
        h_reset_peak();
        long before = h_status_kib("VmHWM");
        if (jansson) {
            json_error_t e;
            json_decref(json_loadb(text, len, 0, &e));
        } else {
            fs_hub_handle(hub, text, &out);
            fs_free(out);
        }
        double per = (double)(h_status_kib("VmHWM") - before) * 1024.0 / (double)len;
        if (write(fds[1], &per, sizeof per) != sizeof per) _exit(1);
        if (hub) h_hub_close(hub);
        h_remove_db(path);
        _exit(0);
    }
    close(fds[1]);
    double per = -1;
    if (read(fds[0], &per, sizeof per) != sizeof per) per = -1;
    close(fds[0]);
    waitpid(pid, NULL, 0);
    return per;
}

int main(int argc, char **argv) {
    long mib = 60;
    h_opt opts[] = {{NULL, 'l', &mib}, {0}};
    h_args(argc, argv, opts, "[MiB for part 2, default 60]");
    char dir[PATH_MAX], path[PATH_MAX + 64], spath[PATH_MAX + 64];
    h_begin("hostile_input", "fieldsync hostile input", dir, sizeof dir);
    h_path(path, dir, "hub.db");
    fs_hub *hub = task_hub(path);

    printf("\n1. objects with keys out of order (fieldsync sorts them; jansson hashes them)\n");
    keys_out_of_order(hub, 40000);
    keys_out_of_order(hub, 200000);
    keys_out_of_order(hub, 2000000);

    printf("\n2. peak memory while a %ld MiB message is parsed, bytes per byte of text\n", mib);
    static const char *units[] = {"1", "[[[[[[[[1]]]]]]]]", "[]", "\"\"", "{\"a\":1}"};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        size_t len;
        char *text = text_of(units[i], (size_t)mib << 20, &len);
        double ours = peak_per_byte(text, len, 0, dir), theirs = peak_per_byte(text, len, 1, dir);
        printf("  [%s,…]%*s fieldsync %5.1f, jansson %5.1f (documented bound: 32)\n", units[i], (int)(20 - strlen(units[i])), "",
               ours, theirs);
        free(text);
    }

    printf("\n3. nesting far past the limit, refused before parsing\n");
    char *deep = malloc(100001), *out = NULL;
    memset(deep, '[', 100000);
    deep[100000] = 0;
    int64_t t0 = h_now_ns();
    fs_status rc = fs_hub_handle(hub, deep, &out);
    printf("  100,000 '[': %s in %.2f ms\n", fs_status_name(rc), (h_now_ns() - t0) / 1e6);
    free(deep);

    printf("\n4. 20,000 distinct fs_audit_query limits\n");
    h_path(spath, dir, "store.db");
    fs_store *st = task_store(spath, NULL);
    long before = h_rss_kib();
    t0 = h_now_ns();
    for (int i = 1; i <= 20000; i++) {
        char filter[64];
        snprintf(filter, sizeof filter, "{\"limit\":%d}", i);
        h_ok(fs_audit_query(st, filter, &out), "fs_audit_query");
        fs_free(out);
    }
    printf("  resident memory %+.1f MiB, %.1f µs a query\n", (h_rss_kib() - before) / 1024.0, (h_now_ns() - t0) / 1e3 / 20000);
    h_store_close(st);
    h_hub_close(hub);
    h_remove_db(spath);
    h_remove_db(path);
    return h_end(dir);
}
