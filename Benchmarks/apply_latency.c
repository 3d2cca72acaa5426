/* apply_latency.c — local action latency: fs_store_apply + fs_free on a store
 * holding 100,000 records, against raw SQLite doing the same three writes
 * (view row upsert, outbox insert, audit insert with a 64-hex hash; one
 * transaction per action, prepared statements, same pragmas) in a file with
 * the store's DDL preloaded with the same rows (in transactions of 10,000),
 * interleaved 100 actions at a time. Mix: 50 %
 * update (set status + inc picked), 25 % create, 25 % add a tag. The action
 * texts and the baseline's values are built before the timer.
 * Usage: apply_latency [--records N] [--actions N] [--durability normal|full|both] [--chunk N] */
#include "harness.h"

static long g_records = 100000, g_actions = 10000, g_chunk = 100;
static const char *g_durability = "both";
static const char *KIND_NAMES[] = {"update", "create", "add-tag"};
static int kind_index(int k) { return k == A_UPDATE ? 0 : k == A_CREATE ? 1 : 2; }

typedef struct { int8_t status, site; int32_t picked; uint16_t tags; } rec_t;

/* fieldsync's side: the store and the action texts. */
typedef struct { fs_store *st; char (*json)[320]; int64_t *ns; } fs_side;

static void fs_range(void *ctx, long from, long to) {
    fs_side *s = ctx;
    for (long i = from; i < to; i++) {
        char *res = NULL;
        int64_t t0 = h_now_ns();
        fs_status rc = fs_store_apply(s->st, s->json[i], &res);
        fs_free(res);
        s->ns[i] = h_now_ns() - t0;
        h_ok(rc, "fs_store_apply");
    }
}

/* The baseline's side: every value of every row, computed beforehand. */
typedef struct {
    int64_t seq, time_ms, hlc, picked;
    char id[16], actor[8], ops[96], input[96], keys[40], prev_hash[65], hash[65], site[16], tags[200];
    const char *action, *status;
} row_t;
typedef struct { sqlite3 *db; sqlite3_stmt *begin, *commit, *view, *outbox, *audit; row_t *rows; int64_t *ns; } bl_side;

static void bl_open(bl_side *b, const char *path, const char *synchronous) {
    b->db = h_sql_open(path, synchronous);
    b->begin = h_prep(b->db, "BEGIN IMMEDIATE");
    b->commit = h_prep(b->db, "COMMIT");
    b->view = h_prep(b->db, "INSERT INTO task(id, status, site, picked, tags) VALUES(?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                            "status = excluded.status, site = excluded.site, picked = excluded.picked, tags = excluded.tags");
    b->outbox = h_prep(b->db, "INSERT INTO fs_outbox(seq, type, id, hlc, schema_version, ops, base, base_values, cursor) "
                              "VALUES(?, 'task', ?, ?, 1, ?, NULL, NULL, 0)");
    b->audit = h_prep(b->db, "INSERT INTO fs_audit(audit_id, actor, action, type, id, input, device_time, hlc, outbox_keys, "
                             "prev_hash, hash) VALUES(?, ?, ?, 'task', ?, ?, ?, ?, ?, ?, ?)");
}

static void bl_close(bl_side *b) {
    sqlite3_stmt *all[] = {b->begin, b->commit, b->view, b->outbox, b->audit};
    for (int k = 0; k < 5; k++) sqlite3_finalize(all[k]);
    sqlite3_close(b->db);
}

static void text(sqlite3_stmt *s, int i, const char *v) {
    if (v && *v) sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else sqlite3_bind_null(s, i);
}

/* The three writes of one action. */
static void bl_write(bl_side *b, const row_t *r) {
    text(b->view, 1, r->id);
    text(b->view, 2, r->status);
    text(b->view, 3, r->site);
    if (r->picked) sqlite3_bind_int64(b->view, 4, r->picked); else sqlite3_bind_null(b->view, 4);
    text(b->view, 5, r->tags);
    h_step(b->view);
    sqlite3_bind_int64(b->outbox, 1, r->seq);
    text(b->outbox, 2, r->id);
    sqlite3_bind_int64(b->outbox, 3, r->hlc);
    text(b->outbox, 4, r->ops);
    h_step(b->outbox);
    sqlite3_bind_int64(b->audit, 1, r->seq);
    text(b->audit, 2, r->actor);
    text(b->audit, 3, r->action);
    text(b->audit, 4, r->id);
    text(b->audit, 5, r->input);
    sqlite3_bind_int64(b->audit, 6, r->time_ms);
    sqlite3_bind_int64(b->audit, 7, r->hlc);
    text(b->audit, 8, r->keys);
    text(b->audit, 9, r->prev_hash);
    text(b->audit, 10, r->hash);
    h_step(b->audit);
}

static void bl_range(void *ctx, long from, long to) {
    bl_side *b = ctx;
    for (long i = from; i < to; i++) {
        int64_t t0 = h_now_ns();
        h_step(b->begin);
        bl_write(b, &b->rows[i]);
        h_step(b->commit);
        b->ns[i] = h_now_ns() - t0;
    }
}

/* Every value of the rows of plan[0, n) (input i of the workload: first + i). */
static void bl_rows(bl_side *b, const task_action *plan, long n, long first, rec_t *recs, h_rng *rng) {
    static const char H[] = "0123456789abcdef";
    int64_t seq = (int64_t)h_sql_num(b->db, "SELECT coalesce(max(seq), 0) FROM fs_outbox"), last_hlc = 0;
    char prev[65];
    memset(prev, '0', 64);
    prev[64] = 0;
    for (long i = 0; i < n; i++) {
        const task_action *a = &plan[i];
        row_t *r = &b->rows[i];
        rec_t *x = &recs[a->rec];
        r->seq = ++seq;
        snprintf(r->id, sizeof r->id, "T-%07d", a->rec);
        snprintf(r->actor, sizeof r->actor, "op-%02d", a->actor);
        r->time_ms = h_wall_ms();
        r->hlc = (r->time_ms << 16) > last_hlc ? r->time_ms << 16 : last_hlc + 1;
        last_hlc = r->hlc;
        task_input(r->input, sizeof r->input, first + i);
        snprintf(r->keys, sizeof r->keys, "[\"" TASK_DEVICE "-%lld\"]", (long long)r->seq);
        memcpy(r->prev_hash, prev, 65);
        for (int k = 0; k < 64; k++) r->hash[k] = H[h_rand(rng) & 15];
        r->hash[64] = 0;
        memcpy(prev, r->hash, 65);
        if (a->kind == A_UPDATE) {
            r->action = "pick_item";
            x->status = (int8_t)a->arg;
            x->picked++;
            snprintf(r->ops, sizeof r->ops, "{\"inc\":{\"picked\":1},\"set\":{\"status\":\"%s\"}}", STATUSES[a->arg]);
        } else if (a->kind == A_CREATE) {
            r->action = "create_task";
            *x = (rec_t){0, (int8_t)a->arg, 0, 0};
            snprintf(r->ops, sizeof r->ops, "{\"set\":{\"site\":\"site-%02d\",\"status\":\"open\"}}", a->arg);
        } else {
            r->action = "tag_task";
            x->tags |= (uint16_t)(1u << a->arg);
            snprintf(r->ops, sizeof r->ops, "{\"add\":{\"tags\":[\"tag-%02d\"]}}", a->arg);
        }
        r->status = STATUSES[x->status];
        snprintf(r->site, sizeof r->site, "site-%02d", x->site);
        r->picked = x->picked;
        char *p = r->tags;
        for (int k = 0; k < N_TAGS; k++)
            if (x->tags & (1u << k)) p += sprintf(p, "%s\"tag-%02d\"", p == r->tags ? "[" : ",", k);
        if (p != r->tags) strcpy(p, "]");
    }
}

int main(int argc, char **argv) {
    h_opt opts[] = {{"--records", 'l', &g_records}, {"--actions", 'l', &g_actions}, {"--durability", 's', &g_durability},
                    {"--chunk", 'l', &g_chunk}, {0}};
    h_args(argc, argv, opts, "[--records N] [--actions N] [--durability normal|full|both] [--chunk N (0: not interleaved)]");
    int want[2] = {strcmp(g_durability, "full") != 0, strcmp(g_durability, "normal") != 0};
    if (g_records < 1 || g_actions < 1 || g_records > 9000000 || g_actions > 9000000 || g_chunk < 0 ||
        (strcmp(g_durability, "both") && !(want[0] ^ want[1])))
        h_usage();
    char dir[PATH_MAX], pre[PATH_MAX + 64], bl_pre[PATH_MAX + 64], fs_p[PATH_MAX + 64], bl_p[PATH_MAX + 64], buf[320];
    h_begin("apply_latency", "fieldsync apply latency", dir, sizeof dir);
    printf("workload: %ld preloaded records, %ld timed actions (50%% update set+inc, 25%% create, 25%% add tag); %s\n",
           g_records, g_actions, g_chunk ? "interleaved with the baseline" : "not interleaved (--chunk 0)");
    if (g_chunk) printf("runs: interleaved in chunks of %ld actions (fieldsync then baseline, same plan indices)\n", g_chunk);

    /* The plan (the same rng calls as the harness before it, for comparable runs). */
    task_action *plan = malloc(sizeof *plan * (size_t)g_actions);
    h_rng rng = {0x5DEECE66Dull};
    long nrec = g_records, nkind[3] = {0};
    for (long i = 0; i < g_actions; i++) {
        uint64_t r = h_rand(&rng);
        task_action *a = &plan[i];
        a->actor = (uint8_t)(h_rand(&rng) % N_ACTORS);
        switch (r % 4) {
        case 0: case 1: a->kind = A_UPDATE; a->rec = (int32_t)(h_rand(&rng) % (uint64_t)nrec); a->arg = (uint8_t)(h_rand(&rng) % N_STATUS); break;
        case 2: a->kind = A_CREATE; a->rec = (int32_t)nrec++; a->arg = (uint8_t)(h_rand(&rng) % N_SITES); break;
        default: a->kind = A_ADD; a->rec = (int32_t)(h_rand(&rng) % (uint64_t)nrec); a->arg = (uint8_t)(h_rand(&rng) % N_TAGS); break;
        }
        nkind[kind_index(a->kind)]++;
    }
    printf("plan: %ld updates, %ld creates, %ld add-tags\n", nkind[0], nkind[1], nkind[2]);

    h_path(pre, dir, "preload.db");
    h_remove_db(pre);
    fs_store *st = task_store(pre, NULL);
    int64_t t0 = h_now_ns();
    for (long r = 0; r < g_records; r++) {
        task_action a = {A_CREATE, (uint8_t)(r % N_SITES), (uint8_t)(r % N_ACTORS), (int32_t)r};
        task_json(buf, sizeof buf, &a, r);
        h_apply(st, buf);
    }
    h_store_close(st);
    double pre_s = (h_now_ns() - t0) / 1e9;
    printf("preload fieldsync: %ld fs_store_apply (durability normal) in %.2f s (%.1f us/action), file %.1f MiB\n", g_records,
           pre_s, pre_s * 1e6 / g_records, h_db_size(pre) / 1048576.0);
    /* The baseline: the store's DDL in a fresh file, the same rows written in transactions of 10,000. */
    rec_t *recs = calloc((size_t)(g_records + g_actions), sizeof *recs);
    h_path(bl_pre, dir, "baseline-preload.db");
    h_clone_schema(pre, bl_pre);
    bl_side pb = {0};
    bl_open(&pb, bl_pre, "NORMAL");
    pb.rows = malloc(sizeof(row_t) * 10000);
    task_action *creates = malloc(sizeof *creates * 10000);
    h_rng hr = {0xC0FFEEull};
    t0 = h_now_ns();
    for (long from = 0; from < g_records; from += 10000) {
        long n = g_records - from < 10000 ? g_records - from : 10000;
        for (long r = 0; r < n; r++) creates[r] = (task_action){A_CREATE, (uint8_t)((from + r) % N_SITES), (uint8_t)((from + r) % N_ACTORS), (int32_t)(from + r)};
        bl_rows(&pb, creates, n, from, recs, &hr);
        h_exec(pb.db, "BEGIN");
        for (long r = 0; r < n; r++) bl_write(&pb, &pb.rows[r]);
        h_exec(pb.db, "COMMIT");
    }
    h_exec(pb.db, "PRAGMA wal_checkpoint(TRUNCATE)");
    bl_close(&pb);
    free(pb.rows);
    free(creates);
    printf("preload baseline:  %ld actions in transactions of 10,000 in %.2f s, file %.1f MiB\n", g_records,
           (h_now_ns() - t0) / 1e9, h_db_size(bl_pre) / 1048576.0);

    static const char *names[2] = {"normal", "full"}, *sync_names[2] = {"NORMAL", "FULL"};
    h_stats res[2][2], kres[2][2][3];
    int64_t *ns[2] = {malloc(sizeof(int64_t) * (size_t)g_actions), malloc(sizeof(int64_t) * (size_t)g_actions)};
    int64_t *kns = malloc(sizeof(int64_t) * (size_t)g_actions);
    char (*json)[320] = malloc(sizeof *json * (size_t)g_actions);
    for (long i = 0; i < g_actions; i++) task_json(json[i], sizeof json[i], &plan[i], g_records + i);
    for (int d = 0; d < 2; d++) {
        if (!want[d]) continue;
        h_path(fs_p, dir, d ? "fieldsync-full.db" : "fieldsync-normal.db");
        h_path(bl_p, dir, d ? "baseline-full.db" : "baseline-normal.db");
        h_copy_db(pre, fs_p);
        h_copy_db(bl_pre, bl_p);
        sync();
        char o[128];
        snprintf(o, sizeof o, "{\"durability\":\"%s\",\"device_id\":\"" TASK_DEVICE "\"}", names[d]);
        fs_side f = {h_store(fs_p, TASK_SCHEMA, o), json, ns[0]};
        bl_side b = {0};
        bl_open(&b, bl_p, sync_names[d]);
        b.rows = malloc(sizeof(row_t) * (size_t)g_actions);
        b.ns = ns[1];
        for (long r = 0; r < g_records + g_actions; r++) recs[r] = (rec_t){0, (int8_t)(r % N_SITES), 0, 0};
        hr.s = 0xBADC0DEull;
        bl_rows(&b, plan, g_actions, g_records, recs, &hr);

        h_load m0 = h_load_now();
        h_interleave(g_actions, g_chunk, fs_range, &f, bl_range, &b);
        h_contention(names[d], m0, h_load_now());

        long long want_recs = g_records + nkind[1], want_rows = g_records + g_actions;
        long long fr = h_store_stat(f.st, "records"), fa = h_store_stat(f.st, "audit_rows"), fo = h_outbox(f.st);
        long long bv = (long long)h_sql_num(b.db, "SELECT count(*) FROM task"),
                  bo = (long long)h_sql_num(b.db, "SELECT count(*) FROM fs_outbox"),
                  ba = (long long)h_sql_num(b.db, "SELECT count(*) FROM fs_audit");
        printf("[%s] fieldsync: records %lld, outbox %lld, audit rows %lld | baseline: rows %lld, outbox %lld, audit %lld | "
               "expected %lld records, %lld outbox/audit\n", names[d], fr, fo, fa, bv, bo, ba, want_recs, want_rows);
        h_expect(fr == want_recs && fa == want_rows && fo == want_rows && bv == want_recs && bo == want_rows && ba == want_rows,
                 "counts differ from expectation");
        h_store_close(f.st);
        bl_close(&b);
        free(b.rows);
        for (int side = 0; side < 2; side++) {
            res[d][side] = h_pct(ns[side], g_actions, 1e3);
            for (int k = 0; k < 3; k++) {
                long m = 0;
                for (long i = 0; i < g_actions; i++)
                    if (kind_index(plan[i].kind) == k) kns[m++] = ns[side][i];
                kres[d][side][k] = h_pct(kns, m, 1e3);
            }
        }
        if (!h_keep) { h_remove_db(fs_p); h_remove_db(bl_p); }
    }

    printf("\nlatency per action, microseconds (%ld actions each; ratio = fieldsync / baseline)\n", g_actions);
    printf("%-10s | %-33s | %-33s | %-9s %-9s\n", "", "fieldsync (fs_store_apply+fs_free)", "baseline (raw SQLite, 1 txn)",
           "ratio", "ratio");
    printf("%-10s | %7s %8s %8s %7s | %7s %8s %8s %7s | %-9s %-9s\n", "durability", "p50", "p99", "max", "mean", "p50", "p99",
           "max", "mean", "p50", "p99");
    for (int d = 0; d < 2; d++) {
        if (!want[d]) continue;
        h_stats f = res[d][0], b = res[d][1];
        printf("%-10s | %7.1f %8.1f %8.1f %7.1f | %7.1f %8.1f %8.1f %7.1f | %-9.2f %-9.2f\n", names[d], f.p50, f.p99, f.max,
               f.mean, b.p50, b.p99, b.max, b.mean, f.p50 / b.p50, f.p99 / b.p99);
    }
    printf("\nby action kind, microseconds (fieldsync p50/p99 vs baseline p50/p99)\n");
    for (int d = 0; d < 2; d++)
        for (int k = 0; want[d] && k < 3; k++) {
            h_stats f = kres[d][0][k], b = kres[d][1][k];
            printf("  %-7s %-8s n=%-5ld fieldsync %7.1f / %8.1f   baseline %7.1f / %8.1f   p50 ratio %.2f\n", names[d],
                   KIND_NAMES[k], f.n, f.p50, f.p99, b.p50, b.p99, b.p50 > 0 ? f.p50 / b.p50 : 0);
        }
    if (want[0]) {
        h_target("local action p50 / raw SQLite (durability normal)", res[0][0].p50 / res[0][1].p50, "<=", 1.5, "");
        h_target("local action p99 (durability normal)", res[0][0].p99, "<", 1000, " us");
    }
    if (!h_keep) h_remove_db(pre), h_remove_db(bl_pre);
    return h_end(dir);
}
