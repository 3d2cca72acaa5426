/*
 * sync_throughput.c — device -> hub -> ack throughput of libfieldsync,
 * in-process, against a raw-SQLite baseline (BENCHMARKS.md, second benchmark).
 *
 * README
 * ------
 * What it measures
 *   - fieldsync: one device store and one hub (fs_hub_open), both durability
 *     "normal" (WAL, synchronous=NORMAL), in this process. N_ACTIONS (100,000)
 *     actions over N_RECORDS (10,000) records are applied offline with
 *     fs_store_apply (a record's first action creates it with an lww set of
 *     status + site; later ones are, with equal probability, a counter inc of
 *     `picked`, an lww set of `status` or a set add to `tags`). Then the
 *     outbox is drained: fs_sync_prepare -> fs_hub_handle -> fs_sync_receive
 *     until the receive summary reports an empty outbox, with the library's
 *     default batch size (500) and pull on (the default; each response carries
 *     the records the batch changed back to the device). Each call is timed
 *     alone with CLOCK_MONOTONIC; the drain's wall time (including fs_free and
 *     reading the summary) gives actions/s.
 *   - baseline (raw SQLite, same process, after the fieldsync run): the rows
 *     the hub and the device write for the same actions, in batches of the
 *     same size, one transaction per batch on each side:
 *       hub    (a fresh file with the fieldsync hub file's DDL, copied from its
 *               sqlite_master after its page_size/auto_vacuum):
 *               BEGIN IMMEDIATE; per action: INSERT OR REPLACE the record row
 *               (view table "task"), INSERT OR REPLACE the state row
 *               (fs_hub_records, state JSON shaped like the hub's), INSERT the
 *               applied (dedup) row (fs_hub_applied), INSERT the audit row
 *               (fs_hub_audit); COMMIT
 *       device (a copy of the fieldsync store file taken after the offline
 *               applies, before the drain — the same rows):
 *               BEGIN IMMEDIATE; per action: DELETE the outbox row; UPDATE the
 *               audit row (outcome 'applied', server_received_at); COMMIT
 *     Values are computed before the timer (audit values read from the copied
 *     store, state JSON built with snprintf), prepared statements are reused,
 *     same pragmas. The timer covers the two transactions of each batch only.
 *   - baseline+ ("all rows"): the same plus the other rows the engine writes
 *     per batch, to separate SQLite work from the rest: on the device a first
 *     transaction marking the batch's entries inflight (+ fs_meta "batches"),
 *     on the hub the fs_hub_conflicts counter upsert per written field and
 *     fs_meta "seq", and on the device an fs_shadow upsert and a view-row
 *     upsert per record the batch touched plus fs_meta cursor/hlc/
 *     audit_acked_through. It runs on fresh copies (same files as baseline).
 *   The ratio reported is fieldsync drain time / baseline time (= baseline
 *   actions/s / fieldsync actions/s).
 *
 * Build and run:  make -C Benchmarks bench       (from the repository root)
 * Options:        sync_throughput [--actions N] [--records N] [--batch N]
 *                                 [--dir D] [--keep] [--no-baseline]
 *                 --batch 0 (default) = library default batch size (500);
 *                 the baseline then uses 500 too.
 * Do not rebuild the library while this runs (overwriting the mapped .so
 * kills the process with SIGBUS): `make -C Benchmarks bench SNAP=/var/tmp/x`
 * copies the library there first and runs against the copy.
 */
#include "bench_common.h"

static long g_actions = 100000;
static long g_records = 10000;
static long g_batch = 0; /* 0 = library default */
static const char *g_dir_opt = NULL;
static int g_keep = 0;
static int g_baseline = 1;

#define LIB_DEFAULT_BATCH 500

/* ------------------------------------------------------------------------ */
/* Baseline                                                                 */
/* ------------------------------------------------------------------------ */

enum { F_PICKED = 0, F_SITE = 1, F_STATUS = 2, F_TAGS = 3, N_FIELDS = 4 }; /* sorted, as the hub's JSON */
static const char *FIELD_NAMES[N_FIELDS] = {"picked", "site", "status", "tags"};

/* The hub's state of one record, enough to write rows shaped like its own. */
typedef struct {
    int64_t picked;
    int has_picked, has_site, has_status;
    char site[24], status[24];
    uint32_t tags;                 /* bitmask of tag-00..tag-31 */
    int64_t stamp[N_FIELDS];       /* 0 = never written */
    int64_t version[N_FIELDS];
    int64_t tag_seq[32];
} hub_rec_t;

/* One entry of a batch, with every value the writes need. */
typedef struct {
    int64_t seq;            /* device seq = audit_id */
    int64_t server_seq;
    int rec;
    char id[32];
    char actor[32], action[32];
    char input[160];
    int64_t device_time, hlc;
    char outbox_keys[64];
    char prev_hash[65], hash[65];
    int nfields;            /* fields written (for conflicts counters) */
    int fields[N_FIELDS];
    /* record row values after this entry */
    int64_t picked;
    int has_picked, has_tags;
    char site[24], status[24];
    char tags[32 * 10 + 4];
    char state[2600], shadow[1300];
} bl_entry_t;

typedef struct {
    sqlite3 *hub, *dev;
    sqlite3_stmt *h_begin, *h_commit, *h_view, *h_rec, *h_applied, *h_audit, *h_conf, *h_meta;
    sqlite3_stmt *d_begin, *d_commit, *d_del, *d_upd, *d_inflight, *d_meta, *d_shadow, *d_view;
    sqlite3_stmt *read; /* the batch's rows, from the device copy */
    hub_rec_t *recs;
    int64_t server_seq;
    int plus; /* baseline+: every row the engine writes */
} baseline_t;

static void xexec(sqlite3 *db, const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) die("sqlite: %s\n  in: %s", err, sql);
}

static sqlite3_stmt *xprep(sqlite3 *db, const char *sql) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK)
        die("prepare: %s\n  in: %s", sqlite3_errmsg(db), sql);
    return s;
}

static void step_done(sqlite3 *db, sqlite3_stmt *s) {
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) die("step: %s\n  in: %s", sqlite3_errmsg(db), sqlite3_sql(s));
    sqlite3_reset(s);
}

static sqlite3 *bl_open(const char *path) {
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) die("open %s", path);
    xexec(db, "PRAGMA journal_mode=WAL");
    xexec(db, "PRAGMA synchronous=NORMAL");
    return db;
}

static int pragma_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *s;
    int v = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* A fresh file with the DDL (and fs_meta rows) of the fieldsync hub file. */
static void bl_create_hub(const char *fs_hub_path, const char *path) {
    sqlite3 *src;
    if (sqlite3_open_v2(fs_hub_path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) die("open %s", fs_hub_path);
    int page_size = pragma_int(src, "PRAGMA page_size"), auto_vacuum = pragma_int(src, "PRAGMA auto_vacuum");
    remove_db(path);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) die("open %s", path);
    char q[128];
    snprintf(q, sizeof q, "PRAGMA page_size=%d", page_size);
    xexec(db, q);
    snprintf(q, sizeof q, "PRAGMA auto_vacuum=%d", auto_vacuum);
    xexec(db, q);
    xexec(db, "PRAGMA journal_mode=WAL");
    sqlite3_stmt *s;
    sqlite3_prepare_v2(src,
                       "SELECT type, sql FROM sqlite_master WHERE sql NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                       "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, rowid",
                       -1, &s, NULL);
    int ntab = 0, nidx = 0, nother = 0;
    xexec(db, "BEGIN");
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(s, 0);
        xexec(db, (const char *)sqlite3_column_text(s, 1));
        if (!strcmp(type, "table")) ntab++;
        else if (!strcmp(type, "index")) nidx++;
        else nother++;
    }
    sqlite3_finalize(s);
    /* fs_meta as the fieldsync hub had it when created (seq restarts at 0). */
    sqlite3_stmt *ins = xprep(db, "INSERT INTO fs_meta(key, value) VALUES(?, ?)");
    sqlite3_prepare_v2(src, "SELECT key, value FROM fs_meta", -1, &s, NULL);
    while (sqlite3_step(s) == SQLITE_ROW) {
        sqlite3_bind_value(ins, 1, sqlite3_column_value(s, 0));
        if (!strcmp((const char *)sqlite3_column_text(s, 0), "seq")) sqlite3_bind_int64(ins, 2, 0);
        else sqlite3_bind_value(ins, 2, sqlite3_column_value(s, 1));
        step_done(db, ins);
    }
    sqlite3_finalize(s);
    sqlite3_finalize(ins);
    xexec(db, "COMMIT");
    sqlite3_close(db);
    sqlite3_close(src);
    printf("baseline hub schema: copied %d tables, %d indexes, %d other from the fieldsync hub file "
           "(page_size %d, auto_vacuum %d)\n", ntab, nidx, nother, page_size, auto_vacuum);
}

static void bl_open_all(baseline_t *b, const char *hub_path, const char *dev_path, long n_records, int plus) {
    memset(b, 0, sizeof *b);
    b->plus = plus;
    b->recs = calloc((size_t)n_records, sizeof *b->recs);
    if (!b->recs) die("out of memory");
    b->hub = bl_open(hub_path);
    b->dev = bl_open(dev_path);
    b->h_begin = xprep(b->hub, "BEGIN IMMEDIATE");
    b->h_commit = xprep(b->hub, "COMMIT");
    b->h_view = xprep(b->hub, "INSERT OR REPLACE INTO \"task\"(id, \"picked\", \"site\", \"status\", \"tags\") VALUES(?,?,?,?,?)");
    b->h_rec = xprep(b->hub, "INSERT OR REPLACE INTO fs_hub_records(type, id, seq, state) VALUES('task', ?, ?, ?)");
    b->h_applied = xprep(b->hub, "INSERT INTO fs_hub_applied(device, seq, status, reason, server_seq, received_at) "
                                 "VALUES(?, ?, 'applied', NULL, ?, ?)");
    b->h_audit = xprep(b->hub, "INSERT INTO fs_hub_audit(device, audit_id, actor, action, type, id, input, device_time, hlc, "
                               "outbox_keys, prev_hash, hash, server_received_at, hash_ok, link_ok) "
                               "VALUES(?,?,?,?,'task',?,?,?,?,?,?,?,?,1,1)");
    b->h_conf = xprep(b->hub, "INSERT INTO fs_hub_conflicts(type, field, policy, writes, concurrent) VALUES('task', ?, ?, 1, 0) "
                              "ON CONFLICT(type, field) DO UPDATE SET writes = writes + 1, concurrent = concurrent + excluded.concurrent");
    b->h_meta = xprep(b->hub, "INSERT OR REPLACE INTO fs_meta(key, value) VALUES(?, ?)");
    b->d_begin = xprep(b->dev, "BEGIN IMMEDIATE");
    b->d_commit = xprep(b->dev, "COMMIT");
    b->d_del = xprep(b->dev, "DELETE FROM fs_outbox WHERE seq = ?");
    b->d_upd = xprep(b->dev, "UPDATE fs_audit SET outcome = 'applied', reason = NULL, server_received_at = ? WHERE audit_id = ?");
    b->d_inflight = xprep(b->dev, "UPDATE fs_outbox SET state = 'inflight', batch = ? WHERE seq = ?");
    b->d_meta = xprep(b->dev, "INSERT OR REPLACE INTO fs_meta(key, value) VALUES(?, ?)");
    b->d_shadow = xprep(b->dev, "INSERT OR REPLACE INTO fs_shadow(type, id, version, state) VALUES('task', ?, ?, ?)");
    b->d_view = xprep(b->dev, "INSERT OR REPLACE INTO \"task\"(id, \"picked\", \"site\", \"status\", \"tags\") VALUES(?,?,?,?,?)");
    b->read = xprep(b->dev, "SELECT o.seq, o.id, o.ops, a.actor, a.action, a.input, a.device_time, a.hlc, a.outbox_keys, "
                            "a.prev_hash, a.hash FROM fs_outbox o JOIN fs_audit a ON a.audit_id = o.seq "
                            "WHERE o.seq > ? ORDER BY o.seq LIMIT ?");
}

static void bl_close(baseline_t *b) {
    sqlite3_stmt *all[] = {b->h_begin, b->h_commit, b->h_view, b->h_rec, b->h_applied, b->h_audit, b->h_conf, b->h_meta,
                           b->d_begin, b->d_commit, b->d_del, b->d_upd, b->d_inflight, b->d_meta, b->d_shadow, b->d_view,
                           b->read};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sqlite3_finalize(all[i]);
    sqlite3_close(b->hub);
    sqlite3_close(b->dev);
    free(b->recs);
}

static void cpy(char *d, size_t n, const unsigned char *s) { snprintf(d, n, "%s", s ? (const char *)s : ""); }

/* "[\"tag-01\",\"tag-07\"]" */
static void tags_json(char *p, uint32_t tags) {
    char *s = p;
    *p++ = '[';
    for (int k = 0; k < 32; k++)
        if (tags & (1u << k)) p += sprintf(p, "%s\"tag-%02d\"", p[-1] == '[' ? "" : ",", k);
    *p++ = ']';
    *p = 0;
    (void)s;
}

/* The hub's stored state JSON (RecordState.storedJSON: sorted keys) and the
 * shadow the device keeps (the same without "tags"). */
static void state_json(const hub_rec_t *r, char *state, size_t n, char *shadow, size_t m) {
    char fields[600], stamps[400], versions[200], tagmeta[1400], tl[400];
    char *p = fields;
    p += sprintf(p, "{");
    if (r->has_picked) p += sprintf(p, "\"picked\":%lld,", (long long)r->picked);
    if (r->has_site) p += sprintf(p, "\"site\":\"%s\",", r->site);
    if (r->has_status) p += sprintf(p, "\"status\":\"%s\",", r->status);
    if (r->tags) { tags_json(tl, r->tags); p += sprintf(p, "\"tags\":%s,", tl); }
    if (p[-1] == ',') p--;
    sprintf(p, "}");
    p = stamps;
    p += sprintf(p, "{");
    for (int f = 0; f < N_FIELDS; f++)
        if (r->stamp[f]) p += sprintf(p, "\"%s\":[%lld,\"" BENCH_DEVICE_ID "\"],", FIELD_NAMES[f], (long long)r->stamp[f]);
    if (p[-1] == ',') p--;
    sprintf(p, "}");
    p = versions;
    p += sprintf(p, "{");
    for (int f = 0; f < N_FIELDS; f++)
        if (r->version[f]) p += sprintf(p, "\"%s\":%lld,", FIELD_NAMES[f], (long long)r->version[f]);
    if (p[-1] == ',') p--;
    sprintf(p, "}");
    tagmeta[0] = 0;
    if (r->tags) {
        p = tagmeta;
        p += sprintf(p, ",\"tags\":{\"tags\":[");
        for (int k = 0; k < 32; k++)
            if (r->tags & (1u << k))
                p += sprintf(p, "%s[\"tag-%02d\",[[%lld,\"" BENCH_DEVICE_ID "\"]]]", p[-1] == '[' ? "" : ",", k,
                             (long long)r->tag_seq[k]);
        sprintf(p, "]}");
    }
    snprintf(state, n, "{\"deleted\":false,\"fields\":%s,\"stamps\":%s%s,\"versions\":%s}", fields, stamps, tagmeta, versions);
    snprintf(shadow, m, "{\"deleted\":false,\"fields\":%s,\"stamps\":%s,\"versions\":%s}", fields, stamps, versions);
}

/* Reads up to n entries after `after` from the device copy and computes every
 * value of their rows (outside the timer). Returns the count. */
static long bl_load_batch(baseline_t *b, int64_t after, long n, bl_entry_t *out) {
    sqlite3_stmt *s = b->read;
    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int64(s, 2, n);
    long k = 0;
    while (k < n && sqlite3_step(s) == SQLITE_ROW) {
        bl_entry_t *e = &out[k++];
        memset(e, 0, offsetof(bl_entry_t, state));
        e->seq = sqlite3_column_int64(s, 0);
        cpy(e->id, sizeof e->id, sqlite3_column_text(s, 1));
        const char *ops = (const char *)sqlite3_column_text(s, 2);
        cpy(e->actor, sizeof e->actor, sqlite3_column_text(s, 3));
        cpy(e->action, sizeof e->action, sqlite3_column_text(s, 4));
        cpy(e->input, sizeof e->input, sqlite3_column_text(s, 5));
        e->device_time = sqlite3_column_int64(s, 6);
        e->hlc = sqlite3_column_int64(s, 7);
        cpy(e->outbox_keys, sizeof e->outbox_keys, sqlite3_column_text(s, 8));
        cpy(e->prev_hash, sizeof e->prev_hash, sqlite3_column_text(s, 9));
        cpy(e->hash, sizeof e->hash, sqlite3_column_text(s, 10));
        e->rec = atoi(e->id + 2);
        hub_rec_t *r = &b->recs[e->rec];
        e->server_seq = ++b->server_seq;
        json_error_t err;
        json_t *o = json_loads(ops, 0, &err);
        if (!o) die("stored ops are not JSON: %s", ops);
        const char *key;
        json_t *v;
        json_t *set = json_object_get(o, "set"), *inc = json_object_get(o, "inc"), *add = json_object_get(o, "add");
        json_object_foreach(set, key, v) {
            int f = !strcmp(key, "site") ? F_SITE : F_STATUS;
            if (f == F_SITE) { snprintf(r->site, sizeof r->site, "%s", json_string_value(v)); r->has_site = 1; }
            else { snprintf(r->status, sizeof r->status, "%s", json_string_value(v)); r->has_status = 1; }
            e->fields[e->nfields++] = f;
        }
        json_object_foreach(inc, key, v) {
            r->picked += json_integer_value(v);
            r->has_picked = 1;
            e->fields[e->nfields++] = F_PICKED;
        }
        json_object_foreach(add, key, v) {
            size_t i;
            json_t *t;
            json_array_foreach(v, i, t) {
                int tag = atoi(json_string_value(t) + 4) & 31;
                r->tags |= 1u << tag;
                r->tag_seq[tag] = e->server_seq;
            }
            e->fields[e->nfields++] = F_TAGS;
        }
        json_decref(o);
        for (int i = 0; i < e->nfields; i++) {
            int f = e->fields[i];
            if (e->hlc > r->stamp[f]) r->stamp[f] = e->hlc;
            r->version[f] = e->server_seq;
        }
        e->picked = r->picked;
        e->has_picked = r->has_picked;
        snprintf(e->site, sizeof e->site, "%s", r->site);
        snprintf(e->status, sizeof e->status, "%s", r->status);
        e->has_tags = r->tags != 0;
        tags_json(e->tags, r->tags);
        state_json(r, e->state, sizeof e->state, e->shadow, sizeof e->shadow);
    }
    sqlite3_reset(s);
    return k;
}

static void bind_view(sqlite3_stmt *s, const bl_entry_t *e) {
    sqlite3_bind_text(s, 1, e->id, -1, SQLITE_STATIC);
    if (e->has_picked) sqlite3_bind_int64(s, 2, e->picked); else sqlite3_bind_null(s, 2);
    if (e->site[0]) sqlite3_bind_text(s, 3, e->site, -1, SQLITE_STATIC); else sqlite3_bind_null(s, 3);
    if (e->status[0]) sqlite3_bind_text(s, 4, e->status, -1, SQLITE_STATIC); else sqlite3_bind_null(s, 4);
    if (e->has_tags) sqlite3_bind_text(s, 5, e->tags, -1, SQLITE_STATIC); else sqlite3_bind_null(s, 5);
}

static void meta_int(sqlite3 *db, sqlite3_stmt *s, const char *key, int64_t v) {
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, v);
    step_done(db, s);
}

/* The timed part of one batch. */
static void bl_write_batch(baseline_t *b, const bl_entry_t *e, long n, int64_t now, long batch_no,
                           int64_t *hub_ns, int64_t *dev_ns) {
    char batch_id[64];
    snprintf(batch_id, sizeof batch_id, BENCH_DEVICE_ID "-b%ld", batch_no);
    int64_t t0 = now_ns();
    if (b->plus) { /* prepare: mark the batch inflight */
        step_done(b->dev, b->d_begin);
        for (long i = 0; i < n; i++) {
            sqlite3_bind_text(b->d_inflight, 1, batch_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(b->d_inflight, 2, e[i].seq);
            step_done(b->dev, b->d_inflight);
        }
        meta_int(b->dev, b->d_meta, "batches", batch_no);
        step_done(b->dev, b->d_commit);
    }
    int64_t t1 = now_ns();
    step_done(b->hub, b->h_begin);
    for (long i = 0; i < n; i++) {
        const bl_entry_t *x = &e[i];
        if (b->plus) {
            static const char *POLICY[N_FIELDS] = {"counter", "lww", "lww", "set"};
            for (int f = 0; f < x->nfields; f++) {
                sqlite3_bind_text(b->h_conf, 1, FIELD_NAMES[x->fields[f]], -1, SQLITE_STATIC);
                sqlite3_bind_text(b->h_conf, 2, POLICY[x->fields[f]], -1, SQLITE_STATIC);
                step_done(b->hub, b->h_conf);
            }
        }
        bind_view(b->h_view, x);
        step_done(b->hub, b->h_view);
        sqlite3_bind_text(b->h_rec, 1, x->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(b->h_rec, 2, x->server_seq);
        sqlite3_bind_text(b->h_rec, 3, x->state, -1, SQLITE_STATIC);
        step_done(b->hub, b->h_rec);
        sqlite3_bind_text(b->h_applied, 1, BENCH_DEVICE_ID, -1, SQLITE_STATIC);
        sqlite3_bind_int64(b->h_applied, 2, x->seq);
        sqlite3_bind_int64(b->h_applied, 3, x->server_seq);
        sqlite3_bind_int64(b->h_applied, 4, now);
        step_done(b->hub, b->h_applied);
        sqlite3_stmt *a = b->h_audit;
        sqlite3_bind_text(a, 1, BENCH_DEVICE_ID, -1, SQLITE_STATIC);
        sqlite3_bind_int64(a, 2, x->seq);
        sqlite3_bind_text(a, 3, x->actor, -1, SQLITE_STATIC);
        sqlite3_bind_text(a, 4, x->action, -1, SQLITE_STATIC);
        sqlite3_bind_text(a, 5, x->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(a, 6, x->input, -1, SQLITE_STATIC);
        sqlite3_bind_int64(a, 7, x->device_time);
        sqlite3_bind_int64(a, 8, x->hlc);
        sqlite3_bind_text(a, 9, x->outbox_keys, -1, SQLITE_STATIC);
        sqlite3_bind_text(a, 10, x->prev_hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(a, 11, x->hash, -1, SQLITE_STATIC);
        sqlite3_bind_int64(a, 12, now);
        step_done(b->hub, a);
    }
    if (b->plus) meta_int(b->hub, b->h_meta, "seq", e[n - 1].server_seq);
    step_done(b->hub, b->h_commit);
    int64_t t2 = now_ns();
    step_done(b->dev, b->d_begin);
    for (long i = 0; i < n; i++) {
        sqlite3_bind_int64(b->d_del, 1, e[i].seq);
        step_done(b->dev, b->d_del);
        sqlite3_bind_int64(b->d_upd, 1, now);
        sqlite3_bind_int64(b->d_upd, 2, e[i].seq);
        step_done(b->dev, b->d_upd);
    }
    if (b->plus) {
        /* Pulled changes: one shadow row and one view row per record touched
         * (the last entry of each record in the batch carries its state). */
        for (long i = 0; i < n; i++) {
            int last = 1;
            for (long j = i + 1; j < n && last; j++)
                if (e[j].rec == e[i].rec) last = 0;
            if (!last) continue;
            sqlite3_bind_text(b->d_shadow, 1, e[i].id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(b->d_shadow, 2, e[i].server_seq);
            sqlite3_bind_text(b->d_shadow, 3, e[i].shadow, -1, SQLITE_STATIC);
            step_done(b->dev, b->d_shadow);
            bind_view(b->d_view, &e[i]);
            step_done(b->dev, b->d_view);
        }
        meta_int(b->dev, b->d_meta, "audit_acked_through", e[n - 1].seq);
        meta_int(b->dev, b->d_meta, "cursor", e[n - 1].server_seq);
        meta_int(b->dev, b->d_meta, "hlc", e[n - 1].hlc);
    }
    step_done(b->dev, b->d_commit);
    int64_t t3 = now_ns();
    *hub_ns = t2 - t1;
    *dev_ns = (t1 - t0) + (t3 - t2);
}

typedef struct {
    double seconds, read_seconds, cpu;
    long batches, actions;
    bench_stats_t hub, dev, total;
    double avg_state, avg_audit_row;
} bl_result_t;

static double avg_len(sqlite3 *db, const char *sql) {
    sqlite3_stmt *s;
    double v = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_double(s, 0);
    sqlite3_finalize(s);
    return v;
}

static long long count_rows(sqlite3 *db, const char *sql) {
    sqlite3_stmt *s;
    long long n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

static bl_result_t bl_run(const char *hub_path, const char *dev_path, long batch, int plus) {
    baseline_t b;
    bl_open_all(&b, hub_path, dev_path, g_records, plus);
    bl_entry_t *e = malloc(sizeof *e * (size_t)batch);
    long cap = g_actions / batch + 2;
    int64_t *hub_ns = malloc(sizeof(int64_t) * (size_t)cap), *dev_ns = malloc(sizeof(int64_t) * (size_t)cap),
            *tot_ns = malloc(sizeof(int64_t) * (size_t)cap);
    bl_result_t r;
    memset(&r, 0, sizeof r);
    int64_t after = 0, timed = 0, read = 0;
    for (;;) {
        int64_t t0 = now_ns();
        long n = bl_load_batch(&b, after, batch, e);
        read += now_ns() - t0;
        if (n == 0) break;
        if (r.batches >= cap) die("baseline: more batches than expected");
        double c0 = cpu_s();
        bl_write_batch(&b, e, n, wall_ms(), r.batches + 1, &hub_ns[r.batches], &dev_ns[r.batches]);
        r.cpu += cpu_s() - c0;
        tot_ns[r.batches] = hub_ns[r.batches] + dev_ns[r.batches];
        timed += tot_ns[r.batches];
        after = e[n - 1].seq;
        r.actions += n;
        r.batches++;
    }
    r.seconds = timed / 1e9;
    r.read_seconds = read / 1e9;
    r.hub = stats_ms(hub_ns, r.batches);
    r.dev = stats_ms(dev_ns, r.batches);
    r.total = stats_ms(tot_ns, r.batches);
    r.avg_state = avg_len(b.hub, "SELECT avg(length(state)) FROM fs_hub_records");
    r.avg_audit_row = avg_len(b.hub, "SELECT avg(length(actor)+length(action)+length(type)+length(id)+length(input)"
                                     "+length(outbox_keys)+length(prev_hash)+length(hash)) FROM fs_hub_audit");
    long long outbox = count_rows(b.dev, "SELECT count(*) FROM fs_outbox");
    long long applied = count_rows(b.hub, "SELECT count(*) FROM fs_hub_applied");
    long long audit = count_rows(b.hub, "SELECT count(*) FROM fs_hub_audit");
    long long recs = count_rows(b.hub, "SELECT count(*) FROM fs_hub_records");
    long long acked = count_rows(b.dev, "SELECT count(*) FROM fs_audit WHERE outcome = 'applied' AND server_received_at NOT NULL");
    printf("  rows after: device outbox %lld, device audit rows acked %lld; hub applied %lld, audit %lld, records %lld\n",
           outbox, acked, applied, audit, recs);
    if (outbox != 0 || applied != g_actions || audit != g_actions || acked != g_actions)
        printf("  WARNING: baseline row counts differ from expectation\n");
    free(e);
    free(hub_ns);
    free(dev_ns);
    free(tot_ns);
    bl_close(&b);
    return r;
}

/* ------------------------------------------------------------------------ */

static void usage(void) {
    fprintf(stderr, "usage: sync_throughput [--actions N] [--records N] [--batch N] [--dir DIR] [--keep] [--no-baseline]\n");
    exit(2);
}

static long hub_stat(fs_hub *h, const char *key) {
    char *s = NULL;
    if (fs_hub_stats(h, &s) != FS_OK) die("fs_hub_stats: %s", fs_last_error());
    long v = (long)json_int_member(s, key, -1);
    fs_free(s);
    return v;
}

int main(int argc, char **argv) {
    g_prog = "sync_throughput";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--actions") && i + 1 < argc) g_actions = atol(argv[++i]);
        else if (!strcmp(a, "--records") && i + 1 < argc) g_records = atol(argv[++i]);
        else if (!strcmp(a, "--batch") && i + 1 < argc) g_batch = atol(argv[++i]);
        else if (!strcmp(a, "--dir") && i + 1 < argc) g_dir_opt = argv[++i];
        else if (!strcmp(a, "--keep")) g_keep = 1;
        else if (!strcmp(a, "--no-baseline")) g_baseline = 0;
        else usage();
    }
    if (g_actions < 1 || g_records < 1 || g_batch < 0 || g_records > 10000000) usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    long batch = g_batch ? g_batch : LIB_DEFAULT_BATCH;

    char dir[PATH_MAX];
    make_workdir(dir, sizeof dir, g_dir_opt, "fieldsync-sync");
    printf("== fieldsync sync throughput (Benchmarks/sync_throughput.c) ==\n");
    print_machine(dir);
    printf("workload: %ld actions over %ld records, applied offline, then drained in-process; durability normal "
           "(store and hub); batch size %ld%s; pull on\n",
           g_actions, g_records, batch, g_batch ? "" : " (library default)");

    char dev[PATH_MAX + 32], hub[PATH_MAX + 32], bl_dev[PATH_MAX + 32], bl_hub[PATH_MAX + 32], pl_dev[PATH_MAX + 32],
        pl_hub[PATH_MAX + 32];
    snprintf(dev, sizeof dev, "%s/device.db", dir);
    snprintf(hub, sizeof hub, "%s/hub.db", dir);
    snprintf(bl_dev, sizeof bl_dev, "%s/baseline-device.db", dir);
    snprintf(bl_hub, sizeof bl_hub, "%s/baseline-hub.db", dir);
    snprintf(pl_dev, sizeof pl_dev, "%s/baselineplus-device.db", dir);
    snprintf(pl_hub, sizeof pl_hub, "%s/baselineplus-hub.db", dir);
    remove_db(dev);
    remove_db(hub);

    /* 1. The offline backlog. */
    char extra[64] = "";
    if (g_batch) snprintf(extra, sizeof extra, "\"batch_size\":%ld", g_batch);
    fs_store *st = bench_store_open(dev, extra);
    bench_gen_t gen;
    gen_init(&gen, g_records, 0x5EED5EEDull);
    machine_cpu_t m0 = machine_cpu();
    double apply_s = bench_build_backlog(st, &gen, 0, g_actions, 0);
    print_kind_counts(gen.counts);
    gen_free(&gen);
    int64_t backlog = bench_outbox_count(st);
    bench_store_close(st);
    printf("offline applies: %ld fs_store_apply in %.2f s (%.1f us/action); outbox %lld; device file %.1f MiB\n",
           g_actions, apply_s, apply_s * 1e6 / g_actions, (long long)backlog, db_size(dev) / 1048576.0);
    print_contention("the offline applies", m0, machine_cpu());
    if (backlog != g_actions) printf("  WARNING: outbox holds %lld entries, expected %ld\n", (long long)backlog, g_actions);
    if (g_baseline) copy_db(dev, bl_dev);
    sync();

    /* 2. The drain. */
    st = bench_store_open(dev, extra);
    fs_hub *h = bench_hub_open(hub);
    long cap = g_actions + 16;
    bench_exchange_t *log = calloc((size_t)cap, sizeof *log);
    machine_cpu_t m1 = machine_cpu();
    bench_drain_t d = bench_drain(st, h, log, cap, NULL, NULL, 0);
    machine_cpu_t m2 = machine_cpu();
    long n = d.exchanges < cap ? d.exchanges : cap;
    int64_t *p = malloc(sizeof(int64_t) * (size_t)n), *hd = malloc(sizeof(int64_t) * (size_t)n),
            *rc = malloc(sizeof(int64_t) * (size_t)n), *tot = malloc(sizeof(int64_t) * (size_t)n);
    for (long i = 0; i < n; i++) {
        p[i] = log[i].prepare_ns;
        hd[i] = log[i].handle_ns;
        rc[i] = log[i].receive_ns;
        tot[i] = p[i] + hd[i] + rc[i];
    }
    bench_stats_t sp = stats_ms(p, n), sh = stats_ms(hd, n), sr = stats_ms(rc, n), stt = stats_ms(tot, n);
    double drain_s = d.wall_ns / 1e9;
    double fs_rate = d.applied / drain_s;
    long h_applied = hub_stat(h, "entries_applied"), h_audit = hub_stat(h, "audit_rows"),
         h_breaks = hub_stat(h, "audit_chain_breaks"), h_hashfail = hub_stat(h, "audit_hash_failures"),
         h_gaps = hub_stat(h, "audit_gaps");
    int64_t left = bench_outbox_count(st);
    bench_store_close(st);
    bench_hub_close(h);
    printf("drain: %ld exchanges in %.2f s: applied %ld, duplicate %ld, rejected %ld, retry %ld, stuck %ld, pulled %ld; "
           "outbox left %lld\n",
           d.exchanges, drain_s, d.applied, d.duplicate, d.rejected, d.retry, d.stuck, d.pulled, (long long)left);
    printf("  wire: request %.1f KiB, response %.1f KiB per exchange on average (%.1f MiB total)\n",
           d.req_bytes / 1024.0 / (d.exchanges ? d.exchanges : 1), d.resp_bytes / 1024.0 / (d.exchanges ? d.exchanges : 1),
           (d.req_bytes + d.resp_bytes) / 1048576.0);
    printf("  hub: entries_applied %ld, audit_rows %ld, chain breaks %ld, hash failures %ld, gaps %ld; hub file %.1f MiB\n",
           h_applied, h_audit, h_breaks, h_hashfail, h_gaps, db_size(hub) / 1048576.0);
    print_contention("the drain", m1, m2);
    int ok = d.applied == g_actions && left == 0 && h_applied == g_actions && h_audit == g_actions && h_breaks == 0 &&
             h_hashfail == 0 && d.rejected == 0;
    if (!ok) printf("  WARNING: the drain did not end as expected\n");
    /* Trend: the first and last tenth of the exchanges. */
    if (n >= 20) {
        long t = n / 10;
        double a = 0, z = 0;
        for (long i = 0; i < t; i++) { a += tot[i]; z += tot[n - 1 - i]; }
        printf("  per-exchange time, first 10%% of exchanges %.1f ms, last 10%% %.1f ms (mean)\n", a / t / 1e6, z / t / 1e6);
    }

    /* 3. Baselines. */
    bl_result_t b1, b2;
    memset(&b1, 0, sizeof b1);
    memset(&b2, 0, sizeof b2);
    if (g_baseline) {
        copy_db(bl_dev, pl_dev);
        bl_create_hub(hub, bl_hub);
        copy_db(bl_hub, pl_hub);
        sync();
        printf("baseline (hub: record + state + applied + audit rows; device: delete outbox row + update audit row):\n");
        machine_cpu_t m3 = machine_cpu();
        b1 = bl_run(bl_hub, bl_dev, batch, 0);
        print_contention("the baseline", m3, machine_cpu());
        printf("  %ld batches, %ld actions, %.3f s timed (+ %.3f s untimed: reading the batch rows and building values)\n",
               b1.batches, b1.actions, b1.seconds, b1.read_seconds);
        printf("  row sizes: state JSON %.0f B on average (fieldsync hub: ",
               b1.avg_state);
        sqlite3 *fh;
        if (sqlite3_open_v2(hub, &fh, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
            printf("%.0f B); audit text columns %.0f B (fieldsync hub: %.0f B)\n", avg_len(fh, "SELECT avg(length(state)) FROM fs_hub_records"),
                   b1.avg_audit_row,
                   avg_len(fh, "SELECT avg(length(actor)+length(action)+length(type)+length(id)+length(input)"
                               "+length(outbox_keys)+length(prev_hash)+length(hash)) FROM fs_hub_audit"));
            sqlite3_close(fh);
        } else {
            printf("?)\n");
        }
        printf("baseline+ (also: inflight marking, conflict counters, meta rows, device shadow + view rows per touched record):\n");
        machine_cpu_t m4 = machine_cpu();
        b2 = bl_run(pl_hub, pl_dev, batch, 1);
        print_contention("baseline+", m4, machine_cpu());
        printf("  %ld batches, %ld actions, %.3f s timed\n", b2.batches, b2.actions, b2.seconds);
    }

    printf("\nthroughput (%ld actions, batch %ld, durability normal)\n", g_actions, batch);
    printf("%-34s | %9s | %7s | %10s | %-30s\n", "", "total s", "CPU s", "actions/s", "per exchange / batch, ms: p50   p99    max");
    printf("-----------------------------------+-----------+---------+------------+------------------------------------------\n");
    printf("%-34s | %9.2f | %7.2f | %10.0f | %22.2f %7.2f %7.2f\n", "fieldsync drain (wall)", drain_s, d.cpu_s, fs_rate, stt.p50,
           stt.p99, stt.max);
    printf("%-34s | %9.2f | %7s | %10s | %22.2f %7.2f %7.2f\n", "  fs_sync_prepare", sp.sum / 1e3, "", "", sp.p50, sp.p99, sp.max);
    printf("%-34s | %9.2f | %7s | %10s | %22.2f %7.2f %7.2f\n", "  fs_hub_handle", sh.sum / 1e3, "", "", sh.p50, sh.p99, sh.max);
    printf("%-34s | %9.2f | %7s | %10s | %22.2f %7.2f %7.2f\n", "  fs_sync_receive", sr.sum / 1e3, "", "", sr.p50, sr.p99, sr.max);
    if (g_baseline) {
        printf("%-34s | %9.3f | %7.2f | %10.0f | %22.2f %7.2f %7.2f\n", "baseline (raw SQLite, brief)", b1.seconds,
               b1.cpu, b1.actions / b1.seconds, b1.total.p50, b1.total.p99, b1.total.max);
        printf("%-34s | %9.3f | %7s | %10s | %22.2f %7.2f %7.2f\n", "  hub transaction", b1.hub.sum / 1e3, "", "", b1.hub.p50, b1.hub.p99, b1.hub.max);
        printf("%-34s | %9.3f | %7s | %10s | %22.2f %7.2f %7.2f\n", "  device transaction", b1.dev.sum / 1e3, "", "", b1.dev.p50, b1.dev.p99, b1.dev.max);
        printf("%-34s | %9.3f | %7.2f | %10.0f | %22.2f %7.2f %7.2f\n", "baseline+ (all engine rows)", b2.seconds,
               b2.cpu, b2.actions / b2.seconds, b2.total.p50, b2.total.p99, b2.total.max);
        printf("%-34s | %9.3f | %7s | %10s | %22.2f %7.2f %7.2f\n", "  hub transaction", b2.hub.sum / 1e3, "", "", b2.hub.p50, b2.hub.p99, b2.hub.max);
        printf("%-34s | %9.3f | %7s | %10s | %22.2f %7.2f %7.2f\n", "  device transactions (2)", b2.dev.sum / 1e3, "", "", b2.dev.p50, b2.dev.p99, b2.dev.max);
        printf("\nratio fieldsync / baseline (time; = baseline actions/s / fieldsync actions/s): %.1fx "
               "(per-exchange p50 %.1fx); vs baseline+: %.1fx\n",
               drain_s / b1.seconds, stt.p50 / b1.total.p50, drain_s / b2.seconds);
        printf("  hub side: fs_hub_handle / baseline hub txn %.1fx; device side: prepare+receive / baseline device txn %.1fx\n",
               sh.sum / b1.hub.sum, (sp.sum + sr.sum) / b1.dev.sum);
        printf("  in CPU time: fieldsync %.2f s / baseline %.2f s = %.1fx; vs baseline+ %.2f s = %.1fx\n", d.cpu_s, b1.cpu,
               d.cpu_s / b1.cpu, b2.cpu, d.cpu_s / b2.cpu);
    }
    printf("fieldsync: %.0f actions/s device -> hub -> ack (offline applies were %.0f actions/s)\n", fs_rate,
           g_actions / apply_s);

    if (!g_keep) {
        remove_db(dev);
        remove_db(hub);
        remove_db(bl_dev);
        remove_db(bl_hub);
        remove_db(pl_dev);
        remove_db(pl_hub);
        if (!g_dir_opt) rmdir(dir);
    } else {
        printf("files kept in %s\n", dir);
    }
    free(log);
    free(p);
    free(hd);
    free(rc);
    free(tot);
    return ok ? 0 : 1;
}
