/* hygiene_year.c — a simulated year on one device, with and without storage
 * hygiene (docs/HYGIENE.md): does the store stay small, quick to open and
 * quick to write? One store and one in-process hub on a test clock (from
 * 2023-11-14, a day per simulated day); each day ACTIONS actions over a
 * rolling set of tasks (15 % create; archive as done/cancelled 2-5 days
 * after creation, except 10 % never archived; the rest work on tasks of the
 * last 10 days: 40 % inc picked, 30 % set status, 30 % add a tag), then a
 * sync at 23:00. Retention keep_days 60, archive_when status done|cancelled.
 * Run ON (hygiene_every ACTIONS, audit_keep_days 60; --explicit: call
 * fs_store_hygiene after each sync) and OFF, same seed. At days 30, 90, 180,
 * 365 and the last: .db + -wal size, median of 3 reopens, apply p50/p99/max
 * (wall and thread CPU) over that day, records, audit rows, evictions.
 * Targets (ON): last day within 1.2x of day 90 in size, open time and p99.
 * Usage: hygiene_year [DAYS [ACTIONS]] [--only on|off] [--every N] [--explicit]
 *        (365 2000 in full; 60 300 is quick) */
#include "harness.h"

#define DAY_MS ((int64_t)86400000)
#define T0_MS ((int64_t)1699920000000LL) /* 2023-11-14 00:00:00 UTC */
#define KEEP_DAYS 60
#define WORK_WINDOW_DAYS 10

static const char *YEAR_SCHEMA =
    "{\"version\":1,\"types\":{\"task\":{\"fields\":{\"status\":{\"type\":\"string\"},\"site\":{\"type\":\"string\"},"
    "\"title\":{\"type\":\"string\"},\"picked\":{\"type\":\"int\",\"merge\":\"counter\"},\"tags\":{\"type\":\"set\"}},"
    "\"required\":[\"status\"],"
    "\"retention\":{\"keep_days\":60,\"archive_when\":{\"status\":[\"done\",\"cancelled\"]}}}}}";

static const char *WORK_STATUSES[4] = {"in_progress", "staged", "blocked", "open"};

static long g_days = 365;
static long g_per_day = 2000;
static long g_every = 0; /* 0 = g_per_day */
static int g_explicit = 0;
static int g_do_on = 1, g_do_off = 1;

static int64_t g_now = T0_MS;
static int64_t test_clock(void *ctx) { return *(const int64_t *)ctx; }

typedef struct { int32_t created_day, archive_day /* -1: never */; uint8_t archived, cancel; } task_t;

typedef struct {
    task_t *t;
    long n, cap;
    long *day_first; /* index of the first task created on day d */
    h_rng rng;
    long n_create, n_archive, n_work;
} world_t;

static void world_init(world_t *w, long days, uint64_t seed) {
    memset(w, 0, sizeof *w);
    w->cap = 1024;
    w->t = malloc(sizeof *w->t * (size_t)w->cap);
    w->day_first = calloc((size_t)days + 1, sizeof *w->day_first);
    if (!w->t || !w->day_first) h_die("out of memory");
    w->rng.s = seed;
}

static void world_free(world_t *w) {
    free(w->t);
    free(w->day_first);
}

static long world_new_task(world_t *w, long day) {
    if (w->n == w->cap) {
        w->cap *= 2;
        w->t = realloc(w->t, sizeof *w->t * (size_t)w->cap);
        if (!w->t) h_die("out of memory");
    }
    task_t *t = &w->t[w->n];
    t->created_day = (int32_t)day;
    t->archived = 0;
    uint64_t r = h_rand(&w->rng);
    if (r % 100 < 10) {
        t->archive_day = -1; /* never archived */
        t->cancel = 0;
    } else {
        t->archive_day = (int32_t)(day + 2 + (long)((r >> 8) % 4));
        t->cancel = (uint8_t)(((r >> 16) % 10) == 0);
    }
    return w->n++;
}

/* A random non-archived task created in the last WORK_WINDOW_DAYS days, or
 * the newest task (never archived on its creation day), or -1. */
static long world_pick_work(world_t *w, long day) {
    if (w->n == 0) return -1;
    long lo_day = day - (WORK_WINDOW_DAYS - 1);
    long lo = lo_day <= 0 ? 0 : w->day_first[lo_day];
    long span = w->n - lo;
    for (int i = 0; i < 64 && span > 0; i++) {
        long k = lo + (long)(h_rand(&w->rng) % (uint64_t)span);
        if (!w->t[k].archived) return k;
    }
    return w->t[w->n - 1].archived ? -1 : w->n - 1;
}

enum { K_CREATE = 0, K_ARCHIVE = 1, K_WORK = 2 };

/* Builds day `day`'s action texts into acts[0..per_day-1] (each up to 512
 * bytes). Returns the number of actions. */
static long world_day(world_t *w, long day, long per_day, char (*acts)[512], long *first_action_index) {
    w->day_first[day] = w->n;
    long n_create = (per_day * 15 + 50) / 100;
    /* today's archives: tasks with archive_day == day */
    long lo_day = day - 5 < 0 ? 0 : day - 5;
    long lo = w->day_first[lo_day];
    long *arch = malloc(sizeof *arch * (size_t)(w->n - lo + 1));
    long n_arch = 0;
    for (long k = lo; k < w->n; k++)
        if (w->t[k].archive_day == day && !w->t[k].archived) arch[n_arch++] = k;
    if (n_arch > per_day - n_create) n_arch = per_day - n_create;
    long n_work = per_day - n_create - n_arch;
    /* a shuffled list of kinds */
    uint8_t *kinds = malloc((size_t)per_day);
    long p = 0;
    for (long i = 0; i < n_create; i++) kinds[p++] = K_CREATE;
    for (long i = 0; i < n_arch; i++) kinds[p++] = K_ARCHIVE;
    for (long i = 0; i < n_work; i++) kinds[p++] = K_WORK;
    for (long i = per_day - 1; i > 0; i--) {
        long j = (long)(h_rand(&w->rng) % (uint64_t)(i + 1));
        uint8_t x = kinds[i];
        kinds[i] = kinds[j], kinds[j] = x;
    }
    long ai = 0, idx = *first_action_index;
    for (long i = 0; i < per_day; i++, idx++) {
        char in[128], ops[160];
        const char *name;
        uint64_t r = h_rand(&w->rng);
        task_input(in, sizeof in, idx);
        int kind = kinds[i];
        long k = kind == K_WORK ? world_pick_work(w, day) : -1;
        if (kind == K_WORK && k < 0) kind = K_CREATE;
        if (kind == K_CREATE) {
            k = world_new_task(w, day);
            int site = (int)((r >> 8) % 40);
            name = "create_task";
            snprintf(ops, sizeof ops, "\"set\":{\"status\":\"open\",\"site\":\"site-%02d\",\"title\":\"Pick order %07ld for site %02d\"}",
                     site, k, site);
            w->n_create++;
        } else if (kind == K_ARCHIVE) {
            k = arch[ai++];
            w->t[k].archived = 1;
            name = "close_task";
            snprintf(ops, sizeof ops, "\"set\":{\"status\":\"%s\"}", w->t[k].cancel ? "cancelled" : "done");
            w->n_archive++;
        } else {
            int sub = (int)((r >> 8) % 10);
            name = sub < 4 ? "pick_item" : sub < 7 ? "set_status" : "tag_task";
            if (sub < 4) snprintf(ops, sizeof ops, "\"inc\":{\"picked\":1}");
            else if (sub < 7) snprintf(ops, sizeof ops, "\"set\":{\"status\":\"%s\"}", WORK_STATUSES[(r >> 16) % 4]);
            else snprintf(ops, sizeof ops, "\"add\":{\"tags\":[\"tag-%02d\"]}", (int)((r >> 16) % 16));
            w->n_work++;
        }
        snprintf(acts[i], 512, "{\"action\":\"%s\",\"actor\":\"op-%02d\",\"type\":\"task\",\"id\":\"T-%07ld\",%s,\"input\":%s}", name,
                 (int)(r % 40), k, ops, in);
    }
    *first_action_index = idx;
    free(kinds);
    free(arch);
    return per_day;
}

typedef struct {
    long day;
    long long db_bytes, wal_bytes;
    double open_ms[3], open_med_ms;
    h_stats lat;   /* that day's fs_store_apply, ms */
    h_stats cpu;   /* the same calls' thread CPU time, ms */
    double others;       /* CPUs used by other processes during that day's applies */
    long long records, audit_rows, evicted, outbox_total, hub_records;
    double sync_ms;      /* the day's exchanges (incl. automatic hygiene) */
    double hygiene_ms;   /* explicit mode: fs_store_hygiene; else -1 */
} checkpoint_t;

typedef struct {
    const char *name;
    int hygiene;
    checkpoint_t cp[16];
    int ncp;
    double wall_s, apply_s, sync_s, hygiene_s, reopen_s;
    long exchanges, rejected, retry;
    long long hyg_evicted, hyg_audit_evicted; /* explicit mode sums */
} run_t;

static char g_opts[512];

static fs_store *open_store(const char *path) {
    fs_store *st = h_store(path, YEAR_SCHEMA, g_opts);
    h_ok(fs_store_set_clock(st, test_clock, &g_now), "fs_store_set_clock");
    return st;
}

static void store_counts(fs_store *st, checkpoint_t *c) {
    char *s = NULL;
    h_ok(fs_store_stats(st, &s), "fs_store_stats");
    c->records = h_json_int(s, "records", -1);
    c->audit_rows = h_json_int(s, "audit_rows", -1);
    c->evicted = h_json_int(s, "records_evicted", -1);
    c->outbox_total = h_json_int(s, "outbox_total", -1);
    fs_free(s);
}

/* Exchanges until prepare returns no request. Returns the wall ms. */
static double daily_sync(fs_store *st, fs_hub *hub, run_t *run) {
    int64_t t0 = h_now_ns();
    long n = 0;
    for (;;) {
        char *req = NULL, *resp = NULL, *sum = NULL;
        int64_t wait = 0;
        h_enroll(st, hub);
        h_ok(fs_sync_prepare(st, &req, &wait), "fs_sync_prepare");
        if (!req) break;
        h_ok(fs_hub_handle(hub, req, &resp), "fs_hub_handle");
        h_ok(fs_sync_receive(st, resp, &sum), "fs_sync_receive");
        run->rejected += (long)h_json_int(sum, "rejected", 0);
        run->retry += (long)h_json_int(sum, "retry", 0);
        fs_free(req);
        fs_free(resp);
        fs_free(sum);
        if (++n > 10000) h_die("daily sync: more than 10,000 exchanges");
    }
    run->exchanges += n;
    return (h_now_ns() - t0) / 1e6;
}

static int is_checkpoint(long day1) { /* day1: 1-based day number */
    return day1 == 30 || day1 == 90 || day1 == 180 || day1 == 365 || day1 == g_days;
}

static void do_run(run_t *run, const char *dir) {
    char sp[PATH_MAX + 64], hp[PATH_MAX + 64], wp[PATH_MAX + 72];
    snprintf(sp, sizeof sp, "%s/device.db", dir);
    snprintf(hp, sizeof hp, "%s/hub.db", dir);
    snprintf(wp, sizeof wp, "%s-wal", sp);
    h_remove_db(sp);
    h_remove_db(hp);
    long every = g_every > 0 ? g_every : g_per_day;
    if (run->hygiene && !g_explicit)
        snprintf(g_opts, sizeof g_opts,
                 "{\"durability\":\"normal\",\"device_id\":\"dev-year\",\"hygiene_every\":%ld,\"audit_keep_days\":%d}",
                 every, KEEP_DAYS);
    else if (run->hygiene)
        snprintf(g_opts, sizeof g_opts, "{\"durability\":\"normal\",\"device_id\":\"dev-year\",\"audit_keep_days\":%d}",
                 KEEP_DAYS);
    else
        snprintf(g_opts, sizeof g_opts, "{\"durability\":\"normal\",\"device_id\":\"dev-year\"}");
    printf("\n== run %s: %s ==\n", run->name, dir);
    printf("store options: %s%s\n", g_opts, run->hygiene && g_explicit ? " + fs_store_hygiene() after each daily sync" : "");

    g_now = T0_MS;
    fs_hub *hub = h_hub(hp, YEAR_SCHEMA, "{\"durability\":\"normal\"}");
    h_ok(fs_hub_set_clock(hub, test_clock, &g_now), "fs_hub_set_clock");
    fs_status rc;
    fs_store *st = open_store(sp);

    world_t w;
    world_init(&w, g_days, 0x5EED1234ABCDull);
    char(*acts)[512] = malloc(sizeof *acts * (size_t)g_per_day);
    int64_t *lat = malloc(sizeof *lat * (size_t)g_per_day);
    int64_t *lcpu = malloc(sizeof *lcpu * (size_t)g_per_day);
    if (!acts || !lat || !lcpu) h_die("out of memory");
    long action_index = 0;
    int64_t run0 = h_now_ns();
    h_load m0 = h_load_now();
    double apply_ns_total = 0, sync_ms_total = 0, hyg_ms_total = 0, reopen_ms_total = 0;
    printf("%5s %10s %9s %8s %8s %8s %9s %9s %9s %6s %8s\n", "day", "db+wal MiB", "records", "evicted", "audit",
           "p99 ms", "p99cpu ms", "sync ms", "hyg ms", "others", "elapsed");
    for (long d = 0; d < g_days; d++) {
        world_day(&w, d, g_per_day, acts, &action_index);
        int64_t day0 = T0_MS + d * DAY_MS + 8 * 3600 * 1000LL; /* work from 08:00 */
        int64_t step = (14 * 3600 * 1000LL) / g_per_day;       /* to 22:00 */
        h_load dm0 = h_load_now();
        for (long i = 0; i < g_per_day; i++) {
            g_now = day0 + i * step;
            char *res = NULL;
            int64_t c0 = h_thread_ns();
            int64_t t0 = h_now_ns();
            rc = fs_store_apply(st, acts[i], &res);
            fs_free(res);
            int64_t t1 = h_now_ns();
            lcpu[i] = h_thread_ns() - c0;
            if (rc != FS_OK)
                h_die("day %ld action %ld: fs_store_apply: %s: %s\n  action: %s", d + 1, i, fs_status_name(rc),
                    fs_last_error(), acts[i]);
            lat[i] = t1 - t0;
            apply_ns_total += (double)(t1 - t0);
        }
        double day_others = h_others(dm0, h_load_now());
        g_now = T0_MS + d * DAY_MS + 23 * 3600 * 1000LL;
        double sync_ms = daily_sync(st, hub, run);
        sync_ms_total += sync_ms;
        double hyg_ms = -1;
        if (run->hygiene && g_explicit) {
            char *rep = NULL;
            int64_t t0 = h_now_ns();
            rc = fs_store_hygiene(st, &rep);
            hyg_ms = (h_now_ns() - t0) / 1e6;
            if (rc != FS_OK) h_die("fs_store_hygiene: %s: %s", fs_status_name(rc), fs_last_error());
            run->hyg_evicted += h_json_int(rep, "records_evicted", 0);
            run->hyg_audit_evicted += h_json_int(rep, "audit_rows_evicted", 0);
            fs_free(rep);
            hyg_ms_total += hyg_ms;
        }
        long day1 = d + 1;
        if (is_checkpoint(day1) && run->ncp < 16) {
            checkpoint_t *c = &run->cp[run->ncp++];
            memset(c, 0, sizeof *c);
            c->day = day1;
            c->db_bytes = h_file_size(sp);
            c->wal_bytes = h_file_size(wp);
            if (c->wal_bytes < 0) c->wal_bytes = 0;
            c->lat = h_pct(lat, g_per_day, 1e6);
            c->cpu = h_pct(lcpu, g_per_day, 1e6);
            c->others = day_others;
            c->sync_ms = sync_ms;
            c->hygiene_ms = hyg_ms;
            store_counts(st, c);
            c->hub_records = h_hub_stat(hub, "records");
            int64_t r0 = h_now_ns();
            for (int k = 0; k < 3; k++) {
                h_store_close(st);
                int64_t t0 = h_now_ns();
                st = open_store(sp);
                c->open_ms[k] = (h_now_ns() - t0) / 1e6;
            }
            reopen_ms_total += (h_now_ns() - r0) / 1e6;
            double v[3] = {c->open_ms[0], c->open_ms[1], c->open_ms[2]};
            c->open_med_ms = h_median(v, 3);
            printf("  checkpoint day %ld: db %.2f MiB + wal %.2f MiB, records %lld (hub %lld), audit rows %lld, "
                   "evicted %lld, outbox %lld, open %.2f/%.2f/%.2f ms (median %.2f), apply p50 %.3f p99 %.3f max %.3f ms "
                   "(thread CPU p50 %.3f p99 %.3f ms; other processes %.2f CPUs), sync %.0f ms%s\n",
                   day1, c->db_bytes / 1048576.0, c->wal_bytes / 1048576.0, c->records, c->hub_records, c->audit_rows,
                   c->evicted, c->outbox_total, c->open_ms[0], c->open_ms[1], c->open_ms[2], c->open_med_ms, c->lat.p50,
                   c->lat.p99, c->lat.max, c->cpu.p50, c->cpu.p99, c->others, c->sync_ms, "");
        }
        if (day1 % 30 == 0 || day1 == g_days || day1 == 1) {
            checkpoint_t tmp;
            store_counts(st, &tmp);
            h_stats s = h_pct(lat, g_per_day, 1e6), sc = h_pct(lcpu, g_per_day, 1e6);
            char hs[32];
            if (hyg_ms >= 0) snprintf(hs, sizeof hs, "%9.1f", hyg_ms);
            else snprintf(hs, sizeof hs, "%9s", "-");
            printf("%5ld %10.2f %9lld %8lld %8lld %8.3f %9.3f %9.0f %s %6.2f %7.0fs\n", day1, h_db_size(sp) / 1048576.0,
                   tmp.records, tmp.evicted, tmp.audit_rows, s.p99, sc.p99, sync_ms, hs, day_others,
                   (h_now_ns() - run0) / 1e9);
        }
    }
    h_load m1 = h_load_now();
    run->wall_s = (h_now_ns() - run0) / 1e9;
    run->apply_s = apply_ns_total / 1e9;
    run->sync_s = sync_ms_total / 1e3;
    run->hygiene_s = hyg_ms_total / 1e3;
    run->reopen_s = reopen_ms_total / 1e3;
    printf("run %s: %.1f s wall (apply %.1f s, daily syncs %.1f s%s, reopen checks %.1f s); %ld exchanges, "
           "%ld rejected, %ld retry; actions: %ld creates, %ld archives, %ld work; tasks created %ld\n",
           run->name, run->wall_s, run->apply_s, run->sync_s, run->hygiene && g_explicit ? ", explicit hygiene" : "",
           run->reopen_s, run->exchanges, run->rejected, run->retry, w.n_create, w.n_archive, w.n_work, w.n);
    if (run->hygiene && g_explicit)
        printf("  explicit hygiene: %.1f s in total; %lld records and %lld audit rows evicted\n", run->hygiene_s,
               run->hyg_evicted, run->hyg_audit_evicted);
    h_contention(run->name, m0, m1);
    h_store_close(st);
    h_hub_close(hub);
    free(acts);
    free(lat);
    free(lcpu);
    world_free(&w);
    if (!h_keep) {
        h_remove_db(sp);
        h_remove_db(hp);
        rmdir(dir);
    }
}

static const checkpoint_t *find_cp(const run_t *r, long day) {
    for (int i = 0; i < r->ncp; i++)
        if (r->cp[i].day == day) return &r->cp[i];
    return NULL;
}

int main(int argc, char **argv) {
    const char *only = NULL;
    h_opt opts[] = {{NULL, 'l', &g_days}, {NULL, 'l', &g_per_day}, {"--only", 's', &only}, {"--every", 'l', &g_every},
                    {"--explicit", 'f', &g_explicit}, {0}};
    h_args(argc, argv, opts, "[DAYS [ACTIONS_PER_DAY]] [--only on|off] [--every N] [--explicit]");
    if (only) g_do_on = !strcmp(only, "on"), g_do_off = !strcmp(only, "off");
    if (g_days < 1 || g_days > 3650 || g_per_day < 10 || g_per_day > 1000000 || !(g_do_on || g_do_off)) h_usage();
    char base[PATH_MAX];
    h_begin("hygiene_year", "fieldsync hygiene over a simulated year", base, sizeof base);
    printf("workload: %ld days x %ld actions/day (15%% create, ~13.5%% archive 2-5 days after creation, rest work on "
           "tasks of the last %d days); 10%% of tasks never archived; daily sync; retention keep_days %d\n",
           g_days, g_per_day, WORK_WINDOW_DAYS, KEEP_DAYS);
    printf("hygiene ON: %s; audit_keep_days %d\n",
           g_explicit ? "explicit fs_store_hygiene() after each daily sync" : "store option hygiene_every",
           KEEP_DAYS);
    if (!g_explicit) printf("  hygiene_every = %ld\n", g_every > 0 ? g_every : g_per_day);

    run_t runs[2];
    memset(runs, 0, sizeof runs);
    runs[0].name = "hygiene-ON";
    runs[0].hygiene = 1;
    runs[1].name = "hygiene-OFF";
    runs[1].hygiene = 0;
    int64_t t0 = h_now_ns();
    for (int r = 0; r < 2; r++) {
        if ((r == 0 && !g_do_on) || (r == 1 && !g_do_off)) continue;
        char dir[PATH_MAX + 32];
        snprintf(dir, sizeof dir, "%s/%s", base, r == 0 ? "on" : "off");
        mkdir(dir, 0700);
        do_run(&runs[r], dir);
    }
    double total = (h_now_ns() - t0) / 1e9;

    printf("\nsummary (%ld days x %ld actions/day; size = .db + -wal after the day's sync; open = median of 3 "
           "reopens; latency = fs_store_apply over that day's %ld actions)\n",
           g_days, g_per_day, g_per_day);
    printf("%-12s %5s | %9s %8s | %9s | %8s %8s %8s | %9s %6s | %9s %9s %8s\n", "run", "day", "size MiB", "wal MiB",
           "open ms", "p50 ms", "p99 ms", "max ms", "p99cpu ms", "others", "records", "audit", "evicted");
    printf("-------------------+--------------------+-----------+----------------------------+------------------+"
           "------------------------------\n");
    for (int r = 0; r < 2; r++) {
        const run_t *R = &runs[r];
        for (int i = 0; i < R->ncp; i++) {
            const checkpoint_t *c = &R->cp[i];
            printf("%-12s %5ld | %9.2f %8.2f | %9.2f | %8.3f %8.3f %8.3f | %9.3f %6.2f | %9lld %9lld %8lld\n", R->name,
                   c->day, (c->db_bytes + c->wal_bytes) / 1048576.0, c->wal_bytes / 1048576.0, c->open_med_ms,
                   c->lat.p50, c->lat.p99, c->lat.max, c->cpu.p99, c->others, c->records, c->audit_rows, c->evicted);
        }
    }
    /* targets: last day vs day 90 */
    if (g_do_on) {
        const run_t *R = &runs[0];
        const checkpoint_t *c90 = find_cp(R, 90), *cl = R->ncp ? &R->cp[R->ncp - 1] : NULL;
        if (c90 && cl && cl->day > 90) {
            double sz = (double)(cl->db_bytes + cl->wal_bytes) / (double)(c90->db_bytes + c90->wal_bytes);
            double op = cl->open_med_ms / c90->open_med_ms;
            double p99 = cl->lat.p99 / c90->lat.p99;
            double p99c = cl->cpu.p99 / c90->cpu.p99;
            char what[96];
            printf("\n");
            snprintf(what, sizeof what, "hygiene ON, size day %ld / day 90", cl->day);
            h_target(what, sz, "<=", 1.2, "x");
            snprintf(what, sizeof what, "hygiene ON, open time day %ld / day 90", cl->day);
            h_target(what, op, "<=", 1.2, "x");
            snprintf(what, sizeof what, "hygiene ON, apply p99 day %ld / day 90", cl->day);
            h_target(what, p99, "<=", 1.2, "x");
            snprintf(what, sizeof what, "hygiene ON, apply thread-CPU p99 day %ld / day 90", cl->day);
            h_target(what, p99c, "<=", 1.2, "x");
            printf("(wall-clock p99 and open time move with the other processes' load, column \"others\"; the thread-CPU "
                   "p99 excludes time spent descheduled)\n");
        } else {
            printf("\ntargets: need a run longer than 90 days\n");
        }
        if (g_do_off) {
            const checkpoint_t *a = R->ncp ? &R->cp[R->ncp - 1] : NULL;
            const checkpoint_t *b = runs[1].ncp ? &runs[1].cp[runs[1].ncp - 1] : NULL;
            if (a && b)
                printf("last day, OFF / ON: size %.1fx, open %.2fx, p99 %.2fx, records %.1fx\n",
                       (double)(b->db_bytes + b->wal_bytes) / (double)(a->db_bytes + a->wal_bytes),
                       b->open_med_ms / a->open_med_ms, b->lat.p99 / a->lat.p99,
                       a->records > 0 ? (double)b->records / (double)a->records : 0);
        }
    }
    printf("total wall time %.1f s\n", total);
    return h_end(base);
}
