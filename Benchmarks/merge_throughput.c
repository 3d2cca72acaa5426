/* merge_throughput.c — the hub's merge throughput per merge policy
 * (docs/MERGE.md). Per policy: two devices A and B (pull_interval_ms 0)
 * create a pool of records, then each round A applies 500 actions, B
 * applies 500, A syncs, B syncs, through a generation hub G; every request G
 * handled is kept with G's result counts. A write to a record the other
 * device wrote in that window meets a concurrent modification. Then a hub R
 * on a copy of G's starting file is handed the kept requests in order and
 * only fs_hub_handle is timed (wall and thread CPU); R's results must equal G's.
 *   lww-disjoint  lww string, each device on its own 1,000 records (no concurrency)
 *   lww, counter, set (75 % add, 25 % remove of one of 32 elements)
 *                 one field of that policy, shared pool of 2,000 (~22 % concurrent)
 *   server        compare-and-set int, each device on its own 1,000 records
 *   custom        a trivial C resolver; a pool of 500 records each device writes
 *                 once per round, so from round 2 every write goes to the resolver
 * Usage: merge_throughput [--entries N (per policy, default 50,000)] [--only POLICY]
 *                         [--repeat N] [--durability normal|full] */
#include "harness.h"

static const char *MERGE_SCHEMA =
    "{\"version\":1,\"types\":{\"rec\":{\"fields\":{"
    "\"label\":{\"type\":\"string\",\"merge\":\"lww\"},"
    "\"v_lww\":{\"type\":\"string\",\"merge\":\"lww\"},"
    "\"v_cnt\":{\"type\":\"int\",\"merge\":\"counter\"},"
    "\"v_set\":{\"type\":\"set\"},"
    "\"v_srv\":{\"type\":\"int\",\"merge\":\"server\",\"device_writes\":true},"
    "\"v_cus\":{\"type\":\"string\",\"merge\":\"custom\",\"resolver\":\"bench_trivial\"}"
    "}}}}";

#define BATCH 500

enum { P_LWW_DISJOINT = 0, P_LWW, P_COUNTER, P_SET, P_SERVER, P_CUSTOM, N_POLICIES };
static const char *POLICY_NAMES[N_POLICIES] = {"lww-disjoint", "lww", "counter", "set", "server", "custom"};
static const char *POLICY_FIELD[N_POLICIES] = {"v_lww", "v_lww", "v_cnt", "v_set", "v_srv", "v_cus"};
/* pool: records per device when disjoint, else shared */
static const int POLICY_DISJOINT[N_POLICIES] = {1, 0, 0, 0, 1, 0};
static const long POLICY_POOL[N_POLICIES] = {1000, 2000, 2000, 2000, 1000, 500};

static long g_entries = 50000;
static int g_only = -1;
static int g_repeat = 1;
static const char *g_durability = "normal";

typedef struct { long calls; } resolver_ctx_t;

static fs_status trivial_resolver(void *ctx, const char *conflict_json, char **out_value_json) {
    (void)conflict_json;
    ((resolver_ctx_t *)ctx)->calls++;
    static const char ans[] = "\"merged\"";
    char *p = malloc(sizeof ans);
    if (!p) return FS_ERR_INTERNAL;
    memcpy(p, ans, sizeof ans);
    *out_value_json = p;
    return FS_OK;
}

typedef struct { long applied, rejected, duplicate, retry; } result_counts_t;
typedef struct { char *text; long entries; result_counts_t want; } kept_req_t;
typedef struct { kept_req_t *r; long n, cap; } req_list_t;

static void req_push(req_list_t *l, kept_req_t k) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->r = realloc(l->r, sizeof *l->r * (size_t)l->cap);
        if (!l->r) h_die("out of memory");
    }
    l->r[l->n++] = k;
}

static long request_entries(const char *req) {
    json_error_t err;
    json_t *o = json_loads(req, 0, &err);
    if (!o) h_die("request is not JSON: %s", err.text);
    long n = (long)json_array_size(json_object_get(o, "entries"));
    json_decref(o);
    return n;
}

static result_counts_t response_counts(const char *resp) {
    result_counts_t c = {0, 0, 0, 0};
    json_error_t err;
    json_t *o = json_loads(resp, 0, &err);
    if (!o) h_die("response is not JSON: %s", err.text);
    json_t *e = json_object_get(o, "error");
    if (e) h_die("hub refused a request: %s", resp);
    json_t *res = json_object_get(o, "results");
    size_t i;
    json_t *v;
    json_array_foreach(res, i, v) {
        const char *s = json_string_value(json_object_get(v, "status"));
        if (!s) continue;
        if (!strcmp(s, "applied")) c.applied++;
        else if (!strcmp(s, "rejected")) c.rejected++;
        else if (!strcmp(s, "duplicate")) c.duplicate++;
        else if (!strcmp(s, "retry")) c.retry++;
    }
    json_decref(o);
    return c;
}

static fs_store *dev_open(const char *path, const char *id) {
    char opts[256];
    snprintf(opts, sizeof opts, "{\"durability\":\"normal\",\"device_id\":\"%s\",\"pull_interval_ms\":0}", id);
    return h_store(path, MERGE_SCHEMA, opts);
}

static fs_hub *hub_open(const char *path, resolver_ctx_t *rctx) {
    char opts[128];
    snprintf(opts, sizeof opts, "{\"durability\":\"%s\"}", g_durability);
    fs_hub *h = h_hub(path, MERGE_SCHEMA, opts);
    h_ok(fs_hub_set_resolver(h, "bench_trivial", trivial_resolver, rctx), "fs_hub_set_resolver");
    return h;
}

/* Syncs until prepare returns no request; keeps the requests in `keep` (if
 * not NULL). Returns the number of exchanges. */
static long sync_dev(fs_store *st, fs_hub *h, req_list_t *keep) {
    long n = 0;
    for (;;) {
        char *req = NULL, *resp = NULL, *sum = NULL;
        int64_t wait = 0;
        h_enroll(st, h);
        h_ok(fs_sync_prepare(st, &req, &wait), "fs_sync_prepare");
        if (!req) break;
        h_ok(fs_hub_handle(h, req, &resp), "fs_hub_handle");
        h_ok(fs_sync_receive(st, resp, &sum), "fs_sync_receive");
        if (keep) { /* the text is kept until after the replay */
            kept_req_t k = {req, request_entries(req), response_counts(resp)};
            req_push(keep, k);
        } else {
            fs_free(req);
        }
        fs_free(resp);
        fs_free(sum);
        if (++n > 1000) h_die("sync: more than 1,000 exchanges");
    }
    return n;
}

static void pull_now(fs_store *st, fs_hub *h) {
    h_ok(fs_sync_connectivity(st, 1), "fs_sync_connectivity");
    sync_dev(st, h, NULL);
}

static void rec_id(char *buf, size_t n, int policy, int dev_owner, long k) {
    if (POLICY_DISJOINT[policy]) snprintf(buf, n, "R-%c-%05ld", dev_owner ? 'b' : 'a', k);
    else snprintf(buf, n, "R-%05ld", k);
}

/* The action of device `dev` (0/1) number i on record `id`. */
static void policy_action(char *buf, size_t n, int policy, int dev, long i, const char *id, h_rng *rng) {
    char in[96], ops[96];
    const char *name;
    task_input(in, sizeof in, i);
    if (policy == P_COUNTER) name = "count", snprintf(ops, sizeof ops, "\"inc\":{\"v_cnt\":%ld}", 1 + i % 5);
    else if (policy == P_SERVER) name = "count_stock", snprintf(ops, sizeof ops, "\"set\":{\"v_srv\":%ld}", i);
    else if (policy == P_CUSTOM) name = "annotate", snprintf(ops, sizeof ops, "\"set\":{\"v_cus\":\"note-%c-%07ld\"}", dev ? 'b' : 'a', i);
    else if (policy != P_SET) name = "rename", snprintf(ops, sizeof ops, "\"set\":{\"v_lww\":\"value-%c-%07ld\"}", dev ? 'b' : 'a', i);
    else {
        uint64_t r = h_rand(rng);
        int add = ((r >> 8) % 4) != 0;
        name = add ? "tag" : "untag";
        snprintf(ops, sizeof ops, "\"%s\":{\"v_set\":[\"e-%02d\"]}", add ? "add" : "remove", (int)(r % 32));
    }
    snprintf(buf, n, "{\"action\":\"%s\",\"actor\":\"op-%02ld\",\"type\":\"rec\",\"id\":\"%s\",%s,\"input\":%s}", name, i % 40, id,
             ops, in);
}

/* The hub's conflict counters of one field (fs_hub_stats conflicts.rec.<field>.<name>). */
enum { C_WRITES, C_CONCURRENT, C_WON, C_LOST, C_MERGED, C_REJECTED, C_RESOLVED, N_COUNTERS };
static const char *COUNTERS[N_COUNTERS] = {"writes", "concurrent", "won", "lost", "merged", "rejected", "resolved"};

static void counters(fs_hub *h, const char *field, long *out) {
    char *s = NULL, key[128];
    h_ok(fs_hub_stats(h, &s), "fs_hub_stats");
    for (int k = 0; k < N_COUNTERS; k++) {
        snprintf(key, sizeof key, "conflicts.rec.%s.%s", field, COUNTERS[k]);
        out[k] = (long)h_json_int(s, key, 0);
    }
    fs_free(s);
}

typedef struct {
    long requests, entries, resolver_calls, mismatch, c[N_COUNTERS];
    double handle_s, cpu_s; /* sums of fs_hub_handle's wall and thread CPU time */
    h_stats per_req;        /* requests with entries, ms */
    result_counts_t got;
} policy_result_t;

static void run_policy(int policy, const char *base, policy_result_t *out, int nrep) {
    char dir[PATH_MAX + 64], gp[PATH_MAX + 64], rp[PATH_MAX + 64], ap[PATH_MAX + 64], bp[PATH_MAX + 64], seedp[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/%s", base, POLICY_NAMES[policy]);
    mkdir(dir, 0700);
    char *paths[] = {gp, seedp, rp, ap, bp};
    const char *names[] = {"gen-hub.db", "seed-hub.db", "replay-hub.db", "dev-a.db", "dev-b.db"};
    for (int k = 0; k < 5; k++) h_path(paths[k], dir, names[k]), h_remove_db(paths[k]);
    const char *field = POLICY_FIELD[policy];
    long pool = POLICY_POOL[policy];
    int disjoint = POLICY_DISJOINT[policy];
    printf("\n-- %s (field %s, %s pool of %ld records%s) --\n", POLICY_NAMES[policy], field, disjoint ? "per-device" : "shared",
           pool, disjoint ? " each" : "");
    int64_t g0 = h_now_ns();
    resolver_ctx_t gen_ctx = {0};
    fs_hub *G = hub_open(gp, &gen_ctx);
    fs_store *dev[2] = {dev_open(ap, "dev-a"), dev_open(bp, "dev-b")};

    /* Setup: create the pool, sync it to both devices. */
    char act[640], id[64];
    for (int d = 0; d < (disjoint ? 2 : 1); d++) {
        for (long k = 0; k < pool; k++) {
            rec_id(id, sizeof id, policy, d, k);
            snprintf(act, sizeof act, "{\"action\":\"create\",\"actor\":\"setup\",\"type\":\"rec\",\"id\":\"%s\",\"set\":{\"label\":\"%s\"%s}}",
                     id, id, policy == P_SERVER ? ",\"v_srv\":0" : policy == P_CUSTOM ? ",\"v_cus\":\"init\"" : "");
            h_apply(dev[d], act);
        }
        sync_dev(dev[d], G, NULL);
    }
    pull_now(dev[0], G);
    pull_now(dev[1], G);
    if (h_outbox(dev[0]) != 0 || h_outbox(dev[1]) != 0) h_die("setup: outbox not empty");
    h_hub_close(G);
    h_copy_db(gp, seedp);
    G = hub_open(gp, &gen_ctx);

    /* Generation */
    long rounds = (g_entries + 2 * BATCH - 1) / (2 * BATCH), action_i = 0, *perm = malloc(sizeof(long) * (size_t)pool);
    req_list_t kept = {0};
    h_rng rng = {0xA5A5F00Dull + (uint64_t)policy};
    for (long r = 0; r < rounds; r++) {
        for (int d = 0; d < 2; d++) {
            if (policy == P_CUSTOM) { /* each record once per round, in a random order */
                for (long k = 0; k < pool; k++) perm[k] = k;
                for (long k = pool - 1; k > 0; k--) {
                    long j = (long)(h_rand(&rng) % (uint64_t)(k + 1)), x = perm[k];
                    perm[k] = perm[j], perm[j] = x;
                }
            }
            for (long i = 0; i < BATCH; i++, action_i++) {
                long k = policy == P_CUSTOM ? perm[i % pool] : (long)(h_rand(&rng) % (uint64_t)pool);
                rec_id(id, sizeof id, policy, d, k);
                policy_action(act, sizeof act, policy, d, action_i, id, &rng);
                h_apply(dev[d], act);
            }
        }
        sync_dev(dev[0], G, &kept);
        sync_dev(dev[1], G, &kept);
    }
    free(perm);
    long gen_c[N_COUNTERS], entries = 0, push = 0;
    counters(G, field, gen_c);
    h_hub_close(G);
    h_store_close(dev[0]);
    h_store_close(dev[1]);
    long long bytes = 0;
    for (long i = 0; i < kept.n; i++) {
        bytes += (long long)strlen(kept.r[i].text);
        entries += kept.r[i].entries;
        push += kept.r[i].entries > 0;
    }
    printf("generated %ld requests (%ld with entries, %ld entries, %.1f MiB of request text) in %.1f s; generation hub: %ld "
           "concurrent writes, %ld resolver calls\n", kept.n, push, entries, bytes / 1048576.0, (h_now_ns() - g0) / 1e9,
           gen_c[C_CONCURRENT], gen_ctx.calls);

    /* Replays, each on a fresh copy of the starting hub */
    int64_t *ns = malloc(sizeof *ns * (size_t)kept.n), *ns_push = malloc(sizeof *ns * (size_t)kept.n);
    for (int rep = 0; rep < nrep; rep++) {
        policy_result_t *res = &out[rep];
        memset(res, 0, sizeof *res);
        h_copy_db(seedp, rp);
        sync(); /* start each replay from a quiet disk */
        resolver_ctx_t ctx = {0};
        fs_hub *R = hub_open(rp, &ctx);
        long c0[N_COUNTERS], npush = 0, npull = 0; /* the setup's writes are in the counters: report deltas */
        counters(R, field, c0);
        h_load m0 = h_load_now();
        for (long i = 0; i < kept.n; i++) {
            char *resp = NULL;
            int64_t cpu0 = h_thread_ns(), t0 = h_now_ns();
            fs_status rc = fs_hub_handle(R, kept.r[i].text, &resp);
            ns[i] = h_now_ns() - t0;
            res->cpu_s += (h_thread_ns() - cpu0) / 1e9;
            h_ok(rc, "replay fs_hub_handle");
            res->handle_s += ns[i] / 1e9;
            if (kept.r[i].entries > 0) ns_push[npush++] = ns[i];
            else npull++;
            result_counts_t c = response_counts(resp), w = kept.r[i].want;
            fs_free(resp);
            if ((c.applied != w.applied || c.rejected != w.rejected || c.duplicate != w.duplicate || c.retry != w.retry) &&
                !res->mismatch++)
                fprintf(stderr, "merge_throughput: %s request %ld: replay results differ from generation: applied %ld/%ld "
                                "rejected %ld/%ld duplicate %ld/%ld retry %ld/%ld\n", POLICY_NAMES[policy], i, c.applied,
                        w.applied, c.rejected, w.rejected, c.duplicate, w.duplicate, c.retry, w.retry);
            res->got.applied += c.applied, res->got.rejected += c.rejected;
            res->got.duplicate += c.duplicate, res->got.retry += c.retry;
        }
        h_load m1 = h_load_now();
        res->requests = kept.n;
        res->entries = entries;
        res->per_req = h_pct(ns_push, npush, 1e6);
        res->resolver_calls = ctx.calls;
        counters(R, field, res->c);
        for (int k = 0; k < N_COUNTERS; k++) res->c[k] -= c0[k];
        h_hub_close(R);
        long k10 = kept.n < 10 ? kept.n : 10;
        double first = 0, last = 0;
        for (long i = 0; i < k10; i++) first += ns[i] / 1e6, last += ns[kept.n - 1 - i] / 1e6;
        printf("replay %d: %ld requests, %ld entries in %.3f s of fs_hub_handle = %.0f entries/s (thread CPU %.3f s = %.0f "
               "entries/CPU-s); per request with entries p50 %.2f p99 %.2f max %.2f ms; %ld pull-only requests; results applied "
               "%ld rejected %ld duplicate %ld retry %ld%s\n", rep + 1, res->requests, res->entries, res->handle_s,
               res->entries / res->handle_s, res->cpu_s, res->entries / res->cpu_s, res->per_req.p50, res->per_req.p99,
               res->per_req.max, npull, res->got.applied, res->got.rejected, res->got.duplicate, res->got.retry,
               res->mismatch ? " (MISMATCH with generation)" : " (= generation)");
        printf("  mean fs_hub_handle of the first 10 requests %.2f ms, of the last 10 %.2f ms\n", first / (k10 ? k10 : 1),
               last / (k10 ? k10 : 1));
        printf("  hub stats %s (replay only):", field);
        for (int k = 0; k < N_COUNTERS; k++) printf(" %s %ld,", COUNTERS[k], res->c[k]);
        printf(" resolver calls %ld\n", res->resolver_calls);
        h_contention("the replay", m0, m1);
        if (!h_keep) h_remove_db(rp);
    }
    free(ns);
    free(ns_push);
    for (long i = 0; i < kept.n; i++) fs_free(kept.r[i].text);
    free(kept.r);
    for (int k = 0; !h_keep && k < 5; k++) h_remove_db(paths[k]);
    if (!h_keep) rmdir(dir);
}

int main(int argc, char **argv) {
    const char *only = NULL;
    h_opt opts[] = {{"--entries", 'l', &g_entries}, {"--only", 's', &only}, {"--repeat", 'i', &g_repeat},
                    {"--durability", 's', &g_durability}, {0}};
    h_args(argc, argv, opts, "[--entries N] [--only lww-disjoint|lww|counter|set|server|custom] [--repeat N] "
                             "[--durability normal|full]");
    for (int k = 0; only && k < N_POLICIES; k++)
        if (!strcmp(only, POLICY_NAMES[k])) g_only = k;
    if ((only && g_only < 0) || (strcmp(g_durability, "normal") && strcmp(g_durability, "full")) || g_entries < 1000 ||
        g_entries > 10000000 || g_repeat < 1 || g_repeat > 20)
        h_usage();
    char base[PATH_MAX];
    h_begin("merge_throughput", "fieldsync hub merge throughput per policy", base, sizeof base);
    long rounds = (g_entries + 2 * BATCH - 1) / (2 * BATCH);
    printf("workload: per policy %ld rounds x 2 devices x %d entries = %ld entries; hub durability \"%s\"; only fs_hub_handle is "
           "timed (replay of the kept requests on a copy of the starting hub)\n", rounds, BATCH, rounds * 2 * BATCH, g_durability);
    policy_result_t *all = calloc((size_t)N_POLICIES * (size_t)g_repeat, sizeof *all);
    int64_t t0 = h_now_ns();
    for (int p = 0; p < N_POLICIES; p++)
        if (g_only < 0 || p == g_only) run_policy(p, base, &all[p * g_repeat], g_repeat);

    printf("\nhub merge throughput (fs_hub_handle only; requests of %d entries + %d audit rows + pull; per-request times over "
           "requests with entries)\n", BATCH, BATCH);
    printf("%-13s %3s | %7s %8s | %10s %8s %9s | %8s %8s %8s | %11s %9s %8s\n", "policy", "rep", "entries", "requests", "entries/s",
           "vs lww-dj", "ent/CPU-s", "p50 ms", "p99 ms", "max ms", "concurrent", "resolver", "rejected");
    double base_eps = 0;
    for (int r = 0; g_only <= P_LWW_DISJOINT && r < g_repeat; r++) base_eps += all[r].entries / all[r].handle_s / g_repeat;
    long mismatch = 0;
    for (int p = 0; p < N_POLICIES; p++)
        for (int r = 0; (g_only < 0 || p == g_only) && r < g_repeat; r++) {
            const policy_result_t *x = &all[p * g_repeat + r];
            double eps = x->entries / x->handle_s;
            char rel[16] = "-", conc[24];
            if (base_eps > 0) snprintf(rel, sizeof rel, "%.2f", eps / base_eps);
            snprintf(conc, sizeof conc, "%.1f%%", x->c[C_WRITES] ? 100.0 * x->c[C_CONCURRENT] / x->c[C_WRITES] : 0.0);
            printf("%-13s %3d | %7ld %8ld | %10.0f %8s %9.0f | %8.2f %8.2f %8.2f | %11s %9ld %8ld\n", POLICY_NAMES[p], r + 1,
                   x->entries, x->requests, eps, rel, x->entries / x->cpu_s, x->per_req.p50, x->per_req.p99, x->per_req.max,
                   conc, x->resolver_calls, x->got.rejected);
            mismatch += x->mismatch;
        }
    printf("total wall time %.1f s\n", (h_now_ns() - t0) / 1e9);
    free(all);
    h_expect(!mismatch, "some replay results differed from the generation run (see stderr)");
    return h_end(base);
}
