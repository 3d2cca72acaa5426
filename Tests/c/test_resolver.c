/* test_resolver.c — custom merge through a host resolver (fs_resolver_fn,
 * fs_hub_set_resolver; docs/MERGE.md "custom"): the conflict a resolver is
 * shown, its answer at the hub and on both devices, the writes it is NOT
 * called for, how a failing, silent, malformed, ill-typed or missing resolver
 * rejects the device's whole action visibly (outbox, audit trail, hub audit,
 * view back to the hub's value, answer freed by the library), registration
 * bad input, unregistering and replacing, and the per-device write outcomes
 * of fs_store_stats (writes_won/lost/merged/resolved/rejected).
 *
 * Leaks of the resolvers' malloc()ed answers: make -C Tests/c memcheck ARGS=resolver */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

/* Every merge policy on one type, and two custom fields: `lines` (json,
 * resolver "order_lines") and `qty` (int, resolver "max_qty", so that an
 * answer can have the wrong type). `assignee` sorts before `lines`. */
#define RESOLVER_SCHEMA                                                                 \
    "{\"version\":1,\"types\":{\"task\":{\"fields\":{"                                  \
    "\"assignee\":{\"type\":\"string\",\"merge\":\"lww\"},"                             \
    "\"status\":{\"type\":\"string\"},"                                                 \
    "\"site\":{\"type\":\"string\",\"merge\":\"lww\"},"                                 \
    "\"picked\":{\"type\":\"int\",\"merge\":\"counter\"},"                              \
    "\"tags\":{\"type\":\"set\"},"                                                      \
    "\"on_hand\":{\"type\":\"int\",\"merge\":\"server\"},"                              \
    "\"lines\":{\"type\":\"json\",\"merge\":\"custom\",\"resolver\":\"order_lines\"},"  \
    "\"qty\":{\"type\":\"int\",\"merge\":\"custom\",\"resolver\":\"max_qty\"}"          \
    "},\"required\":[\"status\"]}}}"

/* Order lines, as jdump() prints them (compact, sorted keys). */
#define L0 "[{\"n\":1,\"sku\":\"A\"}]"
#define LA "[{\"n\":1,\"sku\":\"A\"},{\"n\":2,\"sku\":\"B\"}]"
#define LB "[{\"n\":1,\"sku\":\"A\"},{\"n\":3,\"sku\":\"C\"}]"
#define LAB "[{\"n\":1,\"sku\":\"A\"},{\"n\":2,\"sku\":\"B\"},{\"n\":3,\"sku\":\"C\"}]"

/* ---- the resolver under test ---- */

typedef enum {
    R_UNION,              /* lines: server's elements, then incoming's not already there */
    R_MAX,                /* qty: the larger of server and incoming */
    R_STATUS,             /* returns FS_ERR_CONFLICT, no answer */
    R_STATUS_WITH_ANSWER, /* returns FS_ERR_INTERNAL after setting a malloc()ed answer */
    R_NO_ANSWER,          /* returns FS_OK and leaves *out NULL */
    R_ANSWER              /* returns FS_OK and a malloc()ed copy of `answer` */
} r_mode;

typedef struct {
    r_mode mode;
    const char *answer;  /* R_ANSWER */
    int calls;
    int out_not_null;    /* calls where *out was not NULL on entry */
    char *last_conflict; /* copy of the last conflict_json */
    char *last_answer;   /* copy of the last answer handed over with FS_OK */
} resolver_ctx;

static void ctx_init(resolver_ctx *c, r_mode mode, const char *answer) {
    memset(c, 0, sizeof *c);
    c->mode = mode;
    c->answer = answer;
}

static void ctx_free(resolver_ctx *c) {
    free(c->last_conflict);
    free(c->last_answer);
    c->last_conflict = c->last_answer = NULL;
}

static char *malloc_copy(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = (char *)malloc(n);
    if (p == NULL) abort();
    memcpy(p, s, n);
    return p;
}

/* A jansson value as malloc()ed text (jansson's own allocator may differ). */
static char *malloc_dump(json_t *v) {
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    char *copy = malloc_copy(text ? text : "null");
    free(text);
    return copy;
}

static char *merge_union(json_t *conflict) {
    json_t *server = json_object_get(conflict, "server");
    json_t *incoming = json_object_get(conflict, "incoming");
    json_t *out = json_array();
    json_t *sources[2];
    size_t s, i, k;
    char *text;
    sources[0] = server;
    sources[1] = incoming;
    for (s = 0; s < 2; s++) {
        for (i = 0; i < json_array_size(sources[s]); i++) {
            json_t *item = json_array_get(sources[s], i);
            int seen = 0;
            for (k = 0; k < json_array_size(out); k++)
                if (json_equal(json_array_get(out, k), item)) seen = 1;
            if (!seen) json_array_append(out, item);
        }
    }
    text = malloc_dump(out);
    json_decref(out);
    return text;
}

static char *merge_max(json_t *conflict) {
    json_int_t a = json_integer_value(json_object_get(conflict, "server"));
    json_int_t b = json_integer_value(json_object_get(conflict, "incoming"));
    return strf("%lld", (long long)(a > b ? a : b));
}

static fs_status test_resolver(void *vctx, const char *conflict_json, char **out) {
    resolver_ctx *ctx = (resolver_ctx *)vctx;
    json_t *conflict;
    char *answer = NULL;
    if (ctx == NULL || out == NULL || conflict_json == NULL) return FS_ERR_ARG;
    ctx->calls++;
    if (*out != NULL) ctx->out_not_null++;
    free(ctx->last_conflict);
    ctx->last_conflict = malloc_copy(conflict_json);
    conflict = json_loads(conflict_json, 0, NULL);
    switch (ctx->mode) {
    case R_UNION: answer = conflict ? merge_union(conflict) : NULL; break;
    case R_MAX: answer = conflict ? merge_max(conflict) : NULL; break;
    case R_STATUS: break;
    case R_STATUS_WITH_ANSWER:
        json_decref(conflict);
        *out = malloc_copy("[\"never used\"]");
        return FS_ERR_INTERNAL;
    case R_NO_ANSWER: json_decref(conflict); return FS_OK;
    case R_ANSWER: answer = malloc_copy(ctx->answer); break;
    }
    json_decref(conflict);
    if (answer == NULL) return FS_ERR_CONFLICT;
    free(ctx->last_answer);
    ctx->last_answer = malloc_copy(answer);
    *out = answer;
    return FS_OK;
}

/* A second function, to tell registrations apart. */
static fs_status other_resolver(void *vctx, const char *conflict_json, char **out) {
    return test_resolver(vctx, conflict_json, out);
}

/* ---- devices, actions, records ---- */

static fs_store *open_dev_at(const char *file, int line, const char *device_id, const char *more) {
    char *name = strf("%s.db", device_id);
    char *options = strf("{\"device_id\":\"%s\"%s%s}", device_id, more ? "," : "", more ? more : "");
    fs_store *s = open_store_at(file, line, name, RESOLVER_SCHEMA, options);
    free(name);
    free(options);
    return s;
}
#define open_dev(id, more) open_dev_at(__FILE__, __LINE__, (id), (more))
#define open_resolver_hub() open_hub_at(__FILE__, __LINE__, "hub.db", RESOLVER_SCHEMA, NULL)

/* Applies an action on T-1 by `actor` with single-quoted `changes`; returns
 * its outbox key (malloc()ed) or NULL. */
static char *apply_as_at(const char *file, int line, fs_store *s, const char *actor,
                         const char *changes) {
    char *action = strf("{'action':'edit_order','actor':'%s','type':'task','id':'T-1',%s}", actor, changes);
    json_t *r = apply_ok_at(file, line, s, Q(action));
    char *key = NULL;
    free(action);
    if (r != NULL && jstr(r, "outbox_key") != NULL) key = malloc_copy(jstr(r, "outbox_key"));
    json_decref(r);
    return key;
}
#define apply_as(s, actor, changes) free(apply_as_at(__FILE__, __LINE__, (s), (actor), (changes)))
#define apply_key(s, actor, changes) apply_as_at(__FILE__, __LINE__, (s), (actor), (changes))

/* The hub's T-1 (NULL + a failure if absent). */
static json_t *hub_t1_at(const char *file, int line, fs_hub *h) {
    json_t *rows = hub_query_ok_at(file, line, h, "{\"type\":\"task\",\"where\":{\"id\":\"T-1\"}}");
    json_t *row = NULL;
    if (rows != NULL && json_array_size(rows) == 1) {
        row = json_array_get(rows, 0);
        json_incref(row);
    } else {
        fs_test_fail(file, line, "the hub has no task T-1");
    }
    json_decref(rows);
    return row;
}

/* Compact sorted JSON of one member of `obj` (malloc()ed). */
static char *member(json_t *obj, const char *key) { return jdump(json_object_get(obj, key)); }

static void check_member_at(const char *file, int line, json_t *obj, const char *key,
                            const char *expected) {
    char *got = member(obj, key);
    if (strcmp(got, expected) != 0)
        fs_test_fail(file, line, "\"%s\" is %s, expected %s", key, got, expected);
    free(got);
}
#define CHECK_MEMBER(obj, key, expected) check_member_at(__FILE__, __LINE__, (obj), (key), (expected))

/* One field of the hub's T-1 and of a device's T-1. */
static void check_hub_field_at(const char *file, int line, fs_hub *h, const char *field,
                               const char *expected) {
    json_t *rec = hub_t1_at(file, line, h);
    if (rec != NULL) check_member_at(file, line, rec, field, expected);
    json_decref(rec);
}
#define CHECK_HUB_FIELD(h, field, expected) check_hub_field_at(__FILE__, __LINE__, (h), (field), (expected))

static void check_dev_field_at(const char *file, int line, fs_store *s, const char *field,
                               const char *expected) {
    json_t *rec = get_ok_at(file, line, s, "task", "T-1");
    if (rec != NULL) check_member_at(file, line, rec, field, expected);
    json_decref(rec);
}
#define CHECK_DEV_FIELD(s, field, expected) check_dev_field_at(__FILE__, __LINE__, (s), (field), (expected))

/* One sync round done by hand: returns the hub's parsed response (after the
 * device received it), or NULL and a failure. */
static json_t *exchange_at(const char *file, int line, fs_store *s, fs_hub *h) {
    char *request = prepare_ok_at(file, line, s);
    char *response;
    json_t *parsed;
    if (request == NULL) return NULL;
    response = handle_ok_at(file, line, h, request);
    fs_free(request);
    if (response == NULL) return NULL;
    parsed = json_loads(response, 0, NULL);
    json_decref(receive_ok_at(file, line, s, response));
    fs_free(response);
    return parsed;
}
#define exchange(s, h) exchange_at(__FILE__, __LINE__, (s), (h))

/* The result for `key` in a hub response (borrowed), or NULL + a failure. */
static json_t *result_for_at(const char *file, int line, json_t *response, const char *key) {
    json_t *results = json_object_get(response, "results");
    size_t i;
    for (i = 0; i < json_array_size(results); i++) {
        json_t *r = json_array_get(results, i);
        if (key != NULL && jstr(r, "key") != NULL && strcmp(jstr(r, "key"), key) == 0) return r;
    }
    fs_test_fail(file, line, "the response has no result for %s", key ? key : "(null)");
    return NULL;
}
#define result_for(response, key) result_for_at(__FILE__, __LINE__, (response), (key))

static long long stat_of(json_t *stats, const char *key) {
    json_t *v = json_object_get(stats, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static long long hub_stat(fs_hub *h, const char *key) {
    json_t *stats = hub_stats_ok(h);
    long long n = stat_of(stats, key);
    json_decref(stats);
    return n;
}

static long long store_stat(fs_store *s, const char *key) {
    json_t *stats = stats_ok(s);
    long long n = stat_of(stats, key);
    json_decref(stats);
    return n;
}

/* dev-a creates T-1 with every kind of field; both devices then sync, so
 * both have seen it. */
static void seed(fs_hub *h, fs_store *a, fs_store *b) {
    apply_as(a, "op-a", "'set':{'status':'open','assignee':'ann','site':'WH-1','on_hand':10,"
                        "'lines':[{'sku':'A','n':1}],'qty':1},'inc':{'picked':1},'add':{'tags':['x']}");
    sync_until_idle(a, h);
    sync_until_idle(b, h);
}

/* ---- the resolver merges ---- */

TEST(test_resolver_merges_concurrent_custom_writes_and_both_devices_converge) {
    fs_hub *h = open_resolver_hub();
    fs_store *a = open_dev("dev-a", NULL);
    fs_store *b = open_dev("dev-b", NULL);
    resolver_ctx ctx;
    json_t *response, *res, *conflict, *answer, *stats;
    char *key, *want;
    fs_store *both[2];
    int i;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    ctx_init(&ctx, R_UNION, NULL);
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", test_resolver, &ctx));
    CHECK_NO_ERROR_MESSAGE();
    seed(h, a, b);
    CHECK_INT_EQ(ctx.calls, 0); /* creating the record met nothing */

    /* both edit the order lines offline, from the same base L0 */
    apply_as(a, "op-a", "'set':{'lines':[{'sku':'A','n':1},{'sku':'B','n':2}]}");
    key = apply_key(b, "op-b", "'set':{'lines':[{'sku':'A','n':1},{'sku':'C','n':3}]}");
    REQUIRE(key != NULL);
    CHECK_INT_EQ(sync_until_idle(a, h).applied, 1);
    CHECK_INT_EQ(ctx.calls, 0); /* dev-a's write was based on what the hub had */
    CHECK_HUB_FIELD(h, "lines", LA);

    response = exchange(b, h);
    REQUIRE(response != NULL);
    res = result_for(response, key);
    if (res != NULL) {
        CHECK_STR_EQ(jstr(res, "status"), "applied");
        CHECK_STR_EQ(jstr(json_object_get(res, "resolutions"), "lines"), "resolved");
    }
    json_decref(response);
    CHECK_INT_EQ(ctx.calls, 1);
    CHECK_INT_EQ(ctx.out_not_null, 0);

    /* what the resolver was shown */
    REQUIRE(ctx.last_conflict != NULL);
    conflict = json_loads(ctx.last_conflict, 0, NULL);
    REQUIRE(conflict != NULL && json_is_object(conflict));
    if (json_object_size(conflict) != 8)
        fs_test_fail(__FILE__, __LINE__, "conflict_json has %d members, expected 8: %s",
                     (int)json_object_size(conflict), ctx.last_conflict);
    CHECK_MEMBER(conflict, "type", "\"task\"");
    CHECK_MEMBER(conflict, "id", "\"T-1\"");
    CHECK_MEMBER(conflict, "field", "\"lines\"");
    CHECK_MEMBER(conflict, "base", L0);
    CHECK_MEMBER(conflict, "server", LA);
    CHECK_MEMBER(conflict, "incoming", LB);
    CHECK_MEMBER(conflict, "incoming_actor", "\"op-b\"");
    CHECK_MEMBER(conflict, "incoming_device", "\"dev-b\"");
    json_decref(conflict);

    /* the hub holds exactly the resolver's answer */
    REQUIRE(ctx.last_answer != NULL);
    answer = json_loads(ctx.last_answer, 0, NULL);
    want = jdump(answer);
    json_decref(answer);
    CHECK_STR_EQ(want, LAB);
    CHECK_HUB_FIELD(h, "lines", want);

    /* both devices converge on it */
    for (i = 0; i < 2; i++) {
        sync_now(a, h);
        sync_now(b, h);
    }
    both[0] = a;
    both[1] = b;
    for (i = 0; i < 2; i++) {
        CHECK_DEV_FIELD(both[i], "lines", want);
        CHECK_INT_EQ(outbox_count(both[i]), 0);
        CHECK_SAME_RECORDS(both[i], h);
    }
    CHECK_INT_EQ(ctx.calls, 1); /* pulls never call it */
    free(want);

    stats = hub_stats_ok(h);
    REQUIRE(stats != NULL);
    CHECK_INT_EQ(stat_of(stats, "conflicts.task.lines.resolved"), 1);
    CHECK_INT_EQ(stat_of(stats, "conflicts.task.lines.concurrent"), 1);
    CHECK_INT_EQ(stat_of(stats, "conflicts.task.lines.writes"), 3);
    CHECK_INT_EQ(stat_of(stats, "entries_rejected"), 0);
    json_decref(stats);
    CHECK_INT_EQ(store_stat(b, "writes_resolved"), 1);
    CHECK_INT_EQ(store_stat(a, "writes_resolved"), 0);
    free(key);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
    ctx_free(&ctx);
}

TEST(test_resolver_merges_a_custom_int_field) {
    fs_hub *h = open_resolver_hub();
    fs_store *a = open_dev("dev-a", NULL);
    fs_store *b = open_dev("dev-b", NULL);
    resolver_ctx lines, qty;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    ctx_init(&lines, R_UNION, NULL);
    ctx_init(&qty, R_MAX, NULL);
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", test_resolver, &lines));
    CHECK_OK(fs_hub_set_resolver(h, "max_qty", test_resolver, &qty));
    seed(h, a, b);
    apply_as(a, "op-a", "'set':{'qty':7}");
    apply_as(b, "op-b", "'set':{'qty':4}");
    sync_until_idle(a, h);
    sync_until_idle(b, h);
    CHECK_INT_EQ(lines.calls, 0); /* each name reaches its own resolver */
    CHECK_INT_EQ(qty.calls, 1);
    CHECK_HUB_FIELD(h, "qty", "7");
    sync_now(b, h);
    CHECK_DEV_FIELD(b, "qty", "7");
    CHECK_SAME_RECORDS(b, h);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
    ctx_free(&lines);
    ctx_free(&qty);
}

/* ---- writes the resolver must not see ---- */

TEST(test_resolver_is_not_called_for_a_write_made_after_syncing) {
    fs_hub *h = open_resolver_hub();
    fs_store *a = open_dev("dev-a", NULL);
    fs_store *b = open_dev("dev-b", NULL);
    resolver_ctx ctx;
    json_t *response, *res;
    char *key;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    ctx_init(&ctx, R_UNION, NULL);
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", test_resolver, &ctx));
    seed(h, a, b);
    apply_as(a, "op-a", "'set':{'lines':[{'sku':'A','n':1},{'sku':'B','n':2}]}");
    sync_until_idle(a, h);
    /* dev-b pulls dev-a's write, then writes on top of it */
    sync_now(b, h);
    CHECK_DEV_FIELD(b, "lines", LA);
    key = apply_key(b, "op-b", "'set':{'lines':[{'sku':'A','n':1},{'sku':'C','n':3}]}");
    REQUIRE(key != NULL);
    response = exchange(b, h);
    REQUIRE(response != NULL);
    res = result_for(response, key);
    if (res != NULL) {
        CHECK_STR_EQ(jstr(res, "status"), "applied");
        CHECK(json_object_get(res, "resolutions") == NULL);
    }
    json_decref(response);
    CHECK_INT_EQ(ctx.calls, 0);
    CHECK_HUB_FIELD(h, "lines", LB); /* taken as written */
    CHECK_INT_EQ(hub_stat(h, "conflicts.task.lines.concurrent"), 0);
    CHECK_INT_EQ(hub_stat(h, "conflicts.task.lines.resolved"), 0);
    CHECK_INT_EQ(store_stat(b, "writes_resolved"), 0);
    free(key);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
    ctx_free(&ctx);
}

/* dev writes lines twice before the hub answers: the second write is based on
 * the first ("base": {"after": n}), so its own writes never conflict. */
static void own_second_write(const char *more_options) {
    fs_hub *h = open_resolver_hub();
    fs_store *a = open_dev("dev-a", more_options);
    fs_store *b = open_dev("dev-b", NULL);
    resolver_ctx ctx;
    json_t *entries, *e1, *e2, *after;
    sync_totals t;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    ctx_init(&ctx, R_UNION, NULL);
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", test_resolver, &ctx));
    seed(h, a, b);
    apply_as(a, "op-a", "'set':{'lines':[{'sku':'A','n':1},{'sku':'B','n':2}]}");
    apply_as(a, "op-a", "'set':{'lines':[{'sku':'A','n':1},{'sku':'C','n':3}]}");
    entries = outbox_ok(a, NULL);
    REQUIRE(entries != NULL && json_array_size(entries) == 2);
    e1 = json_array_get(entries, 0);
    e2 = json_array_get(entries, 1);
    /* the first is based on the server version, the second on the first */
    CHECK(json_is_integer(json_object_get(json_object_get(e1, "base"), "lines")));
    after = json_object_get(json_object_get(json_object_get(e2, "base"), "lines"), "after");
    CHECK(json_is_integer(after));
    CHECK_INT_EQ(json_integer_value(after), jint(e1, "seq"));
    json_decref(entries);

    t = sync_until_idle(a, h);
    CHECK_INT_EQ(t.applied, 2);
    CHECK_INT_EQ(t.rejected, 0);
    CHECK_INT_EQ(ctx.calls, 0);
    CHECK_HUB_FIELD(h, "lines", LB); /* the second write holds */
    CHECK_INT_EQ(hub_stat(h, "conflicts.task.lines.concurrent"), 0);
    CHECK_SAME_RECORDS(a, h);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
    ctx_free(&ctx);
}

TEST(test_resolver_is_not_called_for_a_second_write_on_the_devices_own_first_one_same_batch) {
    own_second_write(NULL);
}

TEST(test_resolver_is_not_called_for_a_second_write_on_the_devices_own_first_one_next_batch) {
    own_second_write("\"batch_size\":1");
}

/* dev-a writes L1 then L2 on top of it; L1 reaches the hub, then dev-b's
 * write, then L2: L2 met a change it had not seen and goes to the resolver,
 * whose "base" must be what L2 was written on — L1, now a server value —
 * not the server value before L1. */
TEST(test_resolver_base_of_a_chained_write_is_the_devices_own_first_write) {
    fs_hub *h = open_resolver_hub();
    fs_store *a = open_dev("dev-a", "\"batch_size\":1");
    fs_store *b = open_dev("dev-b", NULL);
    resolver_ctx ctx;
    json_t *response, *conflict;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    ctx_init(&ctx, R_UNION, NULL);
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", test_resolver, &ctx));
    seed(h, a, b);
    apply_as(a, "op-a", "'set':{'lines':[{'sku':'A','n':1},{'sku':'B','n':2}]}"); /* L1 = LA */
    apply_as(a, "op-a", "'set':{'lines':[{'sku':'A','n':1}]}");                   /* L2: drops B */
    response = exchange(a, h); /* L1 only */
    json_decref(response);
    CHECK_HUB_FIELD(h, "lines", LA);
    sync_now(b, h);
    apply_as(b, "op-b", "'set':{'lines':[{'sku':'A','n':1},{'sku':'B','n':2},{'sku':'C','n':3}]}");
    sync_until_idle(b, h);
    CHECK_INT_EQ(ctx.calls, 0);
    sync_until_idle(a, h); /* L2 */
    CHECK_INT_EQ(ctx.calls, 1);
    REQUIRE(ctx.last_conflict != NULL);
    conflict = json_loads(ctx.last_conflict, 0, NULL);
    CHECK_MEMBER(conflict, "server", LAB);
    CHECK_MEMBER(conflict, "incoming", L0);
    CHECK_MEMBER(conflict, "base", LA);
    json_decref(conflict);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
    ctx_free(&ctx);
}

/* ---- resolvers that fail reject the device's whole action ---- */

/* dev-a changes `field` (lines or qty) and syncs; dev-b, from the same base,
 * changes `field` and every other kind of field in one action and syncs. The
 * resolver registered under `field`'s resolver name (if `mode` >= 0) fails;
 * dev-b's whole action must be rejected with `reason`, visibly. */
static void rejected_case(const char *file, int line, const char *field, int mode,
                          const char *answer, const char *reason) {
    fs_hub *h = open_resolver_hub();
    fs_store *a = open_dev("dev-a", NULL);
    fs_store *b = open_dev("dev-b", NULL);
    int is_lines = strcmp(field, "lines") == 0;
    const char *a_value = is_lines ? LA : "3";
    resolver_ctx ctx;
    json_t *entries, *rows, *res, *response, *rec;
    char *key, *changes, *hub_before, *hub_after, *request, *resp_text = NULL, *hub_row;
    int failures = fs_test_failures();
    fs_status st;
    size_t i;
    int found;
    if (h == NULL || a == NULL || b == NULL) {
        fs_test_fail(file, line, "setup failed");
        return;
    }
    ctx_init(&ctx, mode >= 0 ? (r_mode)mode : R_UNION, answer);
    if (mode >= 0)
        CHECK_OK(fs_hub_set_resolver(h, is_lines ? "order_lines" : "max_qty", test_resolver, &ctx));
    seed(h, a, b);
    apply_as(a, "op-a", is_lines ? "'set':{'lines':[{'sku':'A','n':1},{'sku':'B','n':2}]}"
                                 : "'set':{'qty':3}");
    sync_until_idle(a, h);
    CHECK_INT_EQ(ctx.calls, 0);
    hub_before = hub_records(h);

    changes = strf("'set':{'%s':%s,'status':'done','assignee':'bob','site':'WH-9','on_hand':9},"
                   "'inc':{'picked':5},'add':{'tags':['t9']},'remove':{'tags':['x']}",
                   field, is_lines ? "[{'sku':'A','n':1},{'sku':'C','n':3}]" : "5");
    key = apply_key(b, "op-b", changes);
    free(changes);
    if (key == NULL) {
        fs_test_fail(file, line, "dev-b's action failed");
        goto done;
    }

    /* the hub answers FS_OK: only the entry is refused */
    request = prepare_ok(b);
    if (request == NULL) goto done;
    st = fs_hub_handle(h, request, &resp_text);
    if (st != FS_OK)
        fs_test_fail(file, line, "fs_hub_handle returned %s: %s", fs_status_name(st), fs_last_error());
    else if (fs_last_error()[0] != '\0')
        fs_test_fail(file, line, "fs_last_error() is \"%s\" after fs_hub_handle succeeded", fs_last_error());
    fs_free(request);
    if (resp_text == NULL) goto done;
    response = json_loads(resp_text, 0, NULL);
    json_decref(receive_ok(b, resp_text));
    fs_free(resp_text);
    res = result_for(response, key);
    if (res != NULL) {
        if (jstr(res, "status") == NULL || strcmp(jstr(res, "status"), "rejected") != 0 ||
            jstr(res, "reason") == NULL || strcmp(jstr(res, "reason"), reason) != 0) {
            char *dump = jdump(res);
            fs_test_fail(file, line, "hub result %s, expected status rejected, reason %s", dump, reason);
            free(dump);
        }
        CHECK_STR_EQ(jstr(json_object_get(res, "detail"), "field"), field);
    }
    json_decref(response);
    CHECK_INT_EQ(ctx.calls, mode >= 0 ? 1 : 0);

    /* nothing of the action reached the hub */
    hub_after = hub_records(h);
    if (strcmp(hub_before, hub_after) != 0)
        fs_test_fail(file, line, "hub records changed by a rejected action:\n      before %s\n      after  %s",
                     hub_before, hub_after);
    free(hub_after);
    CHECK_INT_EQ(hub_stat(h, "entries_rejected"), 1);
    CHECK_INT_EQ(hub_stat(h, "conflicts.task.lines.resolved"), 0);

    /* dev-b's outbox keeps the entry, rejected, with the reason */
    entries = outbox_ok(b, NULL);
    if (entries != NULL && json_array_size(entries) == 1) {
        json_t *e = json_array_get(entries, 0);
        CHECK_STR_EQ(jstr(e, "key"), key);
        CHECK_STR_EQ(jstr(e, "state"), "rejected");
        CHECK_STR_EQ(jstr(e, "reason"), reason);
    } else {
        fs_test_fail(file, line, "dev-b's outbox has %d entries, expected 1",
                     entries ? (int)json_array_size(entries) : -1);
    }
    json_decref(entries);
    entries = outbox_ok(b, "{\"state\":\"rejected\"}");
    CHECK_INT_EQ(json_array_size(entries), 1);
    json_decref(entries);
    CHECK_INT_EQ(outbox_count(b), 1);

    /* its audit row says rejected, with the reason; so does the hub's copy */
    rows = audit_ok(b, NULL);
    found = 0;
    for (i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        const char *row_key = json_string_value(json_array_get(json_object_get(row, "outbox_keys"), 0));
        if (row_key == NULL || strcmp(row_key, key) != 0) continue;
        found = 1;
        CHECK_STR_EQ(jstr(row, "outcome"), "rejected");
        CHECK_STR_EQ(jstr(row, "reason"), reason);
    }
    json_decref(rows);
    if (!found) fs_test_fail(file, line, "dev-b has no audit row for %s", key);
    rows = hub_audit_ok(h, "{\"device_id\":\"dev-b\"}");
    if (rows != NULL && json_array_size(rows) == 1) {
        hub_row = jdump(json_array_get(rows, 0));
        if (jstr(json_array_get(rows, 0), "outcome") == NULL ||
            strcmp(jstr(json_array_get(rows, 0), "outcome"), "rejected") != 0)
            fs_test_fail(file, line, "hub audit row %s, expected outcome rejected", hub_row);
        free(hub_row);
    } else {
        fs_test_fail(file, line, "the hub has %d audit rows of dev-b, expected 1",
                     rows ? (int)json_array_size(rows) : -1);
    }
    json_decref(rows);

    /* dev-b's view is back to the hub's: dev-a's value, none of dev-b's changes */
    CHECK_DEV_FIELD(b, field, a_value);
    CHECK_DEV_FIELD(b, "status", "\"open\"");
    CHECK_DEV_FIELD(b, "assignee", "\"ann\"");
    CHECK_DEV_FIELD(b, "site", "\"WH-1\"");
    CHECK_DEV_FIELD(b, "on_hand", "10");
    CHECK_DEV_FIELD(b, "picked", "1");
    CHECK_DEV_FIELD(b, "tags", "[\"x\"]");
    CHECK_SAME_RECORDS(b, h);
    CHECK_INT_EQ(store_stat(b, "writes_rejected"), 1);
    CHECK_INT_EQ(store_stat(b, "outbox_rejected"), 1);

    /* a rejected entry is not sent again, so the resolver is not asked again */
    CHECK_INT_EQ(sync_now(b, h).rejected, 0);
    CHECK_INT_EQ(ctx.calls, mode >= 0 ? 1 : 0);

    /* the host discards it: out of the outbox, the audit row stays */
    CHECK_OK(fs_outbox_discard(b, key));
    CHECK_INT_EQ(outbox_count(b), 0);
    rec = get_ok(b, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 1);
    json_decref(rec);
    CHECK_SAME_RECORDS(b, h);

    if (fs_test_failures() != failures)
        printf("    (case: field %s, mode %d, answer %s, expected %s)\n", field, mode,
               answer ? answer : "-", reason);
done:
    free(key);
    free(hub_before);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
    ctx_free(&ctx);
}
#define REJECTED_CASE(field, mode, answer, reason) \
    rejected_case(__FILE__, __LINE__, (field), (mode), (answer), (reason))

TEST(test_resolver_returning_an_error_status_rejects_the_whole_action) {
    REJECTED_CASE("lines", R_STATUS, NULL, "resolver_failed");
}

TEST(test_resolver_returning_an_error_status_with_an_answer_rejects_and_frees_it) {
    REJECTED_CASE("lines", R_STATUS_WITH_ANSWER, NULL, "resolver_failed");
}

TEST(test_resolver_returning_ok_without_an_answer_rejects_the_whole_action) {
    REJECTED_CASE("lines", R_NO_ANSWER, NULL, "resolver_failed");
}

TEST(test_resolver_returning_invalid_json_rejects_the_whole_action) {
    REJECTED_CASE("lines", R_ANSWER, "[{\"sku\":\"A\",", "resolver_failed");
}

TEST(test_resolver_returning_json_with_trailing_garbage_rejects_the_whole_action) {
    REJECTED_CASE("lines", R_ANSWER, "[] []", "resolver_failed");
}

TEST(test_resolver_returning_an_empty_string_rejects_the_whole_action) {
    REJECTED_CASE("lines", R_ANSWER, "", "resolver_failed");
}

TEST(test_resolver_returning_invalid_utf8_rejects_the_whole_action) {
    REJECTED_CASE("lines", R_ANSWER, "[\"\xff\"]", "resolver_failed");
}

TEST(test_resolver_returning_a_string_for_an_int_field_is_resolver_invalid) {
    REJECTED_CASE("qty", R_ANSWER, "\"seven\"", "resolver_invalid");
}

TEST(test_resolver_returning_a_float_for_an_int_field_is_resolver_invalid) {
    REJECTED_CASE("qty", R_ANSWER, "7.5", "resolver_invalid");
}

TEST(test_resolver_returning_an_array_for_an_int_field_is_resolver_invalid) {
    REJECTED_CASE("qty", R_ANSWER, "[7]", "resolver_invalid");
}

TEST(test_resolver_returning_invalid_json_for_an_int_field_is_resolver_failed) {
    REJECTED_CASE("qty", R_ANSWER, "7x", "resolver_failed");
}

TEST(test_resolver_missing_rejects_the_whole_action) {
    REJECTED_CASE("lines", -1, NULL, "resolver_missing");
}

TEST(test_resolver_missing_for_one_name_while_another_is_registered) {
    /* only "order_lines" is registered; qty's "max_qty" is not */
    fs_hub *h = open_resolver_hub();
    fs_store *a = open_dev("dev-a", NULL);
    fs_store *b = open_dev("dev-b", NULL);
    resolver_ctx ctx;
    json_t *entries;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    ctx_init(&ctx, R_UNION, NULL);
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", test_resolver, &ctx));
    seed(h, a, b);
    apply_as(a, "op-a", "'set':{'qty':3}");
    apply_as(b, "op-b", "'set':{'qty':5}");
    sync_until_idle(a, h);
    CHECK_INT_EQ(sync_until_idle(b, h).rejected, 1);
    CHECK_INT_EQ(ctx.calls, 0);
    entries = outbox_ok(b, "{\"state\":\"rejected\"}");
    REQUIRE(entries != NULL && json_array_size(entries) == 1);
    CHECK_STR_EQ(jstr(json_array_get(entries, 0), "reason"), "resolver_missing");
    json_decref(entries);
    CHECK_HUB_FIELD(h, "qty", "3");
    CHECK_DEV_FIELD(b, "qty", "3");
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
    ctx_free(&ctx);
}

/* A rejected action is rejected whole, in the hub's accounting too: a field
 * written before the failing custom field (assignee sorts first; lines is
 * resolved before qty fails) must not be counted as written, won or resolved. */
TEST(test_resolver_rejected_action_counts_only_the_refusal_at_the_hub) {
    fs_hub *h = open_resolver_hub();
    fs_store *a = open_dev("dev-a", NULL);
    fs_store *b = open_dev("dev-b", NULL);
    resolver_ctx lines, qty;
    json_t *before, *after;
    static const char *const keys[] = {
        "conflicts.task.assignee.writes", "conflicts.task.assignee.concurrent",
        "conflicts.task.assignee.won",    "conflicts.task.lines.writes",
        "conflicts.task.lines.concurrent", "conflicts.task.lines.resolved"};
    size_t i;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    ctx_init(&lines, R_UNION, NULL);
    ctx_init(&qty, R_STATUS, NULL);
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", test_resolver, &lines));
    CHECK_OK(fs_hub_set_resolver(h, "max_qty", test_resolver, &qty));
    seed(h, a, b);
    apply_as(a, "op-a", "'set':{'assignee':'amy','lines':[{'sku':'A','n':1},{'sku':'B','n':2}],'qty':3}");
    apply_as(b, "op-b", "'set':{'assignee':'bob','lines':[{'sku':'A','n':1},{'sku':'C','n':3}],'qty':5}");
    sync_until_idle(a, h);
    before = hub_stats_ok(h);
    CHECK_INT_EQ(sync_until_idle(b, h).rejected, 1);
    after = hub_stats_ok(h);
    REQUIRE(before != NULL && after != NULL);
    CHECK_INT_EQ(qty.calls, 1);
    CHECK_HUB_FIELD(h, "assignee", "\"amy\"");
    CHECK_HUB_FIELD(h, "lines", LA);
    CHECK_HUB_FIELD(h, "qty", "3");
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (stat_of(after, keys[i]) != stat_of(before, keys[i]))
            fs_test_fail(__FILE__, __LINE__,
                         "%s went from %lld to %lld for an action the hub rejected", keys[i],
                         stat_of(before, keys[i]), stat_of(after, keys[i]));
    /* The refusal itself is counted once, as the failing field's rejected
     * conflict, like a failed compare-and-set. */
    CHECK_INT_EQ(stat_of(after, "conflicts.task.qty.rejected"), stat_of(before, "conflicts.task.qty.rejected") + 1);
    CHECK_INT_EQ(stat_of(after, "conflicts"), stat_of(before, "conflicts") + 1);
    json_decref(before);
    json_decref(after);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
    ctx_free(&lines);
    ctx_free(&qty);
}

/* ---- registration ---- */

TEST(test_resolver_set_resolver_refuses_bad_input) {
    fs_hub *h = open_resolver_hub();
    fs_store *s = open_dev("dev-a", NULL);
    resolver_ctx ctx;
    REQUIRE(h != NULL && s != NULL);
    ctx_init(&ctx, R_UNION, NULL);
    CHECK_STATUS(fs_hub_set_resolver(NULL, "order_lines", test_resolver, &ctx), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_hub_set_resolver(NULL, "order_lines", NULL, NULL), FS_ERR_ARG);
    CHECK_STATUS(fs_hub_set_resolver(h, NULL, test_resolver, &ctx), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_hub_set_resolver(h, NULL, NULL, NULL), FS_ERR_ARG);
    CHECK_STATUS(fs_hub_set_resolver(h, "", test_resolver, &ctx), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_hub_set_resolver(h, "", NULL, NULL), FS_ERR_ARG);
    CHECK_STATUS2(fs_hub_set_resolver(h, "order_\xff", test_resolver, &ctx), FS_ERR_JSON, FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    /* a store handle is not a hub */
    CHECK_STATUS(fs_hub_set_resolver((fs_hub *)(void *)s, "order_lines", test_resolver, &ctx), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    /* good calls */
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", test_resolver, &ctx));
    CHECK_NO_ERROR_MESSAGE();
    CHECK_OK(fs_hub_set_resolver(h, "never_registered", NULL, NULL));
    CHECK_NO_ERROR_MESSAGE();
    /* a closed hub */
    CHECK_OK(fs_hub_close(h));
    CHECK_STATUS(fs_hub_set_resolver(h, "order_lines", test_resolver, &ctx), FS_ERR_CLOSED);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_hub_set_resolver(h, "order_lines", NULL, NULL), FS_ERR_CLOSED);
    CHECK_INT_EQ(ctx.calls, 0);
    fs_store_close(s);
    ctx_free(&ctx);
}

/* Both devices catch up, then both write lines: one concurrent write of
 * dev-b's; returns the hub's result for it (caller decrefs) or NULL. */
static json_t *lines_conflict_at(const char *file, int line, fs_hub *h, fs_store *a, fs_store *b,
                                 const char *a_lines, const char *b_lines) {
    char *changes, *key;
    json_t *response, *res;
    sync_now_at(file, line, a, h);
    sync_now_at(file, line, b, h);
    changes = strf("'set':{'lines':%s}", a_lines);
    free(apply_as_at(file, line, a, "op-a", changes));
    free(changes);
    changes = strf("'set':{'lines':%s}", b_lines);
    key = apply_as_at(file, line, b, "op-b", changes);
    free(changes);
    sync_until_idle_at(file, line, a, h);
    response = exchange_at(file, line, b, h);
    res = response && key ? result_for_at(file, line, response, key) : NULL;
    json_incref(res);
    json_decref(response);
    free(key);
    return res;
}
#define lines_conflict(h, a, b, al, bl) lines_conflict_at(__FILE__, __LINE__, (h), (a), (b), (al), (bl))

TEST(test_resolver_unregistered_with_null_fn_is_then_missing) {
    fs_hub *h = open_resolver_hub();
    fs_store *a = open_dev("dev-a", NULL);
    fs_store *b = open_dev("dev-b", NULL);
    resolver_ctx ctx;
    json_t *res;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    ctx_init(&ctx, R_UNION, NULL);
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", test_resolver, &ctx));
    seed(h, a, b);
    res = lines_conflict(h, a, b, "['p']", "['q']");
    CHECK_STR_EQ(jstr(res, "status"), "applied");
    json_decref(res);
    CHECK_INT_EQ(ctx.calls, 1);
    CHECK_HUB_FIELD(h, "lines", "[\"p\",\"q\"]");

    CHECK_OK(fs_hub_set_resolver(h, "order_lines", NULL, NULL));
    CHECK_NO_ERROR_MESSAGE();
    res = lines_conflict(h, a, b, "['r']", "['s']");
    CHECK_STR_EQ(jstr(res, "status"), "rejected");
    CHECK_STR_EQ(jstr(res, "reason"), "resolver_missing");
    json_decref(res);
    CHECK_INT_EQ(ctx.calls, 1);
    CHECK_HUB_FIELD(h, "lines", "[\"r\"]");
    CHECK_DEV_FIELD(b, "lines", "[\"r\"]");
    /* unregistering twice is harmless */
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", NULL, NULL));
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
    ctx_free(&ctx);
}

TEST(test_resolver_registered_again_under_the_same_name_replaces_the_first) {
    fs_hub *h = open_resolver_hub();
    fs_store *a = open_dev("dev-a", NULL);
    fs_store *b = open_dev("dev-b", NULL);
    resolver_ctx first, second;
    json_t *res;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    ctx_init(&first, R_ANSWER, "[\"first\"]");
    ctx_init(&second, R_UNION, NULL);
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", test_resolver, &first));
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", other_resolver, &second));
    seed(h, a, b);
    res = lines_conflict(h, a, b, "['p']", "['q']");
    CHECK_STR_EQ(jstr(res, "status"), "applied");
    json_decref(res);
    CHECK_INT_EQ(first.calls, 0);
    CHECK_INT_EQ(second.calls, 1);
    CHECK_HUB_FIELD(h, "lines", "[\"p\",\"q\"]");

    /* same function, another ctx: the ctx is replaced too */
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", other_resolver, &first));
    res = lines_conflict(h, a, b, "['r']", "['s']");
    CHECK_STR_EQ(jstr(res, "status"), "applied");
    json_decref(res);
    CHECK_INT_EQ(first.calls, 1);
    CHECK_INT_EQ(second.calls, 1);
    CHECK_HUB_FIELD(h, "lines", "[\"first\"]");
    sync_now(a, h);
    sync_now(b, h);
    CHECK_SAME_RECORDS(a, h);
    CHECK_SAME_RECORDS(b, h);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
    ctx_free(&first);
    ctx_free(&second);
}

/* ---- how a device's writes fared: fs_store_stats writes_* ---- */

static int64_t hand_clock(void *ctx) { return *(const int64_t *)ctx; }

TEST(test_resolver_store_stats_count_how_the_devices_writes_fared) {
    static const char *const counters[] = {"writes_won", "writes_lost", "writes_merged",
                                           "writes_resolved", "writes_rejected"};
    int64_t t0 = 1700000000000LL, ca = t0, cb = t0;
    fs_hub *h = open_resolver_hub();
    fs_store *a = open_dev("dev-a", NULL);
    fs_store *b = open_dev("dev-b", NULL);
    resolver_ctx lines, qty;
    json_t *stats;
    size_t i;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    CHECK_OK(fs_store_set_clock(a, hand_clock, &ca));
    CHECK_OK(fs_store_set_clock(b, hand_clock, &cb));
    ctx_init(&lines, R_UNION, NULL);
    ctx_init(&qty, R_STATUS, NULL);
    CHECK_OK(fs_hub_set_resolver(h, "order_lines", test_resolver, &lines));
    CHECK_OK(fs_hub_set_resolver(h, "max_qty", test_resolver, &qty));
    stats = stats_ok(b);
    for (i = 0; i < sizeof counters / sizeof counters[0]; i++)
        CHECK_INT_EQ(stat_of(stats, counters[i]), 0);
    json_decref(stats);
    seed(h, a, b);

    cb = t0 + 100;
    apply_as(b, "op-b", "'set':{'site':'WH-B'}"); /* older than dev-a's: lost */
    ca = t0 + 200;
    apply_as(a, "op-a", "'set':{'site':'WH-A','status':'a'}");
    apply_as(a, "op-a", "'inc':{'picked':1},'add':{'tags':['a']}");
    apply_as(a, "op-a", "'set':{'lines':[{'sku':'A','n':1},{'sku':'B','n':2}]}");
    apply_as(a, "op-a", "'set':{'qty':3}");
    cb = t0 + 300;
    apply_as(b, "op-b", "'set':{'status':'b'}");                  /* newer: won */
    apply_as(b, "op-b", "'inc':{'picked':2}");                    /* merged */
    apply_as(b, "op-b", "'add':{'tags':['b']}");                  /* merged */
    apply_as(b, "op-b", "'set':{'lines':[{'sku':'A','n':1},{'sku':'C','n':3}]}"); /* resolved */
    apply_as(b, "op-b", "'set':{'qty':5}");                       /* resolver fails: rejected */
    sync_until_idle(a, h);
    sync_until_idle(b, h);
    sync_now(a, h);

    stats = stats_ok(b);
    REQUIRE(stats != NULL);
    CHECK_INT_EQ(stat_of(stats, "writes_won"), 1);
    CHECK_INT_EQ(stat_of(stats, "writes_lost"), 1);
    CHECK_INT_EQ(stat_of(stats, "writes_merged"), 2);
    CHECK_INT_EQ(stat_of(stats, "writes_resolved"), 1);
    CHECK_INT_EQ(stat_of(stats, "writes_rejected"), 1);
    json_decref(stats);
    /* dev-a's writes met nothing concurrent */
    stats = stats_ok(a);
    for (i = 0; i < sizeof counters / sizeof counters[0]; i++)
        CHECK_INT_EQ(stat_of(stats, counters[i]), 0);
    json_decref(stats);

    stats = hub_stats_ok(h);
    CHECK_INT_EQ(stat_of(stats, "conflicts.task.site.lost"), 1);
    CHECK_INT_EQ(stat_of(stats, "conflicts.task.status.won"), 1);
    CHECK_INT_EQ(stat_of(stats, "conflicts.task.picked.merged"), 1);
    CHECK_INT_EQ(stat_of(stats, "conflicts.task.tags.merged"), 1);
    CHECK_INT_EQ(stat_of(stats, "conflicts.task.lines.resolved"), 1);
    json_decref(stats);
    CHECK_HUB_FIELD(h, "site", "\"WH-A\"");
    CHECK_HUB_FIELD(h, "status", "\"b\"");
    CHECK_HUB_FIELD(h, "picked", "4");
    CHECK_HUB_FIELD(h, "lines", LAB);
    CHECK_HUB_FIELD(h, "qty", "3");
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
    ctx_free(&lines);
    ctx_free(&qty);
}

/* The hub's first answer is lost; the resend is answered "duplicate" with the
 * original outcome "rejected"; then the lost answer turns up. The device's
 * write was rejected once, and must be counted once. */
TEST(test_resolver_rejected_write_counted_once_when_its_answer_arrives_twice) {
    fs_hub *h = open_resolver_hub();
    fs_store *a = open_dev("dev-a", NULL);
    fs_store *b = open_dev("dev-b", NULL);
    char *request, *lost, *response;
    json_t *summary, *entries;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    seed(h, a, b); /* no resolver registered */
    apply_as(a, "op-a", "'set':{'lines':['p']}");
    apply_as(b, "op-b", "'set':{'lines':['q']}");
    sync_until_idle(a, h);
    request = prepare_ok(b);
    REQUIRE(request != NULL);
    lost = handle_ok(h, request);
    fs_free(request);
    REQUIRE(lost != NULL);
    request = prepare_ok(b);
    REQUIRE(request != NULL);
    response = handle_ok(h, request);
    fs_free(request);
    REQUIRE(response != NULL);
    summary = receive_ok(b, response);
    fs_free(response);
    CHECK_INT_EQ(jint(summary, "duplicate"), 1);
    json_decref(summary);
    CHECK_INT_EQ(store_stat(b, "writes_rejected"), 1);
    json_decref(receive_ok(b, lost)); /* late */
    fs_free(lost);
    CHECK_INT_EQ(store_stat(b, "writes_rejected"), 1);
    entries = outbox_ok(b, NULL);
    REQUIRE(entries != NULL && json_array_size(entries) == 1);
    CHECK_STR_EQ(jstr(json_array_get(entries, 0), "state"), "rejected");
    CHECK_STR_EQ(jstr(json_array_get(entries, 0), "reason"), "resolver_missing");
    json_decref(entries);
    CHECK_DEV_FIELD(b, "lines", "[\"p\"]");
    CHECK_SAME_RECORDS(b, h);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}
