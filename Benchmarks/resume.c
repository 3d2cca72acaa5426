/*
 * resume.c — resume time of libfieldsync: connectivity back -> outbox empty,
 * for a 10,000-action backlog, with an in-process hub (BENCHMARKS.md, third
 * benchmark; target < 1000 ms).
 *
 * README
 * ------
 * What it measures
 *   A device store (durability "normal") holding a backlog of N_ACTIONS
 *   (10,000) actions over N_ACTIONS/10 records, same mix as sync_throughput.c
 *   (create = lww set, then counter inc / lww set / set add), built once and
 *   copied for each run. Each run:
 *     1. opens the copy and a fresh hub (fs_hub_open, durability "normal");
 *     2. goes through FAILS (5) transport failures: fs_sync_prepare (a request
 *        of 500 entries) then fs_sync_fail(); the next prepare must answer no
 *        request and a backoff wait > 0, which is printed. The store's clock
 *        is replaced (fs_store_set_clock) by wall clock + an offset that is
 *        advanced past each backoff, so the exponential backoff really grows
 *        (500 ms base, 1, 2, 4, 8 s ceilings with full jitter) without
 *        sleeping. Then fs_sync_connectivity(store, 0): the device is offline
 *        (prepare answers no request, wait = backoff cap). The system clock is
 *        restored before the measurement;
 *     3. measures, with CLOCK_MONOTONIC, from just before
 *        fs_sync_connectivity(store, 1) until fs_sync_receive reports an empty
 *        outbox, looping prepare -> fs_hub_handle -> receive (default batch
 *        size 500, pull on). The first prepare after connectivity must return
 *        a request at once (wait 0).
 *   RUNS (3) runs; the median is reported against the 1000 ms target.
 *
 * Build and run:  make -C Benchmarks bench       (from the repository root)
 * Options:        resume [--actions N] [--records N] [--runs N] [--fails N]
 *                        [--dir D] [--keep]
 */
#include "bench_common.h"

static long g_actions = 10000;
static long g_records = 0; /* 0 = actions / 10 */
static int g_runs = 3;
static int g_fails = 5;
static const char *g_dir_opt = NULL;
static int g_keep = 0;

static int64_t g_clock_offset = 0;
static int64_t bench_clock(void *ctx) {
    (void)ctx;
    return wall_ms() + g_clock_offset;
}

static void json_str_member(const char *text, const char *key, char *out, size_t n) {
    json_error_t err;
    json_t *o = json_loads(text, 0, &err);
    snprintf(out, n, "?");
    if (!o) return;
    json_t *v = json_object_get(o, key);
    if (v && json_is_string(v)) snprintf(out, n, "%s", json_string_value(v));
    else if (v && json_is_integer(v)) snprintf(out, n, "%lld", (long long)json_integer_value(v));
    json_decref(o);
}

static void print_sync_state(fs_store *st, const char *when) {
    char *s = NULL;
    if (fs_store_stats(st, &s) != FS_OK) die("fs_store_stats: %s", fs_last_error());
    char state[64], failures[32], inflight[32], pending[32];
    json_str_member(s, "sync_state", state, sizeof state);
    json_str_member(s, "transport_failures", failures, sizeof failures);
    json_str_member(s, "outbox_inflight", inflight, sizeof inflight);
    json_str_member(s, "outbox_pending", pending, sizeof pending);
    fs_free(s);
    printf("    %s: sync_state %s, transport_failures %s, outbox pending %s, inflight %s\n", when, state, failures, pending,
           inflight);
}

/* prepare; returns 1 and frees the request if there was one, else 0 and *wait. */
static int prepare_once(fs_store *st, int64_t *wait, long *req_bytes) {
    char *req = NULL;
    fs_status rc = fs_sync_prepare(st, &req, wait);
    if (rc != FS_OK) die("fs_sync_prepare: %s: %s", fs_status_name(rc), fs_last_error());
    if (!req) return 0;
    if (req_bytes) *req_bytes = (long)strlen(req);
    fs_free(req);
    return 1;
}

typedef struct {
    double total_ms, connectivity_ms, first_exchange_ms, cpu_ms, sys_ms;
    int64_t first_wait;
    long exchanges, applied;
    double prepare_ms, handle_ms, receive_ms;
    int ok;
} run_t;

static bench_exchange_t g_first;
static long g_seen;
static void first_cb(const bench_exchange_t *x, void *ctx) {
    (void)ctx;
    if (g_seen++ == 0) g_first = *x;
}

static run_t one_run(int r, const char *pristine, const char *dir) {
    char dev[PATH_MAX + 32], hub[PATH_MAX + 32];
    snprintf(dev, sizeof dev, "%s/run%d-device.db", dir, r);
    snprintf(hub, sizeof hub, "%s/run%d-hub.db", dir, r);
    copy_db(pristine, dev);
    remove_db(hub);
    sync();
    printf("run %d:\n", r);
    fs_store *st = bench_store_open(dev, NULL);
    fs_hub *h = bench_hub_open(hub);
    fs_status rc = fs_store_set_clock(st, bench_clock, NULL);
    if (rc != FS_OK) die("fs_store_set_clock: %s", fs_last_error());
    g_clock_offset = 0;

    /* Transport failures with growing backoff. */
    printf("    failures:");
    for (int k = 1; k <= g_fails; k++) {
        int64_t wait = 0;
        long bytes = 0;
        int tries = 0;
        while (!prepare_once(st, &wait, &bytes)) { /* not due yet: move the clock past the wait */
            if (++tries > 5) die("prepare gives no request (wait %lld ms) before failure %d", (long long)wait, k);
            g_clock_offset += (wait > 0 ? wait : 1) + 1;
        }
        rc = fs_sync_fail(st, "bench: network down");
        if (rc != FS_OK) die("fs_sync_fail: %s: %s", fs_status_name(rc), fs_last_error());
        int got = prepare_once(st, &wait, NULL);
        printf(" #%d sent %.0f KiB, then %s %lld ms;", k, bytes / 1024.0, got ? "REQUEST (no backoff!) wait" : "backoff",
               (long long)wait);
        if (got) {
            rc = fs_sync_fail(st, "bench: network down");
            if (rc != FS_OK) die("fs_sync_fail: %s", fs_last_error());
        }
        if (k < g_fails) g_clock_offset += (wait > 0 ? wait : 1) + 1;
    }
    printf("\n");
    print_sync_state(st, "after failures");
    rc = fs_sync_connectivity(st, 0);
    if (rc != FS_OK) die("fs_sync_connectivity(0): %s", fs_last_error());
    int64_t wait = 0;
    int got = prepare_once(st, &wait, NULL);
    printf("    connectivity down: prepare -> %s, wait %lld ms\n", got ? "a REQUEST (unexpected)" : "no request",
           (long long)wait);
    if (got) fs_sync_fail(st, "bench: network down");
    rc = fs_store_set_clock(st, NULL, NULL);
    if (rc != FS_OK) die("fs_store_set_clock(NULL): %s", fs_last_error());
    print_sync_state(st, "before resume");
    int64_t backlog = bench_outbox_count(st);

    /* The measurement. */
    run_t res;
    memset(&res, 0, sizeof res);
    g_seen = 0;
    machine_cpu_t m0 = machine_cpu();
    double sys0 = sys_s();
    int64_t t0 = now_ns();
    rc = fs_sync_connectivity(st, 1);
    int64_t t1 = now_ns();
    if (rc != FS_OK) die("fs_sync_connectivity(1): %s", fs_last_error());
    long cap = backlog + 16;
    bench_exchange_t *log = calloc((size_t)cap, sizeof *log);
    bench_drain_t d = bench_drain(st, h, log, cap, first_cb, NULL, 0);
    int64_t t2 = now_ns();
    machine_cpu_t m1 = machine_cpu();
    res.cpu_ms = (m1.self_cpu - m0.self_cpu) * 1e3;
    res.sys_ms = (sys_s() - sys0) * 1e3;
    res.total_ms = (t2 - t0) / 1e6;
    res.connectivity_ms = (t1 - t0) / 1e6;
    res.first_exchange_ms = (g_first.prepare_ns + g_first.handle_ns + g_first.receive_ns) / 1e6;
    res.exchanges = d.exchanges;
    res.applied = d.applied;
    for (long i = 0; i < d.exchanges && i < cap; i++) {
        res.prepare_ms += log[i].prepare_ns / 1e6;
        res.handle_ms += log[i].handle_ns / 1e6;
        res.receive_ms += log[i].receive_ns / 1e6;
    }
    free(log);
    int64_t left = bench_outbox_count(st);
    char *s = NULL;
    fs_hub_stats(h, &s);
    long long happlied = s ? json_int_member(s, "entries_applied", -1) : -1;
    fs_free(s);
    res.ok = left == 0 && d.applied == backlog && happlied == backlog && d.no_request == 0;
    printf("    resume: %.1f ms (connectivity call %.3f ms, first exchange %.1f ms: prepare %.1f, handle %.1f, receive %.1f); "
           "%ld exchanges, applied %ld of %lld; prepare %.0f ms + handle %.0f ms + receive %.0f ms; hub applied %lld%s\n",
           res.total_ms, res.connectivity_ms, res.first_exchange_ms, g_first.prepare_ns / 1e6, g_first.handle_ns / 1e6,
           g_first.receive_ns / 1e6, res.exchanges, res.applied, (long long)backlog, res.prepare_ms, res.handle_ms,
           res.receive_ms, happlied, d.no_request ? " (prepare returned no request at some point!)" : "");
    print_contention("the resume", m0, m1);
    if (!res.ok) printf("    WARNING: the run did not end as expected (outbox left %lld)\n", (long long)left);
    bench_store_close(st);
    bench_hub_close(h);
    if (!g_keep) {
        remove_db(dev);
        remove_db(hub);
    }
    return res;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void) {
    fprintf(stderr, "usage: resume [--actions N] [--records N] [--runs N] [--fails N] [--dir DIR] [--keep]\n");
    exit(2);
}

int main(int argc, char **argv) {
    g_prog = "resume";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--actions") && i + 1 < argc) g_actions = atol(argv[++i]);
        else if (!strcmp(a, "--records") && i + 1 < argc) g_records = atol(argv[++i]);
        else if (!strcmp(a, "--runs") && i + 1 < argc) g_runs = atoi(argv[++i]);
        else if (!strcmp(a, "--fails") && i + 1 < argc) g_fails = atoi(argv[++i]);
        else if (!strcmp(a, "--dir") && i + 1 < argc) g_dir_opt = argv[++i];
        else if (!strcmp(a, "--keep")) g_keep = 1;
        else usage();
    }
    if (g_records == 0) g_records = g_actions / 10 > 0 ? g_actions / 10 : 1;
    if (g_actions < 1 || g_records < 1 || g_runs < 1 || g_runs > 99 || g_fails < 0) usage();
    setvbuf(stdout, NULL, _IOLBF, 0);

    char dir[PATH_MAX];
    make_workdir(dir, sizeof dir, g_dir_opt, "fieldsync-resume");
    printf("== fieldsync resume time (Benchmarks/resume.c) ==\n");
    print_machine(dir);
    printf("workload: backlog of %ld actions over %ld records; %d transport failures (fs_sync_fail) + connectivity down, "
           "then connectivity up -> outbox empty; in-process hub; durability normal; batch size 500 (library default); "
           "%d runs\n", g_actions, g_records, g_fails, g_runs);

    char pristine[PATH_MAX + 32];
    snprintf(pristine, sizeof pristine, "%s/backlog-device.db", dir);
    remove_db(pristine);
    fs_store *st = bench_store_open(pristine, NULL);
    bench_gen_t gen;
    gen_init(&gen, g_records, 0x5EED0002ull);
    double apply_s = bench_build_backlog(st, &gen, 0, g_actions, 0);
    print_kind_counts(gen.counts);
    gen_free(&gen);
    bench_store_close(st);
    printf("backlog: %ld fs_store_apply in %.2f s (%.1f us/action); device file %.1f MiB\n", g_actions, apply_s,
           apply_s * 1e6 / g_actions, db_size(pristine) / 1048576.0);

    double *ms = calloc((size_t)g_runs, sizeof *ms);
    run_t *runs = calloc((size_t)g_runs, sizeof *runs);
    int ok = 1;
    for (int r = 0; r < g_runs; r++) {
        runs[r] = one_run(r + 1, pristine, dir);
        ms[r] = runs[r].total_ms;
        ok &= runs[r].ok;
    }
    printf("\nresume time, connectivity up -> outbox empty (%ld-action backlog)\n", g_actions);
    printf("%-5s | %10s | %8s | %8s | %9s | %10s | %10s | %10s | %10s\n", "run", "total ms", "CPU ms", "(sys ms)", "exchanges",
           "prepare ms", "handle ms", "receive ms", "1st exch ms");
    printf("------+------------+----------+----------+-----------+------------+------------+------------+------------\n");
    for (int r = 0; r < g_runs; r++)
        printf("%-5d | %10.1f | %8.1f | %8.1f | %9ld | %10.1f | %10.1f | %10.1f | %10.1f\n", r + 1, runs[r].total_ms, runs[r].cpu_ms,
               runs[r].sys_ms, runs[r].exchanges,
               runs[r].prepare_ms, runs[r].handle_ms, runs[r].receive_ms, runs[r].first_exchange_ms);
    qsort(ms, (size_t)g_runs, sizeof *ms, cmp_double);
    double median = g_runs % 2 ? ms[g_runs / 2] : (ms[g_runs / 2 - 1] + ms[g_runs / 2]) / 2;
    printf("\nmedian of %d runs: %.1f ms (min %.1f, max %.1f); %.0f actions/s\n", g_runs, median, ms[0], ms[g_runs - 1],
           g_actions / (median / 1e3));
    printf("target: resume < 1000 ms: %s (%.1f ms)\n", median < 1000 ? "MET" : "NOT MET", median);

    if (!g_keep) {
        remove_db(pristine);
        if (!g_dir_opt) rmdir(dir);
    } else {
        printf("files kept in %s\n", dir);
    }
    free(ms);
    free(runs);
    return ok ? 0 : 1;
}
