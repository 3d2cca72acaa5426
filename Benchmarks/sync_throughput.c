/* sync_throughput.c — device -> hub -> ack throughput, in-process: 100,000
 * actions over 10,000 records applied offline, then drained (prepare ->
 * fs_hub_handle -> receive, batch 500, pull on), against raw SQLite writing
 * the same rows in the same batches, run after it in the same process:
 *   baseline:  hub (a fresh file with the hub's DDL): per action the record
 *              row, its state row, the idempotency row and the audit row;
 *              device (a copy of the store before the drain): delete the
 *              outbox row, update the audit row; one transaction per batch
 *              per side;
 *   baseline+: also every other row the engine writes (inflight marks,
 *              conflict counters, meta, the device's shadow and view rows).
 * Values (state texts shaped like the hub's) are built before the timer.
 * Usage: sync_throughput [--actions N] [--records N] [--batch N] [--no-baseline] */
#include "harness.h"

#include <stddef.h>

static long g_actions = 100000, g_records = 10000, g_batch = 0;
static int g_no_baseline = 0;

enum { F_PICKED, F_SITE, F_STATUS, F_TAGS, N_FIELDS }; /* sorted, as the hub's JSON */
static const char *FIELD[N_FIELDS] = {"picked", "site", "status", "tags"};
static const char *POLICY[N_FIELDS] = {"counter", "lww", "lww", "set"};

/* The hub's state of one record, enough to write rows shaped like its own. */
typedef struct {
    int64_t picked, stamp[N_FIELDS], version[N_FIELDS], tag_seq[32];
    int has_picked;
    char site[24], status[24];
    uint32_t tags;
} hub_rec;

typedef struct {
    int64_t seq, server_seq, device_time, hlc, picked;
    int rec, nfields, fields[N_FIELDS], has_picked;
    char id[32], actor[32], action[32], input[160], outbox_keys[64], prev_hash[65], hash[65], site[24], status[24];
    char tags[32 * 10 + 4];
    char state[2600], shadow[1300];
} entry;

typedef struct {
    sqlite3 *hub, *dev;
    sqlite3_stmt *h_begin, *h_commit, *h_view, *h_rec, *h_applied, *h_audit, *h_conf, *h_meta;
    sqlite3_stmt *d_begin, *d_commit, *d_del, *d_upd, *d_inflight, *d_meta, *d_shadow, *d_view, *read;
    hub_rec *recs;
    int64_t server_seq;
    int plus;
} baseline;

static void baseline_open(baseline *b, const char *hub_path, const char *dev_path, int plus) {
    memset(b, 0, sizeof *b);
    b->plus = plus;
    b->recs = calloc((size_t)g_records, sizeof *b->recs);
    b->hub = h_sql_open(hub_path, "NORMAL");
    b->dev = h_sql_open(dev_path, "NORMAL");
    sqlite3 *h = b->hub, *d = b->dev;
    b->h_begin = h_prep(h, "BEGIN IMMEDIATE");
    b->h_commit = h_prep(h, "COMMIT");
    b->h_view = h_prep(h, "INSERT OR REPLACE INTO task(id, picked, site, status, tags) VALUES(?,?,?,?,?)");
    b->h_rec = h_prep(h, "INSERT OR REPLACE INTO fs_hub_records(type, id, seq, state) VALUES('task', ?, ?, ?)");
    b->h_applied = h_prep(h, "INSERT INTO fs_hub_applied(device, seq, status, reason, server_seq, received_at) "
                             "VALUES('" TASK_DEVICE "', ?, 'applied', NULL, ?, ?)");
    b->h_audit = h_prep(h, "INSERT INTO fs_hub_audit(device, audit_id, actor, action, type, id, input, device_time, hlc, "
                           "outbox_keys, prev_hash, hash, server_received_at, hash_ok, link_ok) "
                           "VALUES('" TASK_DEVICE "',?,?,?,'task',?,?,?,?,?,?,?,?,1,1)");
    b->h_conf = h_prep(h, "INSERT INTO fs_hub_conflicts(type, field, policy, writes, concurrent) VALUES('task', ?, ?, 1, 0) "
                          "ON CONFLICT(type, field) DO UPDATE SET writes = writes + 1, concurrent = concurrent + excluded.concurrent");
    b->h_meta = h_prep(h, "INSERT OR REPLACE INTO fs_meta(key, value) VALUES(?, ?)");
    b->d_begin = h_prep(d, "BEGIN IMMEDIATE");
    b->d_commit = h_prep(d, "COMMIT");
    b->d_del = h_prep(d, "DELETE FROM fs_outbox WHERE seq = ?");
    b->d_upd = h_prep(d, "UPDATE fs_audit SET outcome = 'applied', reason = NULL, server_received_at = ? WHERE audit_id = ?");
    b->d_inflight = h_prep(d, "UPDATE fs_outbox SET state = 'inflight', batch = ? WHERE seq = ?");
    b->d_meta = h_prep(d, "INSERT OR REPLACE INTO fs_meta(key, value) VALUES(?, ?)");
    b->d_shadow = h_prep(d, "INSERT OR REPLACE INTO fs_shadow(type, id, version, state) VALUES('task', ?, ?, ?)");
    b->d_view = h_prep(d, "INSERT OR REPLACE INTO task(id, picked, site, status, tags) VALUES(?,?,?,?,?)");
    b->read = h_prep(d, "SELECT o.seq, o.id, o.ops, a.actor, a.action, a.input, a.device_time, a.hlc, a.outbox_keys, "
                        "a.prev_hash, a.hash FROM fs_outbox o JOIN fs_audit a ON a.audit_id = o.seq "
                        "WHERE o.seq > ? ORDER BY o.seq LIMIT ?");
}

static void baseline_close(baseline *b) {
    sqlite3_stmt *all[] = {b->h_begin, b->h_commit, b->h_view, b->h_rec, b->h_applied, b->h_audit, b->h_conf, b->h_meta, b->d_begin,
                           b->d_commit, b->d_del, b->d_upd, b->d_inflight, b->d_meta, b->d_shadow, b->d_view, b->read};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sqlite3_finalize(all[i]);
    sqlite3_close(b->hub);
    sqlite3_close(b->dev);
    free(b->recs);
}

static void tags_json(char *p, uint32_t tags) {
    char *s = p;
    *p++ = '[';
    for (int k = 0; k < 32; k++)
        if (tags & (1u << k)) p += sprintf(p, "%s\"tag-%02d\"", p == s + 1 ? "" : ",", k);
    strcpy(p, "]");
}

/* The hub's stored state (sorted keys) and the device's shadow (without tags). */
static void state_json(const hub_rec *r, entry *e) {
    char fields[600], stamps[400], versions[200], tagmeta[1400] = "", tl[400], *p = fields;
    p += sprintf(p, "{");
    if (r->has_picked) p += sprintf(p, "\"picked\":%lld,", (long long)r->picked);
    if (r->site[0]) p += sprintf(p, "\"site\":\"%s\",", r->site);
    if (r->status[0]) p += sprintf(p, "\"status\":\"%s\",", r->status);
    if (r->tags) { tags_json(tl, r->tags); p += sprintf(p, "\"tags\":%s,", tl); }
    strcpy(p[-1] == ',' ? p - 1 : p, "}");
    p = stamps;
    p += sprintf(p, "{");
    for (int f = 0; f < N_FIELDS; f++)
        if (r->stamp[f]) p += sprintf(p, "\"%s\":[%lld,\"" TASK_DEVICE "\"],", FIELD[f], (long long)r->stamp[f]);
    strcpy(p[-1] == ',' ? p - 1 : p, "}");
    p = versions;
    p += sprintf(p, "{");
    for (int f = 0; f < N_FIELDS; f++)
        if (r->version[f]) p += sprintf(p, "\"%s\":%lld,", FIELD[f], (long long)r->version[f]);
    strcpy(p[-1] == ',' ? p - 1 : p, "}");
    if (r->tags) {
        p = tagmeta + sprintf(tagmeta, ",\"tags\":{\"tags\":[");
        for (int k = 0; k < 32; k++)
            if (r->tags & (1u << k))
                p += sprintf(p, "%s[\"tag-%02d\",[[%lld,\"" TASK_DEVICE "\"]]]", p[-1] == '[' ? "" : ",", k, (long long)r->tag_seq[k]);
        strcpy(p, "]}");
    }
    snprintf(e->state, sizeof e->state, "{\"deleted\":false,\"fields\":%s,\"stamps\":%s%s,\"versions\":%s}", fields, stamps,
             tagmeta, versions);
    snprintf(e->shadow, sizeof e->shadow, "{\"deleted\":false,\"fields\":%s,\"stamps\":%s,\"versions\":%s}", fields, stamps, versions);
}

static void cpy(char *d, size_t n, const unsigned char *s) { snprintf(d, n, "%s", s ? (const char *)s : ""); }

/* Reads up to n entries after `after` from the device copy and computes
 * every value of their rows (outside the timer). */
static long load_batch(baseline *b, int64_t after, long n, entry *out) {
    sqlite3_stmt *s = b->read;
    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int64(s, 2, n);
    long k = 0;
    while (k < n && sqlite3_step(s) == SQLITE_ROW) {
        entry *e = &out[k++];
        memset(e, 0, offsetof(entry, state));
        e->seq = sqlite3_column_int64(s, 0);
        cpy(e->id, sizeof e->id, sqlite3_column_text(s, 1));
        cpy(e->actor, sizeof e->actor, sqlite3_column_text(s, 3));
        cpy(e->action, sizeof e->action, sqlite3_column_text(s, 4));
        cpy(e->input, sizeof e->input, sqlite3_column_text(s, 5));
        e->device_time = sqlite3_column_int64(s, 6);
        e->hlc = sqlite3_column_int64(s, 7);
        cpy(e->outbox_keys, sizeof e->outbox_keys, sqlite3_column_text(s, 8));
        cpy(e->prev_hash, sizeof e->prev_hash, sqlite3_column_text(s, 9));
        cpy(e->hash, sizeof e->hash, sqlite3_column_text(s, 10));
        e->rec = atoi(e->id + 2);
        e->server_seq = ++b->server_seq;
        hub_rec *r = &b->recs[e->rec];
        json_error_t err;
        json_t *o = json_loads((const char *)sqlite3_column_text(s, 2), 0, &err), *v, *t;
        if (!o) h_die("stored ops are not JSON");
        const char *key;
        size_t i;
        json_object_foreach(json_object_get(o, "set"), key, v) {
            int site = !strcmp(key, "site");
            snprintf(site ? r->site : r->status, sizeof r->site, "%s", json_string_value(v));
            e->fields[e->nfields++] = site ? F_SITE : F_STATUS;
        }
        json_object_foreach(json_object_get(o, "inc"), key, v) {
            r->picked += json_integer_value(v);
            r->has_picked = 1;
            e->fields[e->nfields++] = F_PICKED;
        }
        json_object_foreach(json_object_get(o, "add"), key, v) {
            json_array_foreach(v, i, t) {
                int tag = atoi(json_string_value(t) + 4) & 31;
                r->tags |= 1u << tag;
                r->tag_seq[tag] = e->server_seq;
            }
            e->fields[e->nfields++] = F_TAGS;
        }
        json_decref(o);
        for (int f = 0; f < e->nfields; f++) {
            if (e->hlc > r->stamp[e->fields[f]]) r->stamp[e->fields[f]] = e->hlc;
            r->version[e->fields[f]] = e->server_seq;
        }
        e->picked = r->picked;
        e->has_picked = r->has_picked;
        memcpy(e->site, r->site, sizeof e->site);
        memcpy(e->status, r->status, sizeof e->status);
        if (r->tags) tags_json(e->tags, r->tags);
        state_json(r, e);
    }
    sqlite3_reset(s);
    return k;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v) {
    if (v[0]) sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else sqlite3_bind_null(s, i);
}

static void bind_view(sqlite3_stmt *s, const entry *e) {
    bind_text(s, 1, e->id);
    if (e->has_picked) sqlite3_bind_int64(s, 2, e->picked); else sqlite3_bind_null(s, 2);
    bind_text(s, 3, e->site);
    bind_text(s, 4, e->status);
    bind_text(s, 5, e->tags);
    h_step(s);
}

static void meta(sqlite3_stmt *s, const char *key, int64_t v) {
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, v);
    h_step(s);
}

/* The timed part of one batch. */
static void write_batch(baseline *b, const entry *e, long n, int64_t now, long batch_no, int64_t *hub_ns, int64_t *dev_ns) {
    char batch_id[64];
    snprintf(batch_id, sizeof batch_id, TASK_DEVICE "-b%ld", batch_no);
    int64_t t0 = h_now_ns();
    if (b->plus) { /* prepare: mark the batch in flight */
        h_step(b->d_begin);
        for (long i = 0; i < n; i++) {
            sqlite3_bind_text(b->d_inflight, 1, batch_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(b->d_inflight, 2, e[i].seq);
            h_step(b->d_inflight);
        }
        meta(b->d_meta, "batches", batch_no);
        h_step(b->d_commit);
    }
    int64_t t1 = h_now_ns();
    h_step(b->h_begin);
    for (long i = 0; i < n; i++) {
        const entry *x = &e[i];
        for (int f = 0; b->plus && f < x->nfields; f++) {
            sqlite3_bind_text(b->h_conf, 1, FIELD[x->fields[f]], -1, SQLITE_STATIC);
            sqlite3_bind_text(b->h_conf, 2, POLICY[x->fields[f]], -1, SQLITE_STATIC);
            h_step(b->h_conf);
        }
        bind_view(b->h_view, x);
        sqlite3_bind_text(b->h_rec, 1, x->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(b->h_rec, 2, x->server_seq);
        sqlite3_bind_text(b->h_rec, 3, x->state, -1, SQLITE_STATIC);
        h_step(b->h_rec);
        sqlite3_bind_int64(b->h_applied, 1, x->seq);
        sqlite3_bind_int64(b->h_applied, 2, x->server_seq);
        sqlite3_bind_int64(b->h_applied, 3, now);
        h_step(b->h_applied);
        sqlite3_stmt *a = b->h_audit;
        sqlite3_bind_int64(a, 1, x->seq);
        const char *texts[] = {x->actor, x->action, x->id, x->input};
        for (int k = 0; k < 4; k++) sqlite3_bind_text(a, 2 + k, texts[k], -1, SQLITE_STATIC);
        sqlite3_bind_int64(a, 6, x->device_time);
        sqlite3_bind_int64(a, 7, x->hlc);
        sqlite3_bind_text(a, 8, x->outbox_keys, -1, SQLITE_STATIC);
        sqlite3_bind_text(a, 9, x->prev_hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(a, 10, x->hash, -1, SQLITE_STATIC);
        sqlite3_bind_int64(a, 11, now);
        h_step(a);
    }
    if (b->plus) meta(b->h_meta, "seq", e[n - 1].server_seq);
    h_step(b->h_commit);
    int64_t t2 = h_now_ns();
    h_step(b->d_begin);
    for (long i = 0; i < n; i++) {
        sqlite3_bind_int64(b->d_del, 1, e[i].seq);
        h_step(b->d_del);
        sqlite3_bind_int64(b->d_upd, 1, now);
        sqlite3_bind_int64(b->d_upd, 2, e[i].seq);
        h_step(b->d_upd);
    }
    if (b->plus) { /* the pull: a shadow and a view row per record (its last entry in the batch) */
        for (long i = 0; i < n; i++) {
            int last = 1;
            for (long j = i + 1; j < n && last; j++) last = e[j].rec != e[i].rec;
            if (!last) continue;
            sqlite3_bind_text(b->d_shadow, 1, e[i].id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(b->d_shadow, 2, e[i].server_seq);
            sqlite3_bind_text(b->d_shadow, 3, e[i].shadow, -1, SQLITE_STATIC);
            h_step(b->d_shadow);
            bind_view(b->d_view, &e[i]);
        }
        meta(b->d_meta, "audit_acked_through", e[n - 1].seq);
        meta(b->d_meta, "cursor", e[n - 1].server_seq);
        meta(b->d_meta, "hlc", e[n - 1].hlc);
    }
    h_step(b->d_commit);
    *hub_ns = t2 - t1;
    *dev_ns = (t1 - t0) + (h_now_ns() - t2);
}

typedef struct { double seconds, cpu; long batches, actions; h_stats hub, dev, total; } bl_result;

static const char *AUDIT_TEXT_LEN = "SELECT avg(length(actor)+length(action)+length(type)+length(id)+length(input)"
                                    "+length(outbox_keys)+length(prev_hash)+length(hash)) FROM fs_hub_audit";

static bl_result baseline_run(const char *hub_path, const char *dev_path, long batch, int plus) {
    baseline b;
    baseline_open(&b, hub_path, dev_path, plus);
    entry *e = malloc(sizeof *e * (size_t)batch);
    long cap = g_actions / batch + 2;
    int64_t *ns[3] = {malloc(sizeof(int64_t) * cap), malloc(sizeof(int64_t) * cap), malloc(sizeof(int64_t) * cap)};
    bl_result r;
    memset(&r, 0, sizeof r);
    int64_t after = 0, timed = 0;
    h_load m0 = h_load_now();
    for (long n; (n = load_batch(&b, after, batch, e)) > 0; r.batches++) {
        if (r.batches >= cap) h_die("baseline: more batches than expected");
        double c0 = h_cpu_s();
        write_batch(&b, e, n, h_wall_ms(), r.batches + 1, &ns[0][r.batches], &ns[1][r.batches]);
        r.cpu += h_cpu_s() - c0;
        ns[2][r.batches] = ns[0][r.batches] + ns[1][r.batches];
        timed += ns[2][r.batches];
        after = e[n - 1].seq;
        r.actions += n;
    }
    h_contention(plus ? "baseline+" : "the baseline", m0, h_load_now());
    r.seconds = timed / 1e9;
    r.hub = h_pct(ns[0], r.batches, 1e6);
    r.dev = h_pct(ns[1], r.batches, 1e6);
    r.total = h_pct(ns[2], r.batches, 1e6);
    double outbox = h_sql_num(b.dev, "SELECT count(*) FROM fs_outbox"),
           acked = h_sql_num(b.dev, "SELECT count(*) FROM fs_audit WHERE outcome = 'applied' AND server_received_at NOT NULL"),
           applied = h_sql_num(b.hub, "SELECT count(*) FROM fs_hub_applied"), audit = h_sql_num(b.hub, "SELECT count(*) FROM fs_hub_audit");
    printf("  %ld batches, %ld actions, %.3f s timed; rows after: device outbox %.0f, audit rows acked %.0f; hub applied %.0f, "
           "audit %.0f; state text %.0f B, audit text columns %.0f B on average\n", r.batches, r.actions, r.seconds, outbox, acked,
           applied, audit, h_sql_num(b.hub, "SELECT avg(length(state)) FROM fs_hub_records"), h_sql_num(b.hub, AUDIT_TEXT_LEN));
    h_expect(outbox == 0 && applied == g_actions && audit == g_actions && acked == g_actions, "baseline row counts differ");
    for (int k = 0; k < 3; k++) free(ns[k]);
    free(e);
    baseline_close(&b);
    return r;
}

static void row(const char *name, double total, double cpu, double rate, h_stats s) {
    char c[16] = "", r[16] = "";
    if (cpu >= 0) snprintf(c, sizeof c, "%.2f", cpu);
    if (rate >= 0) snprintf(r, sizeof r, "%.0f", rate);
    printf("%-34s | %9.3f | %7s | %10s | %22.2f %7.2f %7.2f\n", name, total, c, r, s.p50, s.p99, s.max);
}

int main(int argc, char **argv) {
    h_opt opts[] = {{"--actions", 'l', &g_actions}, {"--records", 'l', &g_records}, {"--batch", 'l', &g_batch},
                    {"--no-baseline", 'f', &g_no_baseline}, {0}};
    h_args(argc, argv, opts, "[--actions N] [--records N] [--batch N (0: the library's 500)] [--no-baseline]");
    if (g_actions < 1 || g_records < 1 || g_batch < 0 || g_records > 10000000) h_usage();
    long batch = g_batch ? g_batch : 500;
    char dir[PATH_MAX], dev[PATH_MAX + 64], hub[PATH_MAX + 64], bl_dev[PATH_MAX + 64], bl_hub[PATH_MAX + 64],
        pl_dev[PATH_MAX + 64], pl_hub[PATH_MAX + 64], extra[64] = "";
    h_begin("sync_throughput", "fieldsync sync throughput", dir, sizeof dir);
    printf("workload: %ld actions over %ld records, applied offline, then drained in-process; durability normal (store and "
           "hub); batch size %ld%s; pull on\n", g_actions, g_records, batch, g_batch ? "" : " (library default)");
    const char *names[] = {"device.db", "hub.db", "baseline-device.db", "baseline-hub.db", "baselineplus-device.db", "baselineplus-hub.db"};
    char *paths[] = {dev, hub, bl_dev, bl_hub, pl_dev, pl_hub};
    for (int i = 0; i < 6; i++) h_path(paths[i], dir, names[i]), h_remove_db(paths[i]);
    if (g_batch) snprintf(extra, sizeof extra, "\"batch_size\":%ld", g_batch);

    fs_store *st = task_store(dev, extra);
    task_gen gen;
    task_gen_init(&gen, g_records, 0x5EED5EEDull);
    h_load m0 = h_load_now();
    double apply_s = task_backlog(st, &gen, g_actions, 0);
    free(gen.created);
    int64_t backlog = h_outbox(st);
    h_store_close(st);
    printf("offline applies: %ld fs_store_apply in %.2f s (%.1f us/action); outbox %lld; device file %.1f MiB\n", g_actions,
           apply_s, apply_s * 1e6 / g_actions, (long long)backlog, h_db_size(dev) / 1048576.0);
    h_contention("the offline applies", m0, h_load_now());
    h_expect(backlog == g_actions, "outbox holds %lld entries, expected %ld", (long long)backlog, g_actions);
    if (!g_no_baseline) h_copy_db(dev, bl_dev);
    sync();

    st = task_store(dev, extra);
    fs_hub *h = task_hub(hub);
    h_load m1 = h_load_now();
    h_drain_t d = h_drain(st, h, 1, NULL, NULL, 0);
    h_contention("the drain", m1, h_load_now());
    long n = d.exchanges;
    int64_t *ns[4];
    for (int k = 0; k < 4; k++) ns[k] = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    for (long i = 0; i < n; i++) {
        ns[0][i] = d.log[i].prepare_ns;
        ns[1][i] = d.log[i].handle_ns;
        ns[2][i] = d.log[i].receive_ns;
        ns[3][i] = ns[0][i] + ns[1][i] + ns[2][i];
    }
    h_stats sp = h_pct(ns[0], n, 1e6), sh = h_pct(ns[1], n, 1e6), sr = h_pct(ns[2], n, 1e6), stt = h_pct(ns[3], n, 1e6);
    double drain_s = d.wall_ns / 1e9, rate = d.applied / drain_s;
    long long h_applied = h_hub_stat(h, "entries_applied"), h_audit = h_hub_stat(h, "audit_rows"),
              h_breaks = h_hub_stat(h, "audit_chain_breaks"), h_hashfail = h_hub_stat(h, "audit_hash_failures");
    int64_t left = h_outbox(st);
    h_store_close(st);
    h_hub_close(h);
    printf("drain: %ld exchanges in %.2f s: applied %ld, duplicate %ld, rejected %ld, retry %ld, stuck %ld, pulled %ld; outbox "
           "left %lld\n", d.exchanges, drain_s, d.applied, d.duplicate, d.rejected, d.retry, d.stuck, d.pulled, (long long)left);
    printf("  wire: request %.1f KiB, response %.1f KiB per exchange on average\n", d.req_bytes / 1024.0 / (n ? n : 1),
           d.resp_bytes / 1024.0 / (n ? n : 1));
    printf("  hub: entries_applied %lld, audit_rows %lld, chain breaks %lld, hash failures %lld; hub file %.1f MiB\n", h_applied,
           h_audit, h_breaks, h_hashfail, h_db_size(hub) / 1048576.0);
    h_expect(d.applied == g_actions && left == 0 && h_applied == g_actions && h_audit == g_actions && h_breaks == 0 &&
             h_hashfail == 0 && d.rejected == 0, "the drain did not end as expected");
    if (n >= 20) {
        double a = 0, z = 0;
        for (long i = 0; i < n / 10; i++) a += ns[3][i], z += ns[3][n - 1 - i];
        printf("  per-exchange time, first 10%% of exchanges %.1f ms, last 10%% %.1f ms (mean)\n", a / (n / 10) / 1e6,
               z / (n / 10) / 1e6);
    }

    bl_result b1 = {0}, b2 = {0};
    if (!g_no_baseline) {
        h_copy_db(bl_dev, pl_dev);
        h_clone_schema(hub, bl_hub);
        h_copy_db(bl_hub, pl_hub);
        sync();
        printf("baseline (hub: record + state + applied + audit rows; device: delete outbox row + update audit row):\n");
        b1 = baseline_run(bl_hub, bl_dev, batch, 0);
        printf("baseline+ (also: inflight marking, conflict counters, meta rows, device shadow + view rows per touched record):\n");
        b2 = baseline_run(pl_hub, pl_dev, batch, 1);
    }

    printf("\nthroughput (%ld actions, batch %ld, durability normal)\n", g_actions, batch);
    printf("%-34s | %9s | %7s | %10s | %-30s\n", "", "total s", "CPU s", "actions/s", "per exchange / batch, ms: p50   p99    max");
    row("fieldsync drain (wall)", drain_s, d.cpu_s, rate, stt);
    row("  fs_sync_prepare", sp.sum / 1e3, -1, -1, sp);
    row("  fs_hub_handle", sh.sum / 1e3, -1, -1, sh);
    row("  fs_sync_receive", sr.sum / 1e3, -1, -1, sr);
    if (!g_no_baseline) {
        row("baseline (raw SQLite, brief)", b1.seconds, b1.cpu, b1.actions / b1.seconds, b1.total);
        row("  hub transaction", b1.hub.sum / 1e3, -1, -1, b1.hub);
        row("  device transaction", b1.dev.sum / 1e3, -1, -1, b1.dev);
        row("baseline+ (all engine rows)", b2.seconds, b2.cpu, b2.actions / b2.seconds, b2.total);
        row("  hub transaction", b2.hub.sum / 1e3, -1, -1, b2.hub);
        row("  device transactions (2)", b2.dev.sum / 1e3, -1, -1, b2.dev);
        printf("\nratio fieldsync / baseline (time; = baseline actions/s / fieldsync actions/s): %.1fx (per-exchange p50 %.1fx); "
               "vs baseline+: %.1fx\n", drain_s / b1.seconds, stt.p50 / b1.total.p50, drain_s / b2.seconds);
        printf("  hub side: fs_hub_handle / baseline hub txn %.1fx; device side: prepare+receive / baseline device txn %.1fx\n",
               sh.sum / b1.hub.sum, (sp.sum + sr.sum) / b1.dev.sum);
        printf("  in CPU time: fieldsync %.2f s / baseline %.2f s = %.1fx; vs baseline+ %.2f s = %.1fx\n", d.cpu_s, b1.cpu,
               d.cpu_s / b1.cpu, b2.cpu, d.cpu_s / b2.cpu);
    }
    printf("fieldsync: %.0f actions/s device -> hub -> ack (offline applies were %.0f actions/s)\n", rate, g_actions / apply_s);
    for (int i = 0; !h_keep && i < 6; i++) h_remove_db(paths[i]);
    for (int k = 0; k < 4; k++) free(ns[k]);
    free(d.log);
    return h_end(dir);
}
