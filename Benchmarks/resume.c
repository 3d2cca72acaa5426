/* resume.c — connectivity back -> outbox empty, for a 10,000-action backlog
 * over 1,000 records, with an in-process hub (target < 1000 ms). Each run
 * copies the backlog, fails the transport FAILS times with the store's clock
 * moved past each backoff (so the backoff really grows, without sleeping),
 * sets connectivity down, restores the clock, then times from just before
 * fs_sync_connectivity(1) until the receive reports an empty outbox. The
 * first prepare after it must send at once. The median of the runs is the figure.
 * Usage: resume [--actions N] [--records N] [--runs N] [--fails N] */
#include "harness.h"

static long g_actions = 10000, g_records = 0;
static int g_runs = 3, g_fails = 5;
static int64_t g_offset;
static int64_t moved_clock(void *ctx) { (void)ctx; return h_wall_ms() + g_offset; }

/* Returns 1 (and frees the request) if prepare sent one, else 0 with *wait. */
static int prepare_once(fs_store *st, int64_t *wait, long *bytes) {
    char *req = NULL;
    h_ok(fs_sync_prepare(st, &req, wait), "fs_sync_prepare");
    if (req && bytes) *bytes = (long)strlen(req);
    fs_free(req);
    return req != NULL;
}

static void print_state(fs_store *st, const char *when) {
    char *s = NULL;
    h_ok(fs_store_stats(st, &s), "fs_store_stats");
    json_error_t err;
    json_t *o = json_loads(s, 0, &err);
    printf("    %s: sync_state %s, transport_failures %lld, outbox pending %lld, inflight %lld\n", when,
           json_string_value(json_object_get(o, "sync_state")), h_json_int(s, "transport_failures", -1),
           h_json_int(s, "outbox_pending", -1), h_json_int(s, "outbox_inflight", -1));
    json_decref(o);
    fs_free(s);
}

typedef struct { double total, cpu, sys, prepare, handle, receive, first; long exchanges; } run_t;

static run_t one_run(int r, const char *pristine, const char *dir) {
    char dev[PATH_MAX + 64], hub[PATH_MAX + 64];
    h_path(dev, dir, "run-device.db");
    h_path(hub, dir, "run-hub.db");
    h_copy_db(pristine, dev);
    h_remove_db(hub);
    sync();
    printf("run %d:\n    failures:", r);
    fs_store *st = task_store(dev, NULL);
    fs_hub *h = task_hub(hub);
    h_ok(fs_store_set_clock(st, moved_clock, NULL), "fs_store_set_clock");
    g_offset = 0;
    for (int k = 1; k <= g_fails; k++) {
        int64_t wait = 0;
        long bytes = 0;
        for (int tries = 0; !prepare_once(st, &wait, &bytes); g_offset += (wait > 0 ? wait : 1) + 1)
            if (++tries > 5) h_die("prepare gives no request (wait %lld ms) before failure %d", (long long)wait, k);
        h_ok(fs_sync_fail(st, "bench: network down"), "fs_sync_fail");
        int got = prepare_once(st, &wait, NULL);
        printf(" #%d sent %.0f KiB, then %s %lld ms;", k, bytes / 1024.0, got ? "REQUEST (no backoff!) wait" : "backoff", (long long)wait);
        if (got) h_ok(fs_sync_fail(st, "bench: network down"), "fs_sync_fail");
        if (k < g_fails) g_offset += (wait > 0 ? wait : 1) + 1;
    }
    printf("\n");
    print_state(st, "after failures");
    h_ok(fs_sync_connectivity(st, 0), "fs_sync_connectivity(0)");
    int64_t wait = 0;
    int got = prepare_once(st, &wait, NULL);
    printf("    connectivity down: prepare -> %s, wait %lld ms\n", got ? "a REQUEST (unexpected)" : "no request", (long long)wait);
    if (got) fs_sync_fail(st, "bench: network down");
    h_ok(fs_store_set_clock(st, NULL, NULL), "fs_store_set_clock(NULL)");
    print_state(st, "before resume");
    int64_t backlog = h_outbox(st);

    run_t res = {0};
    h_load m0 = h_load_now();
    double sys0 = h_sys_s();
    int64_t t0 = h_now_ns();
    h_ok(fs_sync_connectivity(st, 1), "fs_sync_connectivity(1)");
    int64_t t1 = h_now_ns();
    h_drain_t d = h_drain(st, h, 1, NULL, NULL, 0);
    int64_t t2 = h_now_ns();
    h_load m1 = h_load_now();
    res.total = (t2 - t0) / 1e6;
    res.cpu = (m1.self - m0.self) * 1e3;
    res.sys = (h_sys_s() - sys0) * 1e3;
    res.exchanges = d.exchanges;
    for (long i = 0; i < d.exchanges; i++) {
        res.prepare += d.log[i].prepare_ns / 1e6;
        res.handle += d.log[i].handle_ns / 1e6;
        res.receive += d.log[i].receive_ns / 1e6;
    }
    h_exchange f = d.exchanges ? d.log[0] : (h_exchange){0};
    res.first = (f.prepare_ns + f.handle_ns + f.receive_ns) / 1e6;
    long long happlied = h_hub_stat(h, "entries_applied");
    int64_t left = h_outbox(st);
    printf("    resume: %.1f ms (connectivity call %.3f ms, first exchange %.1f ms: prepare %.1f, handle %.1f, receive %.1f); "
           "%ld exchanges, applied %ld of %lld; prepare %.0f ms + handle %.0f ms + receive %.0f ms; hub applied %lld\n",
           res.total, (t1 - t0) / 1e6, res.first, f.prepare_ns / 1e6, f.handle_ns / 1e6, f.receive_ns / 1e6, d.exchanges,
           d.applied, (long long)backlog, res.prepare, res.handle, res.receive, happlied);
    h_contention("the resume", m0, m1);
    h_expect(left == 0 && d.applied == backlog && happlied == backlog && d.no_request == 0,
             "the run did not end as expected (outbox left %lld, prepare without request %ld)", (long long)left, d.no_request);
    free(d.log);
    h_store_close(st);
    h_hub_close(h);
    h_remove_db(dev);
    h_remove_db(hub);
    return res;
}

int main(int argc, char **argv) {
    h_opt opts[] = {{"--actions", 'l', &g_actions}, {"--records", 'l', &g_records}, {"--runs", 'i', &g_runs},
                    {"--fails", 'i', &g_fails}, {0}};
    h_args(argc, argv, opts, "[--actions N] [--records N (default actions / 10)] [--runs N] [--fails N]");
    if (g_records == 0) g_records = g_actions / 10 > 0 ? g_actions / 10 : 1;
    if (g_actions < 1 || g_records < 1 || g_runs < 1 || g_runs > 99 || g_fails < 0) h_usage();
    char dir[PATH_MAX], pristine[PATH_MAX + 64];
    h_begin("resume", "fieldsync resume time", dir, sizeof dir);
    printf("workload: backlog of %ld actions over %ld records; %d transport failures (fs_sync_fail) + connectivity down, then "
           "connectivity up -> outbox empty; in-process hub; durability normal; batch size 500 (library default); %d runs\n",
           g_actions, g_records, g_fails, g_runs);
    h_path(pristine, dir, "backlog-device.db");
    h_remove_db(pristine);
    fs_store *st = task_store(pristine, NULL);
    task_gen gen;
    task_gen_init(&gen, g_records, 0x5EED0002ull);
    double apply_s = task_backlog(st, &gen, g_actions, 0);
    free(gen.created);
    h_store_close(st);
    printf("backlog: %ld fs_store_apply in %.2f s (%.1f us/action); device file %.1f MiB\n", g_actions, apply_s,
           apply_s * 1e6 / g_actions, h_db_size(pristine) / 1048576.0);

    run_t *runs = calloc((size_t)g_runs, sizeof *runs);
    double *ms = calloc((size_t)g_runs, sizeof *ms);
    for (int r = 0; r < g_runs; r++) ms[r] = (runs[r] = one_run(r + 1, pristine, dir)).total;
    printf("\nresume time, connectivity up -> outbox empty (%ld-action backlog)\n", g_actions);
    printf("%-5s | %10s | %8s | %8s | %9s | %10s | %10s | %10s | %10s\n", "run", "total ms", "CPU ms", "(sys ms)", "exchanges",
           "prepare ms", "handle ms", "receive ms", "1st exch ms");
    for (int r = 0; r < g_runs; r++)
        printf("%-5d | %10.1f | %8.1f | %8.1f | %9ld | %10.1f | %10.1f | %10.1f | %10.1f\n", r + 1, runs[r].total, runs[r].cpu,
               runs[r].sys, runs[r].exchanges, runs[r].prepare, runs[r].handle, runs[r].receive, runs[r].first);
    double median = h_median(ms, g_runs);
    printf("\nmedian of %d runs: %.1f ms (min %.1f, max %.1f); %.0f actions/s\n", g_runs, median, ms[0], ms[g_runs - 1],
           g_actions / (median / 1e3));
    h_target("resume, connectivity up -> outbox empty (median)", median, "<", 1000, " ms");
    if (!h_keep) h_remove_db(pristine);
    free(runs);
    free(ms);
    return h_end(dir);
}
