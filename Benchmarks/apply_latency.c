/*
 * apply_latency.c — local action latency of libfieldsync through the C ABI,
 * against a raw-SQLite baseline (BENCHMARKS.md, first benchmark).
 *
 * README
 * ------
 * What it measures
 *   For each durability ("normal" = synchronous=NORMAL, "full" =
 *   synchronous=FULL; both WAL):
 *   - fieldsync: a store (schema below) preloaded with N_RECORDS (100,000)
 *     records through fs_store_apply (durability "normal"; the store keeps one
 *     outbox entry and one audit row per preload action, as a device that has
 *     not synced would), closed, then reopened with the measured durability.
 *     N_ACTIONS (10,000) actions are then applied, each timed individually
 *     with clock_gettime(CLOCK_MONOTONIC) around fs_store_apply() + fs_free()
 *     of the result. Mix: 50% update an existing record (set status + inc
 *     picked), 25% create a new record, 25% add a tag to an existing record.
 *     Building the action JSON is the host's work and is outside the timer.
 *   - baseline: raw SQLite doing the same three writes per action in one
 *     transaction: BEGIN; upsert the record row into the view table; INSERT
 *     the outbox row; INSERT the audit row; COMMIT — prepared statements
 *     reused, same pragmas (journal_mode=WAL, synchronous=NORMAL|FULL), and
 *     the timer around bind + the five statements only (the values are built
 *     beforehand, so the baseline is the pure SQLite cost).
 *
 * How the baseline is matched
 *   - Same tables and indexes: the DDL is copied from the preloaded fieldsync
 *     store's sqlite_master (SELECT sql ... WHERE sql NOT NULL) into a fresh
 *     file, after copying the store's page_size and auto_vacuum settings.
 *   - Same row shapes: the columns come from PRAGMA table_info of the view
 *     table ("task"), fs_outbox and fs_audit. Every column is filled: by name
 *     when its meaning is known (id, status, site, picked, tags; key, seq,
 *     audit_id, type, action, actor, device_id, device_time, hlc, ops, input,
 *     outbox_keys, prev_hash, hash) with values of realistic size (hash =
 *     64-char hex, ops = JSON built with snprintf), otherwise with the value
 *     of the same column in the newest row the library wrote (same storage
 *     class and size; made unique when the column is under a UNIQUE index).
 *     Columns the library leaves NULL stay NULL. The mapping is printed.
 *   - Same preload (100,000 records, one outbox + one audit row each, written
 *     in big transactions) and the same deterministic action sequence.
 *   - Each durability runs on fresh copies of the preloaded files, so both
 *     runs start from the same state.
 *
 * How the runs are interleaved
 *   Per durability, the fieldsync store and the baseline database are open at
 *   the same time and the plan is walked in alternating chunks of CHUNK
 *   (default 100) actions: actions [0, CHUNK) on fieldsync, the same actions
 *   [0, CHUNK) on the baseline, then [CHUNK, 2*CHUNK) on each, and so on.
 *   Every action is still timed on its own; the JSON and the baseline's
 *   values are built before the first chunk. Why: on a shared VM the
 *   neighbours' load drifts over tens of seconds, so when all of fieldsync ran
 *   first and all of the baseline second, the two halves saw different
 *   machine conditions and the p50 ratio swung (1.3 to 1.9 with the same
 *   library). Interleaved, noise on the machine hits both sides equally and
 *   mostly cancels out of the ratio. --chunk 0 restores the old order (all
 *   fieldsync, then all baseline, one closed before the other is opened) for
 *   comparison.
 *
 * Build and run:  make -C Benchmarks bench        (from the repository root)
 * Options:        apply_latency [--records N] [--actions N]
 *                               [--durability normal|full|both] [--dir D]
 *                               [--keep] [--lib PATH] [--chunk N]
 *                 (--chunk N: interleave in chunks of N actions, default
 *                 100; --chunk 0: all fieldsync, then all baseline)
 * Also prints the unstripped and `strip --strip-unneeded` size of the loaded
 * libfieldsync.so, and machine information.
 * Do not rebuild the library while this runs: overwriting the mapped .so in
 * place kills the process with SIGBUS (to bench a snapshot, copy it elsewhere
 * and run with LD_LIBRARY_PATH=<copy dir>, which overrides the RUNPATH).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "fieldsync.h"

/* ------------------------------------------------------------------------ */
/* Parameters                                                               */
/* ------------------------------------------------------------------------ */

static const char *SCHEMA =
    "{\"version\":1,\"types\":{\"task\":{\"fields\":{"
    "\"status\":{\"type\":\"string\"},"
    "\"site\":{\"type\":\"string\"},"
    "\"picked\":{\"type\":\"int\",\"merge\":\"counter\"},"
    "\"tags\":{\"type\":\"set\"}},"
    "\"required\":[\"status\"]}}}";

#define DEVICE_ID "bench-dev-1"
#define VIEW_TABLE "task"
#define N_STATUS 5
#define N_TAGS 16
#define N_SITES 40
#define N_ACTORS 40

static const char *STATUSES[N_STATUS] = {"open", "picked", "staged", "shipped", "blocked"};

static long g_records = 100000;
static long g_actions = 10000;
static int g_do_normal = 1, g_do_full = 1;
static const char *g_dir_opt = NULL;
static int g_keep = 0;
static const char *g_lib_opt = NULL;
static long g_chunk = 100; /* actions per side per turn; 0 = all fieldsync, then all baseline */

enum { K_UPDATE = 0, K_CREATE = 1, K_TAG = 2, N_KINDS = 3 };
static const char *KIND_NAMES[N_KINDS] = {"update", "create", "add-tag"};

typedef struct {
    int kind;
    int32_t rec;    /* record index (id "T-%07d") */
    int8_t status;  /* for update: new status */
    int8_t tag;     /* for add-tag */
    int8_t site;    /* for create */
    int8_t actor;
} action_t;

/* Per-record state for the baseline's view rows. */
typedef struct {
    int8_t status, site;
    int32_t picked;
    uint16_t tags; /* bitmask of tag-00..tag-15 */
} rec_state_t;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "apply_latency: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rec_id(char *buf, size_t n, long rec) { snprintf(buf, n, "T-%07ld", rec); }

static void input_json(char *buf, size_t n, long i) {
    snprintf(buf, n, "{\"scanner\":\"sc-%02ld\",\"bin\":\"B-%03ld-%02ld\",\"qty\":1}",
             i % 17, (i * 7) % 1000, i % 50);
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* ------------------------------------------------------------------------ */

static void copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in) die("open %s: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) die("create %s: %s", dst, strerror(errno));
    static char buf[1 << 20];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) die("write %s: %s", dst, strerror(errno));
    fclose(in);
    if (fflush(out) != 0 || fsync(fileno(out)) != 0) die("flush %s", dst);
    fclose(out);
}

/* Copies an SQLite database (plus its -wal if present; no -shm). */
static void copy_db(const char *src, const char *dst) {
    char s[PATH_MAX + 8], d[PATH_MAX + 8];
    copy_file(src, dst);
    snprintf(s, sizeof s, "%s-wal", src);
    snprintf(d, sizeof d, "%s-wal", dst);
    unlink(d);
    if (access(s, F_OK) == 0) copy_file(s, d);
    snprintf(d, sizeof d, "%s-shm", dst);
    unlink(d);
}

static void remove_db(const char *p) {
    char s[PATH_MAX + 8];
    unlink(p);
    snprintf(s, sizeof s, "%s-wal", p);
    unlink(s);
    snprintf(s, sizeof s, "%s-shm", p);
    unlink(s);
    snprintf(s, sizeof s, "%s-journal", p);
    unlink(s);
}

static long long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

static const char *fs_type_name(const char *path) {
    struct statfs sf;
    if (statfs(path, &sf) != 0) return "?";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53: return "ext2/3/4";
    case 0x01021994: return "tmpfs (fsync is a no-op!)";
    case 0x794c7630: return "overlayfs";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x2FC12FC1: return "zfs";
    default: return "other";
    }
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                               */
/* ------------------------------------------------------------------------ */

typedef struct {
    double p50, p99, max, mean;
    long n;
} stats_t;

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentiles, in microseconds. */
static stats_t compute_stats(const int64_t *ns, long n) {
    stats_t s = {0, 0, 0, 0, n};
    if (n == 0) return s;
    int64_t *v = malloc(sizeof *v * (size_t)n);
    memcpy(v, ns, sizeof *v * (size_t)n);
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    long i50 = (long)((n * 50 + 99) / 100) - 1, i99 = (long)((n * 99 + 99) / 100) - 1;
    double sum = 0;
    for (long i = 0; i < n; i++) sum += (double)v[i];
    s.p50 = v[i50 < 0 ? 0 : i50] / 1000.0;
    s.p99 = v[i99 < 0 ? 0 : i99] / 1000.0;
    s.max = v[n - 1] / 1000.0;
    s.mean = sum / n / 1000.0;
    free(v);
    return s;
}

static stats_t kind_stats(const int64_t *ns, const action_t *plan, long n, int kind) {
    int64_t *v = malloc(sizeof *v * (size_t)(n ? n : 1));
    long m = 0;
    for (long i = 0; i < n; i++)
        if (plan[i].kind == kind) v[m++] = ns[i];
    stats_t s = compute_stats(v, m);
    free(v);
    return s;
}

/* ------------------------------------------------------------------------ */
/* fieldsync side                                                           */
/* ------------------------------------------------------------------------ */

static fs_store *fs_open_or_die(const char *path, const char *durability) {
    char opts[128];
    snprintf(opts, sizeof opts, "{\"durability\":\"%s\",\"device_id\":\"" DEVICE_ID "\"}", durability);
    fs_store *st = NULL;
    fs_status rc = fs_store_open(path, SCHEMA, opts, &st);
    if (rc != FS_OK) die("fs_store_open(%s): %s: %s", path, fs_status_name(rc), fs_last_error());
    return st;
}

/* Builds the action JSON for one planned action. */
static void fs_action_json(char *buf, size_t n, const action_t *a, long i) {
    char id[32], in[96];
    rec_id(id, sizeof id, a->rec);
    input_json(in, sizeof in, i);
    switch (a->kind) {
    case K_UPDATE:
        snprintf(buf, n,
                 "{\"action\":\"pick_item\",\"actor\":\"op-%02d\",\"type\":\"task\",\"id\":\"%s\","
                 "\"set\":{\"status\":\"%s\"},\"inc\":{\"picked\":1},\"input\":%s}",
                 a->actor, id, STATUSES[a->status], in);
        break;
    case K_CREATE:
        snprintf(buf, n,
                 "{\"action\":\"create_task\",\"actor\":\"op-%02d\",\"type\":\"task\",\"id\":\"%s\","
                 "\"set\":{\"status\":\"open\",\"site\":\"site-%02d\"},\"input\":%s}",
                 a->actor, id, a->site, in);
        break;
    default:
        snprintf(buf, n,
                 "{\"action\":\"tag_task\",\"actor\":\"op-%02d\",\"type\":\"task\",\"id\":\"%s\","
                 "\"add\":{\"tags\":[\"tag-%02d\"]},\"input\":%s}",
                 a->actor, id, a->tag, in);
        break;
    }
}

static void fs_apply_or_die(fs_store *st, const char *json) {
    char *res = NULL;
    fs_status rc = fs_store_apply(st, json, &res);
    if (rc != FS_OK) die("fs_store_apply: %s: %s\n  action: %s", fs_status_name(rc), fs_last_error(), json);
    fs_free(res);
}

static void fs_preload(const char *path) {
    fs_store *st = fs_open_or_die(path, "normal");
    char buf[512];
    for (long r = 0; r < g_records; r++) {
        action_t a = {K_CREATE, (int32_t)r, 0, 0, (int8_t)(r % N_SITES), (int8_t)(r % N_ACTORS)};
        fs_action_json(buf, sizeof buf, &a, r);
        fs_apply_or_die(st, buf);
    }
    fs_status rc = fs_store_close(st);
    if (rc != FS_OK) die("fs_store_close: %s: %s", fs_status_name(rc), fs_last_error());
}

/* A measured fieldsync run: the store, opened with the measured durability,
 * and every action's JSON, built beforehand (the host's work: outside the
 * timer). fs_run_open / fs_run_range / fs_run_close so that the run can be
 * interleaved with the baseline's. */
typedef struct {
    fs_store *st;
    char *buf;
    char **json;
} fs_run_t;

static void fs_run_open(fs_run_t *r, const char *path, const char *durability, const action_t *plan) {
    r->st = fs_open_or_die(path, durability);
    r->buf = malloc((size_t)g_actions * 320 + 1);
    r->json = malloc(sizeof *r->json * (size_t)g_actions);
    size_t off = 0;
    for (long i = 0; i < g_actions; i++) {
        r->json[i] = r->buf + off;
        fs_action_json(r->json[i], 320, &plan[i], g_records + i);
        off += strlen(r->json[i]) + 1;
    }
}

/* Applies plan actions [from, to), each timed individually; fills ns[from..to). */
static void fs_run_range(fs_run_t *r, long from, long to, int64_t *ns) {
    for (long i = from; i < to; i++) {
        char *res = NULL;
        int64_t t0 = now_ns();
        fs_status rc = fs_store_apply(r->st, r->json[i], &res);
        fs_free(res);
        int64_t t1 = now_ns();
        if (rc != FS_OK) die("fs_store_apply: %s: %s\n  action: %s", fs_status_name(rc), fs_last_error(), r->json[i]);
        ns[i] = t1 - t0;
    }
}

/* Reads the store's counters, then closes it. */
static void fs_run_close(fs_run_t *r, long long *out_records, long long *out_audit, long long *out_outbox) {
    /* Counters, via the library (jansson parses the stats object). */
    *out_records = *out_audit = *out_outbox = -1;
    char *stats = NULL;
    if (fs_store_stats(r->st, &stats) == FS_OK && stats) {
        json_error_t err;
        json_t *o = json_loads(stats, 0, &err);
        if (o) {
            json_t *v;
            if ((v = json_object_get(o, "records")) && json_is_integer(v)) *out_records = json_integer_value(v);
            if ((v = json_object_get(o, "audit_rows")) && json_is_integer(v)) *out_audit = json_integer_value(v);
            if ((v = json_object_get(o, "outbox_pending")) && json_is_integer(v)) *out_outbox = json_integer_value(v);
            json_decref(o);
        }
        fs_free(stats);
    }
    if (*out_outbox < 0) {
        int64_t c = 0;
        if (fs_outbox_count(r->st, &c) == FS_OK) *out_outbox = c;
    }
    fs_status rc = fs_store_close(r->st);
    if (rc != FS_OK) die("fs_store_close: %s: %s", fs_status_name(rc), fs_last_error());
    r->st = NULL;
    free(r->json);
    free(r->buf);
    r->json = NULL;
    r->buf = NULL;
}

/* ------------------------------------------------------------------------ */
/* Baseline side: schema discovery                                          */
/* ------------------------------------------------------------------------ */

enum role {
    R_NULL, R_TPL, R_SEQ, R_RECID, R_TYPE, R_ACTION, R_ACTOR, R_DEVICE, R_TIME, R_HLC,
    R_OPS, R_INPUT, R_KEY, R_KEYS, R_HASH, R_PREV_HASH,
    R_STATUS, R_SITE, R_PICKED, R_TAGS, N_ROLES
};
static const char *ROLE_NAMES[N_ROLES] = {
    "NULL", "tpl", "seq", "rec_id", "type", "action", "actor", "device_id", "time_ms", "hlc",
    "ops", "input", "outbox_key", "outbox_keys", "hash", "prev_hash",
    "status", "site", "picked", "tags"};

typedef struct {
    char name[128];
    char decl[64];
    int notnull, pk, unique, ipk; /* ipk: INTEGER PRIMARY KEY (rowid alias) */
    int role;
    int tpl_type; /* SQLITE_INTEGER/FLOAT/TEXT/BLOB/NULL of the library's newest row */
    sqlite3_int64 tpl_int;
    double tpl_real;
    char *tpl_bytes;
    int tpl_len;
} col_t;

typedef struct {
    char name[128];
    int is_view;
    int ncol;
    col_t cols[96];
    int has_id_unique;
    sqlite3_stmt *write;  /* upsert / insert */
    sqlite3_stmt *update; /* view table fallback when `id` is not unique */
} table_t;

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

static void lower(char *d, const char *s, size_t n) {
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++) d[i] = (char)tolower((unsigned char)s[i]);
    d[i] = 0;
}

static int name_in(const char *n, const char *const *list) {
    for (; *list; list++)
        if (strcmp(n, *list) == 0) return 1;
    return 0;
}

static int assign_role(const table_t *t, const col_t *c) {
    char n[128];
    lower(n, c->name, sizeof n);
    if (t->is_view) {
        if (!strcmp(n, "id")) return R_RECID;
        if (!strcmp(n, "status")) return R_STATUS;
        if (!strcmp(n, "site")) return R_SITE;
        if (!strcmp(n, "picked")) return R_PICKED;
        if (!strcmp(n, "tags")) return R_TAGS;
        return R_TPL;
    }
    static const char *const KEY[] = {"key", "outbox_key", "idempotency_key", "okey", NULL};
    static const char *const SEQ[] = {"seq", "audit_id", "sequence", "outbox_seq", NULL};
    static const char *const RID[] = {"id", "record_id", "rec_id", "rid", "record", NULL};
    static const char *const TYP[] = {"type", "record_type", "rec_type", NULL};
    static const char *const ACT[] = {"action", "action_name", NULL};
    static const char *const DEV[] = {"device_id", "device", NULL};
    static const char *const TIM[] = {"device_time", "device_time_ms", "time_ms", "created_at", "ts", NULL};
    static const char *const HLC[] = {"hlc", "hlc_stamp", "stamp", NULL};
    static const char *const OPS[] = {"ops", "ops_json", "payload", "changes", "op", NULL};
    static const char *const INP[] = {"input", "input_json", NULL};
    if (name_in(n, KEY)) return R_KEY;
    if (name_in(n, SEQ)) return R_SEQ;
    if (name_in(n, RID)) return R_RECID;
    if (name_in(n, TYP)) return R_TYPE;
    if (name_in(n, ACT)) return R_ACTION;
    if (!strcmp(n, "actor")) return R_ACTOR;
    if (name_in(n, DEV)) return R_DEVICE;
    if (name_in(n, TIM)) return R_TIME;
    if (name_in(n, HLC)) return R_HLC;
    if (name_in(n, OPS)) return R_OPS;
    if (name_in(n, INP)) return R_INPUT;
    if (!strcmp(n, "outbox_keys")) return R_KEYS;
    if (!strcmp(n, "prev_hash")) return R_PREV_HASH;
    if (strstr(n, "hash")) return R_HASH;
    return R_TPL;
}

/* Reads columns, uniqueness and the newest row of `name` from the library's file. */
static void discover_table(sqlite3 *src, table_t *t, const char *name, int is_view) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->is_view = is_view;
    char sql[512];
    sqlite3_stmt *s;
    snprintf(sql, sizeof sql, "PRAGMA table_info(\"%s\")", name);
    if (sqlite3_prepare_v2(src, sql, -1, &s, NULL) != SQLITE_OK) die("%s", sqlite3_errmsg(src));
    int npk = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (t->ncol >= (int)(sizeof t->cols / sizeof t->cols[0])) die("too many columns in %s", name);
        col_t *c = &t->cols[t->ncol++];
        snprintf(c->name, sizeof c->name, "%s", (const char *)sqlite3_column_text(s, 1));
        snprintf(c->decl, sizeof c->decl, "%s", sqlite3_column_text(s, 2) ? (const char *)sqlite3_column_text(s, 2) : "");
        c->notnull = sqlite3_column_int(s, 3);
        c->pk = sqlite3_column_int(s, 5);
        if (c->pk) npk++;
    }
    sqlite3_finalize(s);
    if (t->ncol == 0) die("table %s not found in the fieldsync store", name);
    /* INTEGER PRIMARY KEY = rowid alias (only for rowid tables; good enough). */
    for (int i = 0; i < t->ncol; i++)
        if (t->cols[i].pk && npk == 1 && !strcasecmp(t->cols[i].decl, "INTEGER")) t->cols[i].ipk = 1;
    /* Unique single- and multi-column constraints: mark member columns. */
    snprintf(sql, sizeof sql, "PRAGMA index_list(\"%s\")", name);
    sqlite3_prepare_v2(src, sql, -1, &s, NULL);
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (!sqlite3_column_int(s, 2)) continue;
        char idx[256], q[512];
        snprintf(idx, sizeof idx, "%s", (const char *)sqlite3_column_text(s, 1));
        snprintf(q, sizeof q, "PRAGMA index_info(\"%s\")", idx);
        sqlite3_stmt *s2;
        sqlite3_prepare_v2(src, q, -1, &s2, NULL);
        int nidx = 0, only_id = 0;
        while (sqlite3_step(s2) == SQLITE_ROW) {
            const char *cn = (const char *)sqlite3_column_text(s2, 2);
            nidx++;
            if (cn && !strcmp(cn, "id")) only_id = 1;
            for (int i = 0; cn && i < t->ncol; i++)
                if (!strcmp(t->cols[i].name, cn)) t->cols[i].unique = 1;
        }
        if (nidx == 1 && only_id) t->has_id_unique = 1;
        sqlite3_finalize(s2);
    }
    sqlite3_finalize(s);
    for (int i = 0; i < t->ncol; i++) {
        if (t->cols[i].pk) t->cols[i].unique = 1;
        if (t->cols[i].pk && npk == 1 && !strcmp(t->cols[i].name, "id")) t->has_id_unique = 1;
    }
    /* Template: the newest row the library wrote. */
    snprintf(sql, sizeof sql, "SELECT * FROM \"%s\" ORDER BY rowid DESC LIMIT 1", name);
    if (sqlite3_prepare_v2(src, sql, -1, &s, NULL) != SQLITE_OK) {
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\" LIMIT 1", name);
        if (sqlite3_prepare_v2(src, sql, -1, &s, NULL) != SQLITE_OK) die("%s", sqlite3_errmsg(src));
    }
    int have = sqlite3_step(s) == SQLITE_ROW;
    for (int i = 0; i < t->ncol; i++) {
        col_t *c = &t->cols[i];
        c->tpl_type = have ? sqlite3_column_type(s, i) : SQLITE_NULL;
        if (c->tpl_type == SQLITE_INTEGER) c->tpl_int = sqlite3_column_int64(s, i);
        else if (c->tpl_type == SQLITE_FLOAT) c->tpl_real = sqlite3_column_double(s, i);
        else if (c->tpl_type == SQLITE_TEXT || c->tpl_type == SQLITE_BLOB) {
            const void *p = c->tpl_type == SQLITE_TEXT ? (const void *)sqlite3_column_text(s, i) : sqlite3_column_blob(s, i);
            c->tpl_len = sqlite3_column_bytes(s, i);
            c->tpl_bytes = malloc((size_t)c->tpl_len + 1);
            if (c->tpl_len) memcpy(c->tpl_bytes, p, (size_t)c->tpl_len);
            c->tpl_bytes[c->tpl_len] = 0;
        }
        c->role = assign_role(t, c);
        /* Columns the library leaves NULL stay NULL (view fields excepted: their
         * value depends on the record). */
        if (!t->is_view && c->tpl_type == SQLITE_NULL && !c->notnull && c->role != R_SEQ && c->role != R_KEY)
            c->role = R_NULL;
        if (c->ipk && c->role != R_SEQ) c->role = R_NULL; /* let SQLite assign the rowid */
    }
    sqlite3_finalize(s);
}

static void print_mapping(const table_t *t) {
    printf("  %-10s", t->name);
    int w = 12;
    for (int i = 0; i < t->ncol; i++) {
        const col_t *c = &t->cols[i];
        char item[256];
        if (c->role == R_TPL) {
            if (c->tpl_type == SQLITE_TEXT)
                snprintf(item, sizeof item, "%s=tpl(text %d B%s)", c->name, c->tpl_len, c->unique ? ",uniq" : "");
            else if (c->tpl_type == SQLITE_BLOB)
                snprintf(item, sizeof item, "%s=tpl(blob %d B%s)", c->name, c->tpl_len, c->unique ? ",uniq" : "");
            else if (c->tpl_type == SQLITE_INTEGER)
                snprintf(item, sizeof item, "%s=tpl(%lld%s)", c->name, (long long)c->tpl_int, c->unique ? ",uniq" : "");
            else if (c->tpl_type == SQLITE_FLOAT)
                snprintf(item, sizeof item, "%s=tpl(%g)", c->name, c->tpl_real);
            else
                snprintf(item, sizeof item, "%s=tpl(NULL)", c->name);
        } else {
            snprintf(item, sizeof item, "%s=%s", c->name, ROLE_NAMES[c->role]);
        }
        int len = (int)strlen(item) + 1;
        if (w + len > 100) { printf("\n  %-10s", ""); w = 12; }
        printf(" %s", item);
        w += len;
    }
    printf("\n");
}

static int t_has_col(const table_t *t, const char *name) {
    for (int i = 0; i < t->ncol; i++)
        if (!strcmp(t->cols[i].name, name)) return 1;
    return 0;
}

static void prepare_table(sqlite3 *db, table_t *t) {
    size_t cap = 16384;
    char *sql = malloc(cap), *p = sql;
    p += sprintf(p, "INSERT INTO \"%s\"(", t->name);
    for (int i = 0; i < t->ncol; i++) p += sprintf(p, "%s\"%s\"", i ? "," : "", t->cols[i].name);
    p += sprintf(p, ") VALUES(");
    for (int i = 0; i < t->ncol; i++) p += sprintf(p, "%s?%d", i ? "," : "", i + 1);
    p += sprintf(p, ")");
    if (t->is_view && t->has_id_unique) {
        p += sprintf(p, " ON CONFLICT(\"id\") DO UPDATE SET ");
        int first = 1;
        for (int i = 0; i < t->ncol; i++) {
            if (!strcmp(t->cols[i].name, "id")) continue;
            p += sprintf(p, "%s\"%s\"=excluded.\"%s\"", first ? "" : ",", t->cols[i].name, t->cols[i].name);
            first = 0;
        }
    }
    t->write = xprep(db, sql);
    if (t->is_view && !t->has_id_unique) {
        if (!t_has_col(t, "id")) die("view table %s has no id column", t->name);
        p = sql;
        p += sprintf(p, "UPDATE \"%s\" SET ", t->name);
        int first = 1;
        for (int i = 0; i < t->ncol; i++) {
            if (!strcmp(t->cols[i].name, "id")) continue;
            p += sprintf(p, "%s\"%s\"=?%d", first ? "" : ",", t->cols[i].name, i + 1);
            first = 0;
        }
        int idn = 0;
        for (int i = 0; i < t->ncol; i++)
            if (!strcmp(t->cols[i].name, "id")) idn = i + 1;
        p += sprintf(p, " WHERE \"id\"=?%d", idn);
        t->update = xprep(db, sql);
    }
    free(sql);
}

/* ------------------------------------------------------------------------ */
/* Baseline side: values                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    sqlite3_int64 seq;
    char rec_id[32];
    const char *action;
    char actor[16];
    sqlite3_int64 time_ms, hlc;
    char ops[192];
    char input[96];
    char key[64];
    char keys[80];
    char hash[65], prev_hash[65];
    /* view row */
    const char *status;
    char site[16];
    sqlite3_int64 picked;
    char tags[160];
    int has_tags;
} vals_t;

static void hex64(char *out) {
    static const char H[] = "0123456789abcdef";
    for (int i = 0; i < 64; i += 16) {
        uint64_t r = rng();
        for (int j = 0; j < 16; j++) out[i + j] = H[(r >> (4 * j)) & 15];
    }
    out[64] = 0;
}

static void bind_text_or_coerce(sqlite3_stmt *s, int i, const col_t *c, const char *txt) {
    if (c->tpl_type == SQLITE_BLOB && c->tpl_len > 0) {
        /* Stored as a blob by the library (e.g. a raw 32-byte hash): same size. */
        char buf[512];
        int n = c->tpl_len < (int)sizeof buf ? c->tpl_len : (int)sizeof buf;
        for (int k = 0; k < n; k++) buf[k] = txt[k % (strlen(txt) ? strlen(txt) : 1)];
        sqlite3_bind_blob(s, i, buf, n, SQLITE_TRANSIENT);
    } else {
        sqlite3_bind_text(s, i, txt, -1, SQLITE_TRANSIENT);
    }
}

static void bind_int_or_coerce(sqlite3_stmt *s, int i, const col_t *c, sqlite3_int64 v) {
    if (c->tpl_type == SQLITE_TEXT) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)v);
        sqlite3_bind_text(s, i, buf, -1, SQLITE_TRANSIENT);
    } else {
        sqlite3_bind_int64(s, i, v);
    }
}

static void bind_tpl(sqlite3_stmt *s, int i, const col_t *c, sqlite3_int64 seq) {
    switch (c->tpl_type) {
    case SQLITE_INTEGER:
        sqlite3_bind_int64(s, i, c->unique ? seq : c->tpl_int);
        break;
    case SQLITE_FLOAT:
        sqlite3_bind_double(s, i, c->tpl_real);
        break;
    case SQLITE_TEXT:
    case SQLITE_BLOB: {
        char *b = malloc((size_t)c->tpl_len + 32);
        memcpy(b, c->tpl_bytes, (size_t)c->tpl_len + 1);
        int n = c->tpl_len;
        if (c->unique) n = snprintf(b, (size_t)c->tpl_len + 32, "%.*s~%lld", c->tpl_len > 8 ? c->tpl_len - 8 : 0, c->tpl_bytes, (long long)seq);
        if (c->tpl_type == SQLITE_TEXT) sqlite3_bind_text(s, i, b, n, SQLITE_TRANSIENT);
        else sqlite3_bind_blob(s, i, b, n, SQLITE_TRANSIENT);
        free(b);
        break;
    }
    default:
        if (c->notnull) sqlite3_bind_int64(s, i, c->unique ? seq : 0);
        else sqlite3_bind_null(s, i);
    }
}

static void bind_row(sqlite3_stmt *s, const table_t *t, const vals_t *v) {
    for (int k = 0; k < t->ncol; k++) {
        const col_t *c = &t->cols[k];
        int i = k + 1;
        switch (c->role) {
        case R_NULL: sqlite3_bind_null(s, i); break;
        case R_TPL: bind_tpl(s, i, c, v->seq); break;
        case R_SEQ: bind_int_or_coerce(s, i, c, v->seq); break;
        case R_RECID: bind_text_or_coerce(s, i, c, v->rec_id); break;
        case R_TYPE: bind_text_or_coerce(s, i, c, VIEW_TABLE); break;
        case R_ACTION: bind_text_or_coerce(s, i, c, v->action); break;
        case R_ACTOR: bind_text_or_coerce(s, i, c, v->actor); break;
        case R_DEVICE: bind_text_or_coerce(s, i, c, DEVICE_ID); break;
        case R_TIME: bind_int_or_coerce(s, i, c, v->time_ms); break;
        case R_HLC: bind_int_or_coerce(s, i, c, v->hlc); break;
        case R_OPS: bind_text_or_coerce(s, i, c, v->ops); break;
        case R_INPUT: bind_text_or_coerce(s, i, c, v->input); break;
        case R_KEY: bind_text_or_coerce(s, i, c, v->key); break;
        case R_KEYS: bind_text_or_coerce(s, i, c, v->keys); break;
        case R_HASH: bind_text_or_coerce(s, i, c, v->hash); break;
        case R_PREV_HASH: bind_text_or_coerce(s, i, c, v->prev_hash); break;
        case R_STATUS: sqlite3_bind_text(s, i, v->status, -1, SQLITE_STATIC); break;
        case R_SITE: sqlite3_bind_text(s, i, v->site, -1, SQLITE_STATIC); break;
        case R_PICKED:
            if (v->picked == 0 && c->tpl_type == SQLITE_NULL) sqlite3_bind_null(s, i);
            else sqlite3_bind_int64(s, i, v->picked);
            break;
        case R_TAGS:
            if (v->has_tags) sqlite3_bind_text(s, i, v->tags, -1, SQLITE_STATIC);
            else bind_tpl(s, i, c, v->seq); /* whatever the library stores for an empty set */
            break;
        }
    }
}

typedef struct {
    sqlite3 *db;
    table_t view, outbox, audit;
    sqlite3_stmt *begin, *commit;
    rec_state_t *recs;
    long nrecs;
    sqlite3_int64 seq, last_hlc;
    char prev_hash[65];
} baseline_t;

/* Computes every value of one action's three rows (outside the timer). */
static void bl_values(baseline_t *b, const action_t *a, long i, vals_t *v) {
    rec_state_t *r = &b->recs[a->rec];
    v->seq = ++b->seq;
    rec_id(v->rec_id, sizeof v->rec_id, a->rec);
    snprintf(v->actor, sizeof v->actor, "op-%02d", a->actor);
    v->time_ms = wall_ms();
    sqlite3_int64 h = v->time_ms << 16;
    v->hlc = h > b->last_hlc ? h : b->last_hlc + 1;
    b->last_hlc = v->hlc;
    input_json(v->input, sizeof v->input, i);
    snprintf(v->key, sizeof v->key, DEVICE_ID "-%lld", (long long)v->seq);
    snprintf(v->keys, sizeof v->keys, "[\"%s\"]", v->key);
    memcpy(v->prev_hash, b->prev_hash, 65);
    hex64(v->hash);
    memcpy(b->prev_hash, v->hash, 65);
    switch (a->kind) {
    case K_UPDATE:
        v->action = "pick_item";
        r->status = a->status;
        r->picked += 1;
        snprintf(v->ops, sizeof v->ops, "{\"inc\":{\"picked\":1},\"set\":{\"status\":\"%s\"}}", STATUSES[a->status]);
        break;
    case K_CREATE:
        v->action = "create_task";
        r->status = 0;
        r->site = a->site;
        r->picked = 0;
        r->tags = 0;
        if (a->rec >= b->nrecs) b->nrecs = a->rec + 1;
        snprintf(v->ops, sizeof v->ops, "{\"set\":{\"site\":\"site-%02d\",\"status\":\"open\"}}", a->site);
        break;
    default:
        v->action = "tag_task";
        r->tags |= (uint16_t)(1u << a->tag);
        snprintf(v->ops, sizeof v->ops, "{\"add\":{\"tags\":[\"tag-%02d\"]}}", a->tag);
        break;
    }
    v->status = STATUSES[r->status];
    snprintf(v->site, sizeof v->site, "site-%02d", r->site);
    v->picked = r->picked;
    v->has_tags = r->tags != 0;
    char *p = v->tags;
    *p++ = '[';
    for (int k = 0; k < N_TAGS; k++)
        if (r->tags & (1u << k)) p += sprintf(p, "%s\"tag-%02d\"", p[-1] == '[' ? "" : ",", k);
    *p++ = ']';
    *p = 0;
}

static void step_done(sqlite3 *db, sqlite3_stmt *s) {
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) die("step: %s", sqlite3_errmsg(db));
    sqlite3_reset(s);
}

/* The three writes (no transaction control). */
static void bl_write(baseline_t *b, const vals_t *v) {
    if (b->view.update) { /* `id` not unique in the library's table: UPDATE, else INSERT */
        bind_row(b->view.update, &b->view, v);
        step_done(b->db, b->view.update);
        if (sqlite3_changes(b->db) == 0) {
            bind_row(b->view.write, &b->view, v);
            step_done(b->db, b->view.write);
        }
    } else {
        bind_row(b->view.write, &b->view, v);
        step_done(b->db, b->view.write);
    }
    bind_row(b->outbox.write, &b->outbox, v);
    step_done(b->db, b->outbox.write);
    bind_row(b->audit.write, &b->audit, v);
    step_done(b->db, b->audit.write);
}

static sqlite3 *bl_open(const char *path, const char *sync) {
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) die("open %s", path);
    xexec(db, "PRAGMA journal_mode=WAL");
    char q[64];
    snprintf(q, sizeof q, "PRAGMA synchronous=%s", sync);
    xexec(db, q);
    return db;
}

static const char *find_table(sqlite3 *src, const char *exact, const char *like, char *buf, size_t n) {
    sqlite3_stmt *s;
    sqlite3_prepare_v2(src, "SELECT name FROM sqlite_master WHERE type='table' AND (name=?1 OR name LIKE ?2) "
                            "ORDER BY name<>?1, length(name) LIMIT 1", -1, &s, NULL);
    sqlite3_bind_text(s, 1, exact, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, like, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_ROW) die("no table like %s in the fieldsync store", exact);
    snprintf(buf, n, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return buf;
}

static void bl_init_tables(baseline_t *b, sqlite3 *src) {
    char n1[128], n2[128];
    discover_table(src, &b->view, VIEW_TABLE, 1);
    discover_table(src, &b->outbox, find_table(src, "fs_outbox", "fs_outbox%", n1, sizeof n1), 0);
    discover_table(src, &b->audit, find_table(src, "fs_audit", "fs_audit%", n2, sizeof n2), 0);
}

/* Creates the baseline file with the library's DDL and preloads it. */
static void bl_create(const char *fs_path, const char *path, baseline_t *proto) {
    sqlite3 *src;
    if (sqlite3_open_v2(fs_path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) die("open %s", fs_path);
    int page_size = 4096, auto_vacuum = 0;
    sqlite3_stmt *s;
    sqlite3_prepare_v2(src, "PRAGMA page_size", -1, &s, NULL);
    if (sqlite3_step(s) == SQLITE_ROW) page_size = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_prepare_v2(src, "PRAGMA auto_vacuum", -1, &s, NULL);
    if (sqlite3_step(s) == SQLITE_ROW) auto_vacuum = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);

    remove_db(path);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) die("open %s", path);
    char q[128];
    snprintf(q, sizeof q, "PRAGMA page_size=%d", page_size);
    xexec(db, q);
    snprintf(q, sizeof q, "PRAGMA auto_vacuum=%d", auto_vacuum);
    xexec(db, q);
    xexec(db, "PRAGMA journal_mode=WAL");
    xexec(db, "PRAGMA synchronous=NORMAL");
    sqlite3_prepare_v2(src,
                       "SELECT type, name, sql FROM sqlite_master WHERE sql NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                       "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, rowid",
                       -1, &s, NULL);
    int ntab = 0, nidx = 0, nother = 0;
    xexec(db, "BEGIN");
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(s, 0);
        const char *sql = (const char *)sqlite3_column_text(s, 2);
        char *err = NULL;
        if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
            fprintf(stderr, "  (baseline DDL skipped: %s: %s)\n", err, sql);
            sqlite3_free(err);
            continue;
        }
        if (!strcmp(type, "table")) ntab++;
        else if (!strcmp(type, "index")) nidx++;
        else nother++;
    }
    sqlite3_finalize(s);
    xexec(db, "COMMIT");
    printf("baseline schema: copied %d tables, %d indexes, %d other (page_size %d, auto_vacuum %d)\n",
           ntab, nidx, nother, page_size, auto_vacuum);

    bl_init_tables(proto, src);
    sqlite3_close(src);
    printf("baseline column mapping (role, or tpl = value like the library's newest row):\n");
    print_mapping(&proto->view);
    print_mapping(&proto->outbox);
    print_mapping(&proto->audit);

    /* Preload: one create per record, in transactions of 10,000 actions. */
    baseline_t *b = proto;
    b->db = db;
    prepare_table(db, &b->view);
    prepare_table(db, &b->outbox);
    prepare_table(db, &b->audit);
    b->recs = calloc((size_t)(g_records + g_actions + 1), sizeof *b->recs);
    b->nrecs = 0;
    b->seq = 0;
    b->last_hlc = 0;
    memset(b->prev_hash, '0', 64);
    b->prev_hash[64] = 0;
    vals_t v;
    xexec(db, "BEGIN");
    for (long r = 0; r < g_records; r++) {
        action_t a = {K_CREATE, (int32_t)r, 0, 0, (int8_t)(r % N_SITES), (int8_t)(r % N_ACTORS)};
        bl_values(b, &a, r, &v);
        bl_write(b, &v);
        if ((r + 1) % 10000 == 0) { xexec(db, "COMMIT"); xexec(db, "BEGIN"); }
    }
    xexec(db, "COMMIT");
    sqlite3_stmt *st[] = {b->view.write, b->view.update, b->outbox.write, b->audit.write};
    for (size_t k = 0; k < sizeof st / sizeof st[0]; k++) sqlite3_finalize(st[k]);
    b->view.write = b->view.update = b->outbox.write = b->audit.write = NULL;
    xexec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(db);
    b->db = NULL;
}

static long long count_rows(sqlite3 *db, const char *table) {
    char q[256];
    snprintf(q, sizeof q, "SELECT count(*) FROM \"%s\"", table);
    sqlite3_stmt *s;
    long long n = -1;
    if (sqlite3_prepare_v2(db, q, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

/* A measured baseline run: its own copy of the state after preload (records,
 * seq, hash), the database opened with the measured synchronous setting, the
 * statements prepared, and every action's values computed beforehand (outside
 * the timer). bl_run_open / bl_run_range / bl_run_close, like fs_run_*. */
typedef struct {
    baseline_t b;
    vals_t *vals;
} bl_run_t;

static void bl_run_open(bl_run_t *r, const char *path, const char *sync, const baseline_t *proto, const action_t *plan) {
    baseline_t *b = &r->b;
    *b = *proto;
    b->recs = malloc(sizeof *b->recs * (size_t)(g_records + g_actions + 1));
    memcpy(b->recs, proto->recs, sizeof *b->recs * (size_t)(g_records + g_actions + 1));
    b->db = bl_open(path, sync);
    prepare_table(b->db, &b->view);
    prepare_table(b->db, &b->outbox);
    prepare_table(b->db, &b->audit);
    b->begin = xprep(b->db, "BEGIN IMMEDIATE");
    b->commit = xprep(b->db, "COMMIT");
    r->vals = malloc(sizeof *r->vals * (size_t)g_actions);
    for (long i = 0; i < g_actions; i++) bl_values(b, &plan[i], g_records + i, &r->vals[i]);
}

/* Runs plan actions [from, to), one transaction each, each timed individually;
 * fills ns[from..to). */
static void bl_run_range(bl_run_t *r, long from, long to, int64_t *ns) {
    baseline_t *b = &r->b;
    for (long i = from; i < to; i++) {
        int64_t t0 = now_ns();
        step_done(b->db, b->begin);
        bl_write(b, &r->vals[i]);
        step_done(b->db, b->commit);
        int64_t t1 = now_ns();
        ns[i] = t1 - t0;
    }
}

/* Counts the rows, then closes the database. */
static void bl_run_close(bl_run_t *r, long long *out_view, long long *out_outbox, long long *out_audit) {
    baseline_t *b = &r->b;
    *out_view = count_rows(b->db, b->view.name);
    *out_outbox = count_rows(b->db, b->outbox.name);
    *out_audit = count_rows(b->db, b->audit.name);
    sqlite3_stmt *st[] = {b->view.write, b->view.update, b->outbox.write, b->audit.write, b->begin, b->commit};
    for (size_t k = 0; k < sizeof st / sizeof st[0]; k++) sqlite3_finalize(st[k]);
    sqlite3_close(b->db);
    b->db = NULL;
    free(r->vals);
    free(b->recs);
    r->vals = NULL;
    b->recs = NULL;
}

/* ------------------------------------------------------------------------ */
/* Library size, machine                                                    */
/* ------------------------------------------------------------------------ */

static int loaded_lib_path(char *out, size_t n) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 0;
    char line[PATH_MAX + 256];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = strchr(line, '/');
        if (p && strstr(p, "libfieldsync")) {
            p[strcspn(p, "\n")] = 0;
            snprintf(out, n, "%s", p);
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

static void print_lib_size(const char *dir) {
    char path[PATH_MAX], real[PATH_MAX], tmp[PATH_MAX + 32], cmd[2 * PATH_MAX + 64];
    if (g_lib_opt) snprintf(path, sizeof path, "%s", g_lib_opt);
    else if (!loaded_lib_path(path, sizeof path)) { printf("library size: libfieldsync not found in /proc/self/maps\n"); return; }
    if (!realpath(path, real)) snprintf(real, sizeof real, "%s", path);
    snprintf(tmp, sizeof tmp, "%s/libfieldsync.stripped.so", dir);
    copy_file(real, tmp);
    snprintf(cmd, sizeof cmd, "strip --strip-unneeded '%s'", tmp);
    int rc = system(cmd);
    long long un = file_size(real), st = rc == 0 ? file_size(tmp) : -1;
    struct stat lst;
    char mt[64] = "?";
    if (stat(real, &lst) == 0) strftime(mt, sizeof mt, "%Y-%m-%d %H:%M:%S %Z", localtime(&lst.st_mtime));
    printf("library: %s (modified %s)\n", real, mt);
    printf("  unstripped size:               %10lld bytes (%.2f MiB)\n", un, un / 1048576.0);
    if (st >= 0) printf("  strip --strip-unneeded size:   %10lld bytes (%.2f MiB)\n", st, st / 1048576.0);
    else printf("  strip --strip-unneeded failed (rc %d)\n", rc);
    unlink(tmp);
}

static void print_machine(const char *dir) {
    char model[256] = "?", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10)) {
                char *p = strchr(line, ':');
                if (p) {
                    p++;
                    while (*p == ' ') p++;
                    p[strcspn(p, "\n")] = 0;
                    snprintf(model, sizeof model, "%s", p);
                }
                break;
            }
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
    printf("machine: nproc %ld, CPU %s, %s %s %s\n", sysconf(_SC_NPROCESSORS_ONLN), model, u.sysname, u.release, u.machine);
    printf("date:    %s\n", date);
    printf("libfieldsync %s (ABI %d), SQLite %s, jansson %s\n", fs_version(), (int)fs_abi_version(),
           sqlite3_libversion(), JANSSON_VERSION);
    printf("files:   %s (%s)\n", dir, fs_type_name(dir));
}

/* ------------------------------------------------------------------------ */

static void usage(void) {
    fprintf(stderr, "usage: apply_latency [--records N] [--actions N] [--durability normal|full|both] "
                    "[--dir DIR] [--keep] [--lib PATH] [--chunk N]\n"
                    "  --chunk N  interleave fieldsync and baseline in chunks of N actions (default 100);\n"
                    "             0 = all fieldsync actions, then all baseline actions (the old order)\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--records") && i + 1 < argc) g_records = atol(argv[++i]);
        else if (!strcmp(a, "--actions") && i + 1 < argc) g_actions = atol(argv[++i]);
        else if (!strcmp(a, "--durability") && i + 1 < argc) {
            const char *d = argv[++i];
            g_do_normal = !strcmp(d, "normal") || !strcmp(d, "both");
            g_do_full = !strcmp(d, "full") || !strcmp(d, "both");
            if (!g_do_normal && !g_do_full) usage();
        } else if (!strcmp(a, "--dir") && i + 1 < argc) g_dir_opt = argv[++i];
        else if (!strcmp(a, "--keep")) g_keep = 1;
        else if (!strcmp(a, "--lib") && i + 1 < argc) g_lib_opt = argv[++i];
        else if (!strcmp(a, "--chunk") && i + 1 < argc) {
            char *end;
            errno = 0;
            g_chunk = strtol(argv[++i], &end, 10);
            if (errno || end == argv[i] || *end || g_chunk < 0) usage();
        }
        else usage();
    }
    if (g_records < 1 || g_actions < 1 || g_records > 9000000 || g_actions > 9000000) usage();
    setvbuf(stdout, NULL, _IOLBF, 0);

    char dir[PATH_MAX];
    if (g_dir_opt) {
        snprintf(dir, sizeof dir, "%s", g_dir_opt);
        mkdir(dir, 0700);
    } else {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/fieldsync-bench-XXXXXX", t && *t ? t : "/var/tmp");
        if (!mkdtemp(dir)) die("mkdtemp %s: %s", dir, strerror(errno));
    }

    printf("== fieldsync apply latency (Benchmarks/apply_latency.c) ==\n");
    print_machine(dir);
    print_lib_size(dir);
    printf("workload: %ld preloaded records, %ld timed actions (50%% update set+inc, 25%% create, 25%% add tag)\n",
           g_records, g_actions);

    /* Deterministic plan, identical for both engines. */
    action_t *plan = malloc(sizeof *plan * (size_t)g_actions);
    long nrec = g_records;
    rng_state = 0x5DEECE66Dull;
    for (long i = 0; i < g_actions; i++) {
        uint64_t r = rng();
        action_t *a = &plan[i];
        memset(a, 0, sizeof *a);
        a->actor = (int8_t)(rng() % N_ACTORS);
        switch (r % 4) {
        case 0: case 1:
            a->kind = K_UPDATE;
            a->rec = (int32_t)(rng() % (uint64_t)nrec);
            a->status = (int8_t)(rng() % N_STATUS);
            break;
        case 2:
            a->kind = K_CREATE;
            a->rec = (int32_t)nrec++;
            a->site = (int8_t)(rng() % N_SITES);
            break;
        default:
            a->kind = K_TAG;
            a->rec = (int32_t)(rng() % (uint64_t)nrec);
            a->tag = (int8_t)(rng() % N_TAGS);
            break;
        }
    }
    long nkind[N_KINDS] = {0};
    for (long i = 0; i < g_actions; i++) nkind[plan[i].kind]++;
    printf("plan: %ld updates, %ld creates, %ld add-tags\n", nkind[0], nkind[1], nkind[2]);
    if (g_chunk > 0)
        printf("runs: interleaved in chunks of %ld actions (fieldsync then baseline, same plan indices; "
               "both files open at once)\n", g_chunk);
    else
        printf("runs: not interleaved (--chunk 0): all %ld fieldsync actions, then all %ld baseline actions\n",
               g_actions, g_actions);

    char fs_pre[PATH_MAX + 32], bl_pre[PATH_MAX + 32], fs_run_p[PATH_MAX + 32], bl_run_p[PATH_MAX + 32];
    snprintf(fs_pre, sizeof fs_pre, "%s/fieldsync-preload.db", dir);
    snprintf(bl_pre, sizeof bl_pre, "%s/baseline-preload.db", dir);
    remove_db(fs_pre);

    int64_t t0 = now_ns();
    fs_preload(fs_pre);
    double fs_pre_s = (now_ns() - t0) / 1e9;
    printf("preload fieldsync: %ld fs_store_apply (durability normal) in %.2f s (%.1f us/action), file %.1f MiB\n",
           g_records, fs_pre_s, fs_pre_s * 1e6 / g_records, file_size(fs_pre) / 1048576.0);

    baseline_t proto;
    memset(&proto, 0, sizeof proto);
    rng_state = 0xC0FFEEull;
    t0 = now_ns();
    bl_create(fs_pre, bl_pre, &proto);
    double bl_pre_s = (now_ns() - t0) / 1e9;
    printf("preload baseline:  %ld actions in transactions of 10,000 in %.2f s, file %.1f MiB\n",
           g_records, bl_pre_s, file_size(bl_pre) / 1048576.0);

    int64_t *fs_ns = malloc(sizeof *fs_ns * (size_t)g_actions);
    int64_t *bl_ns = malloc(sizeof *bl_ns * (size_t)g_actions);
    stats_t res[2][2]; /* [durability][fs, baseline] */
    stats_t kres[2][2][N_KINDS];
    int ran[2] = {0, 0};
    const char *dnames[2] = {"normal", "full"};
    const char *syncs[2] = {"NORMAL", "FULL"};
    int ok = 1;
    for (int d = 0; d < 2; d++) {
        if ((d == 0 && !g_do_normal) || (d == 1 && !g_do_full)) continue;
        snprintf(fs_run_p, sizeof fs_run_p, "%s/fieldsync-%s.db", dir, dnames[d]);
        snprintf(bl_run_p, sizeof bl_run_p, "%s/baseline-%s.db", dir, dnames[d]);
        copy_db(fs_pre, fs_run_p);
        copy_db(bl_pre, bl_run_p);
        sync();

        long long fr, fa, fo, bv, bo, ba;
        fs_run_t fsr;
        bl_run_t blr;
        if (g_chunk == 0) { /* the old order: all fieldsync, then all baseline */
            fs_run_open(&fsr, fs_run_p, dnames[d], plan);
            fs_run_range(&fsr, 0, g_actions, fs_ns);
            fs_run_close(&fsr, &fr, &fa, &fo);
            rng_state = 0xBADC0DEull;
            bl_run_open(&blr, bl_run_p, syncs[d], &proto, plan);
            bl_run_range(&blr, 0, g_actions, bl_ns);
            bl_run_close(&blr, &bv, &bo, &ba);
        } else { /* both open; the same plan indices in alternating chunks */
            fs_run_open(&fsr, fs_run_p, dnames[d], plan);
            rng_state = 0xBADC0DEull;
            bl_run_open(&blr, bl_run_p, syncs[d], &proto, plan);
            for (long from = 0; from < g_actions; from += g_chunk) {
                long to = g_actions - from > g_chunk ? from + g_chunk : g_actions;
                fs_run_range(&fsr, from, to, fs_ns);
                bl_run_range(&blr, from, to, bl_ns);
            }
            fs_run_close(&fsr, &fr, &fa, &fo);
            bl_run_close(&blr, &bv, &bo, &ba);
        }
        res[d][0] = compute_stats(fs_ns, g_actions);
        res[d][1] = compute_stats(bl_ns, g_actions);
        for (int k = 0; k < N_KINDS; k++) {
            kres[d][0][k] = kind_stats(fs_ns, plan, g_actions, k);
            kres[d][1][k] = kind_stats(bl_ns, plan, g_actions, k);
        }
        ran[d] = 1;
        long long want_recs = g_records + nkind[K_CREATE], want_rows = g_records + g_actions;
        printf("[%s] fieldsync stats: records %lld, outbox_pending %lld, audit_rows %lld | "
               "baseline rows: %s %lld, outbox %lld, audit %lld | expected %lld records, %lld outbox/audit\n",
               dnames[d], fr, fo, fa, proto.view.name, bv, bo, ba, want_recs, want_rows);
        if ((fr >= 0 && fr != want_recs) || (fa >= 0 && fa != want_rows) || (fo >= 0 && fo != want_rows) ||
            bv != want_recs || bo != want_rows || ba != want_rows) {
            printf("  WARNING: counts differ from expectation\n");
            ok = 0;
        }
        if (!g_keep) { remove_db(fs_run_p); remove_db(bl_run_p); }
    }

    printf("\nlatency per action, microseconds (%ld actions each; ratio = fieldsync / baseline)\n", g_actions);
    printf("%-10s | %-33s | %-33s | %-9s %-9s\n", "", "fieldsync (fs_store_apply+fs_free)", "baseline (raw SQLite, 1 txn)", "ratio", "ratio");
    printf("%-10s | %7s %8s %8s %7s | %7s %8s %8s %7s | %-9s %-9s\n", "durability", "p50", "p99", "max", "mean",
           "p50", "p99", "max", "mean", "p50", "p99");
    printf("-----------+-----------------------------------+-----------------------------------+--------------------\n");
    for (int d = 0; d < 2; d++) {
        if (!ran[d]) continue;
        stats_t f = res[d][0], b = res[d][1];
        printf("%-10s | %7.1f %8.1f %8.1f %7.1f | %7.1f %8.1f %8.1f %7.1f | %-9.2f %-9.2f\n", dnames[d], f.p50, f.p99,
               f.max, f.mean, b.p50, b.p99, b.max, b.mean, f.p50 / b.p50, f.p99 / b.p99);
    }
    printf("\nby action kind, microseconds (fieldsync p50/p99 vs baseline p50/p99)\n");
    for (int d = 0; d < 2; d++) {
        if (!ran[d]) continue;
        for (int k = 0; k < N_KINDS; k++) {
            stats_t f = kres[d][0][k], b = kres[d][1][k];
            printf("  %-7s %-8s n=%-5ld fieldsync %7.1f / %8.1f   baseline %7.1f / %8.1f   p50 ratio %.2f\n",
                   dnames[d], KIND_NAMES[k], f.n, f.p50, f.p99, b.p50, b.p99, b.p50 > 0 ? f.p50 / b.p50 : 0);
        }
    }
    if (ran[0]) {
        stats_t f = res[0][0], b = res[0][1];
        double r = f.p50 / b.p50;
        printf("\ntarget (durability normal): p50 ratio <= 1.5: %s (%.2f); fieldsync p99 < 1 ms: %s (%.1f us)\n",
               r <= 1.5 ? "MET" : "NOT MET", r, f.p99 < 1000 ? "MET" : "NOT MET", f.p99);
    }
    if (!g_keep) {
        remove_db(fs_pre);
        remove_db(bl_pre);
        rmdir(dir);
    } else {
        printf("files kept in %s\n", dir);
    }
    free(plan);
    free(fs_ns);
    free(bl_ns);
    return ok ? 0 : 1;
}
