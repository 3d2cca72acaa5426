/*
 * fixture.c — shared helpers of the C suite (see fixture.h).
 */
#include "fixture.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

const char *const TASK_FIELDS[] = {"status", "site",    "picked", "weight", "urgent",
                                   "tags",   "on_hand", "locked", "lines"};

char fs_test_sentinel[1];

void free_out(char *p) {
    if (p != NULL && p != SENTINEL) fs_free(p);
}

/* A rotating pool so that helpers can return strings without the caller
 * freeing them; each slot is freed when it is reused. */
#define POOL 16
static __thread char *g_pool[POOL]; /* per thread: helpers run in workers too */
static __thread unsigned g_pool_next = 0;

static const char *pooled(char *s) {
    unsigned i = g_pool_next++ % POOL;
    free(g_pool[i]);
    g_pool[i] = s;
    return s;
}

void pool_release(void) {
    unsigned i;
    for (i = 0; i < POOL; i++) {
        free(g_pool[i]);
        g_pool[i] = NULL;
    }
}

char *strf(const char *fmt, ...) {
    va_list ap;
    int n;
    char *s;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    s = (char *)malloc((size_t)n + 1);
    if (s == NULL) abort();
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

const char *test_path(const char *name) {
    return pooled(strf("%s/%s", fs_test_dir(), name));
}

const char *Q(const char *single_quoted) {
    char *s = strf("%s", single_quoted);
    char *p;
    for (p = s; *p; p++)
        if (*p == '\'') *p = '"';
    return pooled(s);
}

const char *act(const char *id, const char *changes) {
    char *s = strf("{'action':'edit','actor':'op-1','type':'task','id':'%s',%s}", id, changes);
    char *p;
    for (p = s; *p; p++)
        if (*p == '\'') *p = '"';
    return pooled(s);
}

char *repeat_char(char c, size_t n) {
    char *s = (char *)malloc(n + 1);
    if (s == NULL) abort();
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    if (fwrite(data, 1, len, f) != len) {
        fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

json_t *take_json_at(const char *file, int line, char *s) {
    json_error_t err;
    json_t *v;
    if (s == NULL || s == SENTINEL) return NULL;
    v = json_loads(s, JSON_DECODE_ANY, &err);
    if (v == NULL)
        fs_test_fail(file, line, "library returned invalid JSON (%s): %.200s", err.text, s);
    fs_free(s);
    return v;
}

void open_refused_at(const char *file, int line, const char *const *options, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        fs_store *out = (fs_store *)SENTINEL;
        fs_status st = fs_store_open(test_path("refused.db"), TASK_SCHEMA, options[i], &out);
        if (st != FS_ERR_ARG)
            fs_test_fail(file, line, "options %s: %s (\"%s\"), expected FS_ERR_ARG", options[i],
                         fs_status_name(st), fs_last_error());
        if (st != FS_OK && out != NULL)
            fs_test_fail(file, line, "options %s: out_store not NULL after failure", options[i]);
        if (st == FS_OK && out != NULL && out != (fs_store *)SENTINEL) fs_store_close(out);
    }
}

fs_store *open_store_at(const char *file, int line, const char *name, const char *schema,
                        const char *options) {
    fs_store *s = NULL;
    fs_status st = fs_store_open(test_path(name), schema, options, &s);
    if (st != FS_OK) {
        fs_test_fail(file, line, "fs_store_open(%s) returned %s: \"%s\"", name, fs_status_name(st),
                     fs_last_error());
        return NULL;
    }
    if (s == NULL) fs_test_fail(file, line, "fs_store_open returned FS_OK and a NULL handle");
    return s;
}

json_t *apply_ok_at(const char *file, int line, fs_store *s, const char *action) {
    char *out = NULL;
    fs_status st = fs_store_apply(s, action, &out);
    if (st != FS_OK) {
        fs_test_fail(file, line, "fs_store_apply returned %s: \"%s\"\n      action: %.300s",
                     fs_status_name(st), fs_last_error(), action);
        return NULL;
    }
    if (out == NULL) {
        fs_test_fail(file, line, "fs_store_apply returned FS_OK and a NULL result");
        return NULL;
    }
    return take_json_at(file, line, out);
}

fs_status apply_status(fs_store *s, const char *action) {
    char *out = NULL;
    fs_status st = fs_store_apply(s, action, &out);
    /* fs_free() after a failure would replace the message we want to check. */
    if (st == FS_OK) fs_free(out);
    return st;
}

json_t *get_ok_at(const char *file, int line, fs_store *s, const char *type, const char *id) {
    char *out = NULL;
    fs_status st = fs_store_get(s, type, id, &out);
    if (st != FS_OK) {
        fs_test_fail(file, line, "fs_store_get(%s, %s) returned %s: \"%s\"", type, id,
                     fs_status_name(st), fs_last_error());
        return NULL;
    }
    return take_json_at(file, line, out);
}

typedef fs_status (*listing_fn)(fs_store *, const char *, char **);

/* The output of a call that returned `st`: its JSON if the call succeeded and
 * the JSON is an array (is_array) or an object; otherwise a failure and NULL.
 * Shared by the store's and the hub's listings and stats. */
static json_t *checked_at(const char *file, int line, const char *what, const char *arg,
                          fs_status st, char *out, int is_array) {
    json_t *v;
    if (st != FS_OK) {
        fs_test_fail(file, line, "%s(%s) returned %s: \"%s\"", what, arg ? arg : "",
                     fs_status_name(st), fs_last_error());
        return NULL;
    }
    v = take_json_at(file, line, out);
    if (v != NULL && (is_array ? !json_is_array(v) : !json_is_object(v))) {
        fs_test_fail(file, line, "%s did not return a JSON %s", what, is_array ? "array" : "object");
        json_decref(v);
        return NULL;
    }
    return v;
}

static json_t *listing_at(const char *file, int line, const char *what, listing_fn fn,
                          fs_store *s, const char *arg) {
    char *out = NULL;
    fs_status st = fn(s, arg, &out);
    return checked_at(file, line, what, arg, st, out, 1);
}

json_t *query_ok_at(const char *file, int line, fs_store *s, const char *query) {
    return listing_at(file, line, "fs_store_query", fs_store_query, s, query);
}
json_t *outbox_ok_at(const char *file, int line, fs_store *s, const char *filter) {
    return listing_at(file, line, "fs_outbox_list", fs_outbox_list, s, filter);
}
json_t *audit_ok_at(const char *file, int line, fs_store *s, const char *filter) {
    return listing_at(file, line, "fs_audit_query", fs_audit_query, s, filter);
}

json_t *stats_ok_at(const char *file, int line, fs_store *s) {
    char *out = NULL;
    fs_status st = fs_store_stats(s, &out);
    return checked_at(file, line, "fs_store_stats", NULL, st, out, 0);
}

int64_t outbox_count(fs_store *s) {
    int64_t n = 0;
    if (fs_outbox_count(s, &n) != FS_OK) return -1;
    return n;
}

long audit_count(fs_store *s) {
    char *out = NULL;
    json_t *v;
    long n;
    if (fs_audit_query(s, NULL, &out) != FS_OK) return -1;
    v = json_loads(out, 0, NULL);
    fs_free(out);
    n = json_is_array(v) ? (long)json_array_size(v) : -1;
    json_decref(v);
    return n;
}

long long jint(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

const char *jstr(json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}

char *jdump(json_t *v) {
    char *s;
    if (v == NULL) return strf("(null)");
    s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    return s ? s : strf("(unprintable)");
}

char *ids_of(json_t *rows) {
    size_t i, len = 1;
    char *s;
    for (i = 0; i < json_array_size(rows); i++) {
        const char *id = jstr(json_array_get(rows, i), "id");
        len += (id ? strlen(id) : 6) + 1;
    }
    s = (char *)calloc(len, 1);
    if (s == NULL) abort();
    for (i = 0; i < json_array_size(rows); i++) {
        const char *id = jstr(json_array_get(rows, i), "id");
        if (i > 0) strcat(s, ",");
        strcat(s, id ? id : "(none)");
    }
    return s;
}

static char *dump_call(listing_fn fn, fs_store *s, const char *arg) {
    char *out = NULL;
    json_t *v;
    char *text;
    if (fn(s, arg, &out) != FS_OK) return strf("(call failed: %s)", fs_last_error());
    v = json_loads(out, 0, NULL);
    fs_free(out);
    text = jdump(v);
    json_decref(v);
    return text;
}

void snap_take(fs_store *s, store_snap *snap) {
    snap->outbox = outbox_count(s);
    snap->audit = audit_count(s);
    snap->records = dump_call(fs_store_query, s, "{\"type\":\"task\"}");
    snap->outbox_list = dump_call(fs_outbox_list, s, NULL);
    snap->audit_list = dump_call(fs_audit_query, s, NULL);
}

void snap_check_at(const char *file, int line, fs_store *s, store_snap *snap) {
    store_snap now;
    snap_take(s, &now);
    if (now.outbox != snap->outbox)
        fs_test_fail(file, line, "outbox count changed from %lld to %lld", (long long)snap->outbox,
                     (long long)now.outbox);
    if (now.audit != snap->audit)
        fs_test_fail(file, line, "audit row count changed from %ld to %ld", snap->audit, now.audit);
    if (strcmp(now.records, snap->records) != 0)
        fs_test_fail(file, line, "records changed:\n      before %.400s\n      after  %.400s",
                     snap->records, now.records);
    if (strcmp(now.outbox_list, snap->outbox_list) != 0)
        fs_test_fail(file, line, "outbox changed:\n      before %.400s\n      after  %.400s",
                     snap->outbox_list, now.outbox_list);
    if (strcmp(now.audit_list, snap->audit_list) != 0)
        fs_test_fail(file, line, "audit trail changed:\n      before %.400s\n      after  %.400s",
                     snap->audit_list, now.audit_list);
    free(now.records);
    free(now.outbox_list);
    free(now.audit_list);
    free(snap->records);
    free(snap->outbox_list);
    free(snap->audit_list);
}

void create_task(fs_store *s, const char *id, const char *status) {
    char *action = strf("{\"action\":\"create\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"%s\","
                        "\"set\":{\"status\":\"%s\"}}",
                        id, status);
    json_t *r = apply_ok(s, action);
    json_decref(r);
    free(action);
}

/* ---- canonical JSON exactly as Python's json.dumps(sort_keys=True,
 * separators=(",", ":"), ensure_ascii=False) writes it (docs/AUDIT.md) ---- */

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *grown;
        while (b->len + n + 1 > cap) cap *= 2;
        grown = (char *)realloc(b->buf, cap);
        if (grown == NULL) abort();
        b->buf = grown;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Python's repr(float): the shortest digits that round-trip, fixed notation
 * for exponents -4..15 (with ".0" when integral), else d.ddde+XX. */
static void python_float(sbuf *b, double d) {
    char tmp[64], digits[32], out[64];
    int p, exp10 = 0, nd = 0, neg = d < 0 || (d == 0 && 1 / d < 0);
    const char *c;
    if (d == 0) {
        sb_str(b, neg ? "-0.0" : "0.0");
        return;
    }
    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    for (c = tmp; *c && *c != 'e'; c++)
        if (*c >= '0' && *c <= '9') digits[nd++] = *c;
    digits[nd] = '\0';
    if (*c == 'e') exp10 = atoi(c + 1);
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = '\0';
    out[0] = '\0';
    if (neg) strcat(out, "-");
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 >= 0) {
            int i;
            size_t o = strlen(out);
            for (i = 0; i <= exp10; i++) out[o++] = i < nd ? digits[i] : '0';
            out[o++] = '.';
            if (exp10 + 1 < nd) {
                for (i = exp10 + 1; i < nd; i++) out[o++] = digits[i];
            } else {
                out[o++] = '0';
            }
            out[o] = '\0';
        } else {
            int i;
            strcat(out, "0.");
            for (i = 0; i < -exp10 - 1; i++) strcat(out, "0");
            strcat(out, digits);
        }
    } else {
        size_t o = strlen(out);
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, (size_t)nd - 1);
            o += (size_t)nd - 1;
        }
        snprintf(out + o, sizeof out - o, "e%c%02d", exp10 < 0 ? '-' : '+',
                 exp10 < 0 ? -exp10 : exp10);
    }
    sb_str(b, out);
}

static void python_string(sbuf *b, const char *s, size_t n) {
    size_t i;
    sb_put(b, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        switch (ch) {
        case '"': sb_str(b, "\\\""); break;
        case '\\': sb_str(b, "\\\\"); break;
        case '\n': sb_str(b, "\\n"); break;
        case '\r': sb_str(b, "\\r"); break;
        case '\t': sb_str(b, "\\t"); break;
        case '\b': sb_str(b, "\\b"); break;
        case '\f': sb_str(b, "\\f"); break;
        default:
            if (ch < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", ch);
                sb_str(b, esc);
            } else {
                sb_put(b, (const char *)&s[i], 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

static int by_strcmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void python_json(sbuf *b, json_t *v) {
    size_t i;
    char num[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v), k = 0;
        const char **keys = (const char **)malloc((n ? n : 1) * sizeof *keys);
        const char *key;
        json_t *value;
        if (keys == NULL) abort();
        json_object_foreach(v, key, value) keys[k++] = key;
        qsort(keys, n, sizeof *keys, by_strcmp); /* UTF-8 byte order = code point order */
        sb_str(b, "{");
        for (i = 0; i < n; i++) {
            if (i) sb_str(b, ",");
            python_string(b, keys[i], strlen(keys[i]));
            sb_str(b, ":");
            python_json(b, json_object_get(v, keys[i]));
        }
        sb_str(b, "}");
        free(keys);
        break;
    }
    case JSON_ARRAY:
        sb_str(b, "[");
        for (i = 0; i < json_array_size(v); i++) {
            if (i) sb_str(b, ",");
            python_json(b, json_array_get(v, i));
        }
        sb_str(b, "]");
        break;
    case JSON_STRING:
        python_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        sb_str(b, num);
        break;
    case JSON_REAL:
        python_float(b, json_real_value(v));
        break;
    case JSON_TRUE: sb_str(b, "true"); break;
    case JSON_FALSE: sb_str(b, "false"); break;
    default: sb_str(b, "null"); break;
    }
}

char *canonical_json(json_t *v) {
    sbuf b = {NULL, 0, 0};
    sb_put(&b, "", 0);
    python_json(&b, v);
    return b.buf;
}

/* The members of an audit row its hash covers (docs/AUDIT.md). */
static const char *const hashed[] = {"action",      "actor", "audit_id", "device_id",
                                     "device_time", "hlc",   "id",       "input",
                                     "outbox_keys", "type"};

void audit_row_hash(json_t *row, const char *prev_hash, char out[65]) {
    json_t *subset = json_object();
    char *canonical, *material;
    size_t k;
    for (k = 0; k < sizeof hashed / sizeof hashed[0]; k++) {
        json_t *v = json_object_get(row, hashed[k]);
        json_object_set(subset, hashed[k], v ? v : json_null());
    }
    canonical = canonical_json(subset);
    json_decref(subset);
    material = strf("%s%s", prev_hash, canonical);
    sha256_hex(material, strlen(material), out);
    free(material);
    free(canonical);
}

/* report: record a failure for each problem (verify_audit_chain), or only
 * count them (audit_chain_problems, for a test that expects some). */
static int audit_chain_check(const char *file, int line, json_t *rows, int report) {
    char prev[65];
    size_t i, k;
    int problems = 0;
    memset(prev, '0', 64);
    prev[64] = '\0';
    for (i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        json_t *subset = json_object();
        char *canonical, *material, digest[65];
        const char *prev_hash = jstr(row, "prev_hash");
        const char *hash = jstr(row, "hash");
        for (k = 0; k < sizeof hashed / sizeof hashed[0]; k++) {
            json_t *v = json_object_get(row, hashed[k]);
            if (v == NULL) {
                if (report) fs_test_fail(file, line, "audit row %lld lacks \"%s\"", jint(row, "audit_id"),
                             hashed[k]);
                problems++;
                v = json_null();
                json_object_set_new(subset, hashed[k], v);
            } else {
                json_object_set(subset, hashed[k], v);
            }
        }
        canonical = canonical_json(subset);
        json_decref(subset);
        if (prev_hash == NULL || strcmp(prev_hash, prev) != 0) {
            if (report) fs_test_fail(file, line, "audit row %lld: prev_hash %s, expected %s",
                         jint(row, "audit_id"), prev_hash ? prev_hash : "(missing)", prev);
            problems++;
        }
        material = strf("%s%s", prev_hash ? prev_hash : "", canonical);
        sha256_hex(material, strlen(material), digest);
        if (hash == NULL || strcmp(hash, digest) != 0) {
            if (report) fs_test_fail(file, line,
                         "audit row %lld: hash %s does not recompute (expected %s over %s)",
                         jint(row, "audit_id"), hash ? hash : "(missing)", digest, material);
            problems++;
        }
        if (hash != NULL && strlen(hash) == 64) memcpy(prev, hash, 65);
        free(material);
        free(canonical);
    }
    return problems;
}

int verify_audit_chain_at(const char *file, int line, json_t *rows) { return audit_chain_check(file, line, rows, 1); }

int audit_chain_problems(json_t *rows) { return audit_chain_check(__FILE__, __LINE__, rows, 0); }

/* ---- the hub and the sync loop ---- */

fs_hub *open_hub_at(const char *file, int line, const char *name, const char *schema,
                    const char *options) {
    fs_hub *h = NULL;
    fs_status st = fs_hub_open(test_path(name), schema, options, &h);
    if (st != FS_OK) {
        fs_test_fail(file, line, "fs_hub_open(%s) returned %s: \"%s\"", name, fs_status_name(st),
                     fs_last_error());
        return NULL;
    }
    if (h == NULL) fs_test_fail(file, line, "fs_hub_open returned FS_OK and a NULL handle");
    return h;
}

fs_store *open_device_at(const char *file, int line, const char *device_id,
                         const char *more_options) {
    char *name = strf("%s.db", device_id);
    char *options = strf("{\"device_id\":\"%s\"%s%s}", device_id, more_options ? "," : "",
                         more_options ? more_options : "");
    fs_store *s = open_store_at(file, line, name, TASK_SCHEMA, options);
    free(name);
    free(options);
    return s;
}

typedef fs_status (*hub_listing_fn)(fs_hub *, const char *, char **);

static json_t *hub_listing_at(const char *file, int line, const char *what, hub_listing_fn fn,
                              fs_hub *h, const char *arg) {
    char *out = NULL;
    fs_status st = fn(h, arg, &out);
    return checked_at(file, line, what, arg, st, out, 1);
}

json_t *hub_query_ok_at(const char *file, int line, fs_hub *h, const char *query) {
    return hub_listing_at(file, line, "fs_hub_query", fs_hub_query, h, query);
}
json_t *hub_audit_ok_at(const char *file, int line, fs_hub *h, const char *filter) {
    return hub_listing_at(file, line, "fs_hub_audit_query", fs_hub_audit_query, h, filter);
}

json_t *hub_stats_ok_at(const char *file, int line, fs_hub *h) {
    char *out = NULL;
    fs_status st = fs_hub_stats(h, &out);
    return checked_at(file, line, "fs_hub_stats", NULL, st, out, 0);
}

char *prepare_ok_at(const char *file, int line, fs_store *s) {
    char *request = NULL;
    int64_t wait = -2;
    fs_status st = fs_sync_prepare(s, &request, &wait);
    if (st != FS_OK) {
        fs_test_fail(file, line, "fs_sync_prepare returned %s: \"%s\"", fs_status_name(st),
                     fs_last_error());
        return NULL;
    }
    if (request == NULL) {
        fs_test_fail(file, line, "fs_sync_prepare gave no request (wait %lld)", (long long)wait);
        return NULL;
    }
    if (wait != 0)
        fs_test_fail(file, line, "fs_sync_prepare gave a request with wait %lld, expected 0",
                     (long long)wait);
    return request;
}

char *handle_ok_at(const char *file, int line, fs_hub *h, const char *request) {
    char *response = NULL;
    fs_status st = fs_hub_handle(h, request, &response);
    if (st != FS_OK) {
        fs_test_fail(file, line, "fs_hub_handle returned %s: \"%s\"\n      request: %.300s",
                     fs_status_name(st), fs_last_error(), request ? request : "(null)");
        return NULL;
    }
    if (response == NULL) fs_test_fail(file, line, "fs_hub_handle returned FS_OK and no response");
    return response;
}

json_t *receive_ok_at(const char *file, int line, fs_store *s, const char *response) {
    char *summary = NULL;
    json_t *v;
    fs_status st = fs_sync_receive(s, response, &summary);
    if (st != FS_OK) {
        fs_test_fail(file, line, "fs_sync_receive returned %s: \"%s\"\n      response: %.300s",
                     fs_status_name(st), fs_last_error(), response ? response : "(null)");
        return NULL;
    }
    v = take_json_at(file, line, summary);
    if (v != NULL && !json_is_object(v)) {
        fs_test_fail(file, line, "fs_sync_receive's summary is not a JSON object");
        json_decref(v);
        return NULL;
    }
    return v;
}

int enroll_at(const char *file, int line, fs_store *s, fs_hub *h, const char *extra) {
    json_t *stats = stats_ok_at(file, line, s);
    char *enrollment, *result = NULL;
    json_t *r;
    fs_status st;
    if (stats == NULL) return -1;
    enrollment = strf("{\"device_id\":\"%s\",\"public_key\":\"%s\",\"instance\":\"%s\"%s%s}",
                      jstr(stats, "device_id"), jstr(stats, "public_key"), jstr(stats, "instance_id"),
                      extra ? "," : "", extra ? extra : "");
    json_decref(stats);
    st = fs_hub_enroll(h, enrollment, &result);
    free(enrollment);
    if (st != FS_OK) {
        fs_test_fail(file, line, "fs_hub_enroll returned %s: \"%s\"", fs_status_name(st), fs_last_error());
        return -1;
    }
    r = take_json_at(file, line, result);
    st = r ? fs_store_pin_hub(s, jstr(r, "hub_key")) : FS_ERR_ARG;
    json_decref(r);
    if (st != FS_OK) {
        fs_test_fail(file, line, "fs_store_pin_hub returned %s: \"%s\"", fs_status_name(st), fs_last_error());
        return -1;
    }
    return 0;
}

/* Whether the hub has the store's device enrolled with its key, and the store
 * pinned this hub's key: the sync helpers enroll a device once, as an
 * operator would, and never undo a revocation or a scope a test set. */
static int enrolled_with(fs_store *s, fs_hub *h) {
    char *text = NULL;
    json_t *stats = NULL, *hub = NULL, *devices = NULL;
    int found = 0;
    size_t i;
    if (fs_store_stats(s, &text) != FS_OK) return 0;
    stats = json_loads(text, 0, NULL);
    fs_free(text);
    text = NULL;
    if (fs_hub_stats(h, &text) == FS_OK) hub = json_loads(text, 0, NULL);
    fs_free(text);
    text = NULL;
    if (fs_hub_devices(h, &text) == FS_OK) devices = json_loads(text, 0, NULL);
    fs_free(text);
    if (stats && hub && devices && json_is_string(json_object_get(stats, "hub_key")) &&
        strcmp(jstr(stats, "hub_key"), jstr(hub, "public_key")) == 0) {
        json_t *list = json_object_get(devices, "devices");
        for (i = 0; i < json_array_size(list); i++)
            if (strcmp(jstr(json_array_get(list, i), "device_id"), jstr(stats, "device_id")) == 0) found = 1;
    }
    json_decref(stats);
    json_decref(hub);
    json_decref(devices);
    return found;
}

sync_totals sync_until_idle_at(const char *file, int line, fs_store *s, fs_hub *h) {
    sync_totals t;
    memset(&t, 0, sizeof t);
    t.last_wait = -2;
    if (!enrolled_with(s, h) && enroll_at(file, line, s, h, NULL) != 0) {
        t.rounds = -1;
        return t;
    }
    for (;;) {
        char *request = NULL, *response;
        int64_t wait = -2;
        json_t *summary;
        fs_status st;
        if (t.rounds >= 50) {
            fs_test_fail(file, line, "the sync loop was not idle after 50 rounds");
            t.rounds = -1;
            return t;
        }
        st = fs_sync_prepare(s, &request, &wait);
        if (st != FS_OK) {
            fs_test_fail(file, line, "sync round %d: fs_sync_prepare returned %s: \"%s\"",
                         t.rounds + 1, fs_status_name(st), fs_last_error());
            t.rounds = -1;
            return t;
        }
        if (request == NULL) {
            t.last_wait = wait;
            return t;
        }
        if (wait != 0)
            fs_test_fail(file, line, "sync round %d: a request came with wait %lld, expected 0",
                         t.rounds + 1, (long long)wait);
        response = handle_ok_at(file, line, h, request);
        fs_free(request);
        if (response == NULL) {
            t.rounds = -1;
            return t;
        }
        summary = receive_ok_at(file, line, s, response);
        fs_free(response);
        if (summary == NULL) {
            t.rounds = -1;
            return t;
        }
        t.applied += jint(summary, "applied");
        t.duplicate += jint(summary, "duplicate");
        t.rejected += jint(summary, "rejected");
        t.retry += jint(summary, "retry");
        t.stuck += jint(summary, "stuck");
        t.pulled += jint(summary, "pulled");
        if (json_is_true(json_object_get(summary, "more"))) t.more++;
        json_decref(summary);
        t.rounds++;
    }
}

sync_totals sync_now_at(const char *file, int line, fs_store *s, fs_hub *h) {
    fs_status st = fs_sync_connectivity(s, 1);
    if (st != FS_OK) {
        sync_totals t;
        memset(&t, 0, sizeof t);
        fs_test_fail(file, line, "fs_sync_connectivity(1) returned %s: \"%s\"", fs_status_name(st),
                     fs_last_error());
        t.rounds = -1;
        return t;
    }
    return sync_until_idle_at(file, line, s, h);
}

static char *dump_hub_call(hub_listing_fn fn, fs_hub *h, const char *arg) {
    char *out = NULL;
    json_t *v;
    char *text;
    if (fn(h, arg, &out) != FS_OK) return strf("(call failed: %s)", fs_last_error());
    v = json_loads(out, 0, NULL);
    fs_free(out);
    text = jdump(v);
    json_decref(v);
    return text;
}

char *hub_records(fs_hub *h) { return dump_hub_call(fs_hub_query, h, "{\"type\":\"task\"}"); }
char *store_records(fs_store *s) { return dump_call(fs_store_query, s, "{\"type\":\"task\"}"); }

void check_same_records_at(const char *file, int line, fs_store *s, fs_hub *h) {
    char *at_hub = hub_records(h);
    char *at_device = store_records(s);
    if (strcmp(at_hub, at_device) != 0)
        fs_test_fail(file, line, "device and hub records differ:\n      device %.600s\n      hub    %.600s",
                     at_device, at_hub);
    free(at_hub);
    free(at_device);
}

void hub_snap_take(fs_hub *h, hub_snap *snap) {
    char *out = NULL;
    json_t *v;
    if (fs_hub_stats(h, &out) == FS_OK) {
        v = json_loads(out, 0, NULL);
        fs_free(out);
        snap->stats = jdump(v);
        json_decref(v);
    } else {
        snap->stats = strf("(call failed: %s)", fs_last_error());
    }
    snap->records = hub_records(h);
    snap->audit = dump_hub_call(fs_hub_audit_query, h, NULL);
}

void hub_snap_check_at(const char *file, int line, fs_hub *h, hub_snap *snap) {
    hub_snap now;
    hub_snap_take(h, &now);
    if (strcmp(now.stats, snap->stats) != 0)
        fs_test_fail(file, line, "hub stats changed:\n      before %.600s\n      after  %.600s",
                     snap->stats, now.stats);
    if (strcmp(now.records, snap->records) != 0)
        fs_test_fail(file, line, "hub records changed:\n      before %.400s\n      after  %.400s",
                     snap->records, now.records);
    if (strcmp(now.audit, snap->audit) != 0)
        fs_test_fail(file, line, "hub audit rows changed:\n      before %.400s\n      after  %.400s",
                     snap->audit, now.audit);
    free(now.stats);
    free(now.records);
    free(now.audit);
    free(snap->stats);
    free(snap->records);
    free(snap->audit);
}

char *with_member(const char *text, const char *key, json_t *value) {
    json_t *v = json_loads(text, 0, NULL);
    char *out;
    if (v == NULL) abort();
    if (value != NULL)
        json_object_set_new(v, key, value);
    else
        json_object_del(v, key);
    out = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return out;
}

char *with_item_member(const char *text, const char *array, size_t index, const char *key, json_t *value) {
    json_t *v = json_loads(text, 0, NULL);
    char *out;
    if (v == NULL) abort();
    json_object_set_new(json_array_get(json_object_get(v, array), index), key, value);
    out = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return out;
}

/* fs_sync_receive must refuse `response` with `expected`, leave the summary
 * NULL and change nothing in the store. */
void receive_refused(const char *file, int line, fs_store *s, const char *response,
                            fs_status expected) {
    char *out = SENTINEL;
    char msg[FS_TEST_MSG_MAX];
    store_snap snap;
    int64_t count = outbox_count(s);
    fs_status st;
    snap_take(s, &snap);
    st = fs_sync_receive(s, response, &out);
    fs_test_copy_last_error(msg);
    if (st != expected)
        fs_test_fail(file, line, "fs_sync_receive returned %s (\"%s\"), expected %s\n      response: %.300s",
                     fs_status_name(st), msg, fs_status_name(expected), response);
    else if (msg[0] == '\0')
        fs_test_fail(file, line, "fs_sync_receive refused with an empty message");
    if (out != NULL) {
        fs_test_fail(file, line, "fs_sync_receive: summary not NULL after failure");
        free_out(out);
    }
    snap_check_at(file, line, s, &snap);
    if (outbox_count(s) != count)
        fs_test_fail(file, line, "fs_outbox_count changed from %lld", (long long)count);
}

/* fs_hub_handle must refuse `request` with `expected`, leave the response
 * NULL and change nothing in the hub. */
void handle_refused(const char *file, int line, fs_hub *h, const char *request,
                           fs_status expected) {
    char *out = SENTINEL;
    char msg[FS_TEST_MSG_MAX];
    hub_snap snap;
    fs_status st;
    hub_snap_take(h, &snap);
    st = fs_hub_handle(h, request, &out);
    fs_test_copy_last_error(msg);
    if (st != expected)
        fs_test_fail(file, line, "fs_hub_handle returned %s (\"%s\"), expected %s\n      request: %.300s",
                     fs_status_name(st), msg, fs_status_name(expected), request);
    else if (msg[0] == '\0')
        fs_test_fail(file, line, "fs_hub_handle refused with an empty message");
    if (out != NULL) {
        fs_test_fail(file, line, "fs_hub_handle: response not NULL after failure");
        free_out(out);
    }
    hub_snap_check_at(file, line, h, &snap);
}
