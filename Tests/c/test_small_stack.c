/* test_small_stack.c — every JSON door on a thread with a 64 KiB stack, the
 * stack of a firmware task: nesting at FS_MAX_DEPTH (FS_MAX_MESSAGE_DEPTH for
 * sync messages) is accepted where the text is otherwise valid, and nesting
 * past it (one level, 100,000 levels, valid or unterminated) is FS_ERR_JSON,
 * never a crash. A value at the deepest an action may carry goes through a
 * whole sync round trip on such a thread, through each envelope the engine
 * wraps it in (request, response, pull, fetch, resolver, stored states).
 * Only fs_* calls run on the small stack: jansson, used to check results,
 * recurses on its own account. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define SMALL_STACK FS_MIN_STACK_BYTES
#define FAR 100000

/* `depth` arrays around `inner`, then `tail` ("" for valid text). malloc()ed. */
static char *nested(int depth, const char *inner, int closed) {
    size_t n = strlen(inner);
    char *s = (char *)malloc(2 * (size_t)depth + n + 1), *p = s;
    if (s == NULL) abort();
    memset(p, '[', (size_t)depth);
    p += depth;
    memcpy(p, inner, n);
    p += n;
    if (closed) {
        memset(p, ']', (size_t)depth);
        p += depth;
    }
    *p = '\0';
    return s;
}

typedef void (*stack_body)(void *arg);
typedef struct {
    stack_body body;
    void *arg;
} stack_job;

static void *run_job(void *p) {
    stack_job *job = (stack_job *)p;
    job->body(job->arg);
    return NULL;
}

/* Runs body(arg) on a new thread with a 64 KiB stack and waits for it. A
 * stack overflow kills the forked test process: the runner reports it. */
static void on_small_stack(stack_body body, void *arg) {
    pthread_attr_t attr;
    pthread_t thread;
    stack_job job;
    job.body = body;
    job.arg = arg;
    REQUIRE(pthread_attr_init(&attr) == 0);
    REQUIRE(pthread_attr_setstacksize(&attr, SMALL_STACK) == 0);
    REQUIRE(pthread_create(&thread, &attr, run_job, &job) == 0);
    REQUIRE(pthread_join(thread, NULL) == 0);
    pthread_attr_destroy(&attr);
}

/* ---- each door with text nested at and past its limit ---- */

typedef fs_status (*door_fn)(const char *text);

static fs_store *g_store;
static fs_hub *g_hub;
/* fs_last_error() right after the call under test (a close would clear it). */
static char g_msg[FS_TEST_MSG_MAX];

static fs_status with_out(fs_status st, char *out) {
    fs_test_copy_last_error(g_msg);
    fs_free(out);
    return st;
}
static fs_status door_store_schema(const char *t) {
    fs_store *s = NULL;
    fs_status st = fs_store_open(test_path("schema.db"), t, NULL, &s);
    fs_test_copy_last_error(g_msg);
    fs_store_close(s);
    return st;
}
static fs_status door_store_options(const char *t) {
    fs_store *s = NULL;
    fs_status st = fs_store_open(test_path("options.db"), TASK_SCHEMA, t, &s);
    fs_test_copy_last_error(g_msg);
    fs_store_close(s);
    return st;
}
static fs_status door_hub_schema(const char *t) {
    fs_hub *h = NULL;
    fs_status st = fs_hub_open(test_path("hub-schema.db"), t, NULL, &h);
    fs_test_copy_last_error(g_msg);
    fs_hub_close(h);
    return st;
}
static fs_status door_hub_options(const char *t) {
    fs_hub *h = NULL;
    fs_status st = fs_hub_open(test_path("hub-options.db"), TASK_SCHEMA, t, &h);
    fs_test_copy_last_error(g_msg);
    fs_hub_close(h);
    return st;
}
static fs_status door_apply(const char *t) {
    char *out = NULL;
    fs_status st = fs_store_apply(g_store, t, &out);
    return with_out(st, out);
}
static fs_status door_query(const char *t) {
    char *out = NULL;
    fs_status st = fs_store_query(g_store, t, &out);
    return with_out(st, out);
}
static fs_status door_outbox_list(const char *t) {
    char *out = NULL;
    fs_status st = fs_outbox_list(g_store, t, &out);
    return with_out(st, out);
}
static fs_status door_audit_query(const char *t) {
    char *out = NULL;
    fs_status st = fs_audit_query(g_store, t, &out);
    return with_out(st, out);
}
static fs_status door_fetch_request(const char *t) {
    char *out = NULL;
    fs_status st = fs_fetch_request(g_store, t, &out);
    return with_out(st, out);
}
static fs_status door_receive(const char *t) {
    char *out = NULL;
    fs_status st = fs_sync_receive(g_store, t, &out);
    return with_out(st, out);
}
static fs_status door_hub_handle(const char *t) {
    char *out = NULL;
    fs_status st = fs_hub_handle(g_hub, t, &out);
    return with_out(st, out);
}
static fs_status door_hub_query(const char *t) {
    char *out = NULL;
    fs_status st = fs_hub_query(g_hub, t, &out);
    return with_out(st, out);
}
static fs_status door_hub_audit_query(const char *t) {
    char *out = NULL;
    fs_status st = fs_hub_audit_query(g_hub, t, &out);
    return with_out(st, out);
}

typedef struct {
    const char *name;
    door_fn fn;
    int limit; /* FS_MAX_DEPTH or FS_MAX_MESSAGE_DEPTH */
} door;

static const door DOORS[] = {
    {"fs_store_open schema", door_store_schema, FS_MAX_DEPTH},
    {"fs_store_open options", door_store_options, FS_MAX_DEPTH},
    {"fs_store_apply", door_apply, FS_MAX_DEPTH},
    {"fs_store_query", door_query, FS_MAX_DEPTH},
    {"fs_outbox_list", door_outbox_list, FS_MAX_DEPTH},
    {"fs_audit_query", door_audit_query, FS_MAX_DEPTH},
    {"fs_fetch_request", door_fetch_request, FS_MAX_DEPTH},
    {"fs_sync_receive", door_receive, FS_MAX_MESSAGE_DEPTH},
    {"fs_hub_open schema", door_hub_schema, FS_MAX_DEPTH},
    {"fs_hub_open options", door_hub_options, FS_MAX_DEPTH},
    {"fs_hub_handle", door_hub_handle, FS_MAX_MESSAGE_DEPTH},
    {"fs_hub_query", door_hub_query, FS_MAX_DEPTH},
    {"fs_hub_audit_query", door_hub_audit_query, FS_MAX_DEPTH},
};
#define DOOR_COUNT (sizeof DOORS / sizeof DOORS[0])

static void check_door(const door *d) {
    /* At the limit: an object whose member nests to exactly the limit. The
     * shape may be wrong for the door (FS_ERR_ARG, FS_ERR_SCHEMA), but the
     * nesting is not what refuses it. */
    char *deep = nested(d->limit - 1, "1", 1);
    char *at = strf("{\"x\":%s}", deep);
    char *past = nested(d->limit + 1, "1", 1);
    char *far_valid = nested(FAR, "1", 1);
    char *far_open = nested(FAR, "", 0);
    char *in_string = strf("[\"%s\"]", far_open); /* brackets in a string are text */
    const char *texts[4];
    size_t i;
    fs_status st = d->fn(at);
    if (st == FS_ERR_JSON)
        fs_test_fail(__FILE__, __LINE__, "%s refused nesting at its limit (%d): %s", d->name,
                     d->limit, g_msg);
    st = d->fn(in_string);
    if (st == FS_ERR_JSON)
        fs_test_fail(__FILE__, __LINE__, "%s counted brackets inside a string: %s", d->name,
                     g_msg);
    texts[0] = past;
    texts[1] = far_valid;
    texts[2] = far_open;
    texts[3] = far_open + 1;
    for (i = 0; i < 4; i++) {
        st = d->fn(texts[i]);
        if (st != FS_ERR_JSON || strstr(g_msg, "nested deeper than") == NULL ||
            strstr(g_msg, "column") == NULL)
            fs_test_fail(__FILE__, __LINE__, "%s, text %d: %s \"%s\", expected FS_ERR_JSON with the "
                         "depth and its position", d->name, (int)i, fs_status_name(st), g_msg);
    }
    free(deep);
    free(at);
    free(past);
    free(far_valid);
    free(far_open);
    free(in_string);
}

static void every_door(void *unused) {
    size_t i;
    (void)unused;
    for (i = 0; i < DOOR_COUNT; i++) check_door(&DOORS[i]);
}

TEST(test_every_json_door_holds_its_depth_limit_on_a_64k_stack) {
    g_store = open_task_store();
    g_hub = open_task_hub();
    REQUIRE(g_store != NULL && g_hub != NULL);
    create_task(g_store, "T-1", "open");
    on_small_stack(every_door, NULL);
    fs_store_close(g_store);
    fs_hub_close(g_hub);
}

/* ---- the deepest action through a whole round trip ---- */

/* An action on `id` that nests `input_depth` levels through its input and
 * `lines_depth` levels through its json field `lines` (the action's own
 * braces count: `{"input":[]}` nests 2). */
static char *deep_action(const char *id, int input_depth, int lines_depth) {
    char *input = nested(input_depth - 1, "\"in\"", 1);
    char *lines = nested(lines_depth - 2, "\"ln\"", 1);
    char *action = strf("{\"action\":\"edit\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"%s\","
                        "\"set\":{\"status\":\"open\",\"lines\":%s},\"input\":%s}",
                        id, lines, input);
    free(input);
    free(lines);
    return action;
}

typedef struct {
    fs_store *a, *b, *c;
    fs_hub *hub;
} world;

/* prepare -> hub -> receive until nothing is due; returns the first status
 * that is not FS_OK (recording it), FS_OK otherwise. */
static fs_status sync_all(fs_store *s, fs_hub *h, const char *who) {
    int round;
    for (round = 0; round < 20; round++) {
        char *request = NULL, *response = NULL, *summary = NULL;
        int64_t wait = 0;
        fs_status st = fs_sync_prepare(s, &request, &wait);
        if (st != FS_OK || request == NULL) {
            if (st != FS_OK) fs_test_fail(__FILE__, __LINE__, "%s prepare: %s", who, fs_last_error());
            return st;
        }
        st = fs_hub_handle(h, request, &response);
        fs_free(request);
        if (st != FS_OK) {
            fs_test_fail(__FILE__, __LINE__, "%s hub: %s", who, fs_last_error());
            return st;
        }
        st = fs_sync_receive(s, response, &summary);
        fs_free(response);
        fs_free(summary);
        if (st != FS_OK) {
            fs_test_fail(__FILE__, __LINE__, "%s receive: %s", who, fs_last_error());
            return st;
        }
    }
    return FS_OK;
}

static void round_trip(void *p) {
    world *w = (world *)p;
    char *action = deep_action("T-1", FS_MAX_DEPTH, FS_MAX_DEPTH);
    char *deeper_input = deep_action("T-2", FS_MAX_DEPTH + 1, FS_MAX_DEPTH);
    char *deeper_lines = deep_action("T-2", FS_MAX_DEPTH, FS_MAX_DEPTH + 1);
    char *out = NULL;
    int64_t pending = -1;
    CHECK_OK(fs_store_apply(w->a, action, &out));
    fs_free(out);
    out = NULL;
    /* an unrelated action queued with it must not be held back */
    CHECK_OK(fs_store_apply(w->a, act("T-3", "'set':{'status':'open'}"), &out));
    fs_free(out);
    out = NULL;
    CHECK_STATUS(fs_store_apply(w->a, deeper_input, &out), FS_ERR_JSON);
    CHECK_STATUS(fs_store_apply(w->a, deeper_lines, &out), FS_ERR_JSON);
    sync_all(w->a, w->hub, "device a");
    CHECK_OK(fs_outbox_count(w->a, &pending));
    CHECK_INT_EQ(pending, 0);
    CHECK_OK(fs_sync_connectivity(w->b, 1));
    sync_all(w->b, w->hub, "device b");
    CHECK_OK(fs_store_get(w->b, "task", "T-1", &out));
    fs_free(out);
    out = NULL;
    CHECK_OK(fs_hub_audit_query(w->hub, NULL, &out));
    fs_free(out);
    out = NULL;
    CHECK_OK(fs_audit_query(w->a, NULL, &out));
    fs_free(out);
    out = NULL;
    CHECK_OK(fs_hub_query(w->hub, Q("{'type':'task'}"), &out));
    fs_free(out);
    free(action);
    free(deeper_input);
    free(deeper_lines);
}

TEST(test_an_action_at_the_depth_limit_syncs_and_drains_on_a_64k_stack) {
    world w;
    json_t *rec;
    char *lines;
    w.a = open_device("a", NULL);
    w.b = open_device("b", NULL);
    w.hub = open_task_hub();
    REQUIRE(w.a != NULL && w.b != NULL && w.hub != NULL);
    REQUIRE(enroll(w.a, w.hub, NULL) == 0 && enroll(w.b, w.hub, NULL) == 0);
    on_small_stack(round_trip, &w);
    /* device b holds the deep value as device a wrote it */
    rec = get_ok(w.b, "task", "T-1");
    lines = nested(FS_MAX_DEPTH - 2, "\"ln\"", 1);
    if (rec != NULL) {
        char *got = jdump(json_object_get(rec, "lines"));
        CHECK_STR_EQ(got, lines);
        free(got);
    }
    json_decref(rec);
    free(lines);
    CHECK_SAME_RECORDS(w.a, w.hub);
    CHECK_SAME_RECORDS(w.b, w.hub);
    fs_store_close(w.a);
    fs_store_close(w.b);
    fs_hub_close(w.hub);
}

/* ---- a resolver's answer: the deepest envelope ---- */

typedef struct {
    const char *answer; /* NULL: the resolver fails */
    int calls;
} answer_ctx;

static fs_status answer_resolver(void *vctx, const char *conflict_json, char **out) {
    answer_ctx *ctx = (answer_ctx *)vctx;
    size_t n;
    (void)conflict_json;
    ctx->calls++;
    if (ctx->answer == NULL) return FS_ERR_CONFLICT;
    n = strlen(ctx->answer) + 1;
    *out = (char *)malloc(n);
    if (*out == NULL) return FS_ERR_INTERNAL;
    memcpy(*out, ctx->answer, n);
    return FS_OK;
}

typedef struct {
    world w;
    answer_ctx ctx;
    char *at_limit;
} resolver_world;

/* T-1's lines in the store's view are `lines` (without jansson, which
 * recurses: this runs on the small stack). */
static void check_lines(fs_store *s, const char *lines, const char *when) {
    char *out = NULL;
    char *member = strf("\"lines\":%s", lines);
    CHECK_OK(fs_store_get(s, "task", "T-1", &out));
    if (out == NULL || strstr(out, member) == NULL)
        fs_test_fail(__FILE__, __LINE__, "%s: T-1 is %.200s..., without the resolver's answer", when,
                     out ? out : "(null)");
    fs_free(out);
    free(member);
}

/* Device b writes `lines` without having seen device a's write: the hub
 * asks the resolver. */
static void conflicting_writes(resolver_world *r, const char *lines_a, const char *lines_b) {
    char *out = NULL;
    char *a = strf("{\"action\":\"edit\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"T-1\","
                   "\"set\":{\"lines\":%s}}", lines_a);
    char *b = strf("{\"action\":\"edit\",\"actor\":\"op-2\",\"type\":\"task\",\"id\":\"T-1\","
                   "\"set\":{\"lines\":%s}}", lines_b);
    CHECK_OK(fs_store_apply(r->w.a, a, &out));
    fs_free(out);
    out = NULL;
    CHECK_OK(fs_store_apply(r->w.b, b, &out));
    fs_free(out);
    sync_all(r->w.a, r->w.hub, "device a");
    sync_all(r->w.b, r->w.hub, "device b");
    free(a);
    free(b);
}

static void resolver_rounds(void *p) {
    resolver_world *r = (resolver_world *)p;
    char *past = nested(FS_MAX_DEPTH + 1, "1", 1);
    char *far = nested(FAR, "", 0);
    char *out = NULL, *request = NULL;
    int64_t pending = -1;
    const char *bad[2];
    int i;
    /* both devices know T-1, then write lines concurrently */
    CHECK_OK(fs_store_apply(r->w.a, act("T-1", "'set':{'status':'open'}"), &out));
    fs_free(out);
    out = NULL;
    sync_all(r->w.a, r->w.hub, "device a");
    CHECK_OK(fs_sync_connectivity(r->w.b, 1));
    sync_all(r->w.b, r->w.hub, "device b");
    /* the answer nests FS_MAX_DEPTH: the hub stores it, the record state
     * {"changes":[{"state":{"fields":{"lines": answer}}}]} nests
     * FS_MAX_MESSAGE_DEPTH in the pulls of both devices */
    r->ctx.answer = r->at_limit;
    conflicting_writes(r, "[1]", "[2]");
    CHECK_INT_EQ(r->ctx.calls, 1);
    CHECK_OK(fs_sync_connectivity(r->w.a, 1));
    sync_all(r->w.a, r->w.hub, "device a");
    check_lines(r->w.a, r->at_limit, "device a after its pull");
    check_lines(r->w.b, r->at_limit, "device b after its receive");
    /* a fetch answers {"fetched":[{"state":{"fields":{"lines": answer}}}]} */
    CHECK_OK(fs_fetch_request(r->w.b, Q("[{'type':'task','id':'T-1'}]"), &request));
    if (request != NULL) {
        char *response = NULL, *summary = NULL;
        CHECK_OK(fs_hub_handle(r->w.hub, request, &response));
        CHECK_OK(fs_sync_receive(r->w.b, response, &summary));
        fs_free(response);
        fs_free(summary);
        fs_free(request);
    }
    check_lines(r->w.b, r->at_limit, "device b after its fetch");
    /* a failing resolver refuses a write from a device that never saw the
     * record, with the current state in the result:
     * {"results":[{"state":{"fields":{"lines": answer}}}]} */
    r->ctx.answer = NULL;
    CHECK_OK(fs_store_apply(r->w.c, act("T-1", "'set':{'status':'open','lines':[4]}"), &out));
    fs_free(out);
    out = NULL;
    sync_all(r->w.c, r->w.hub, "device c");
    /* answers nested past the limit refuse the write, visibly; nothing crashes */
    bad[0] = past;
    bad[1] = far;
    for (i = 0; i < 2; i++) {
        r->ctx.answer = bad[i];
        conflicting_writes(r, "[5]", "[6]");
    }
    CHECK_OK(fs_outbox_count(r->w.a, &pending));
    CHECK_INT_EQ(pending, 0);
    free(past);
    free(far);
}

TEST(test_a_resolver_answer_at_the_depth_limit_reaches_every_device_on_a_64k_stack) {
    resolver_world r;
    json_t *rows;
    memset(&r, 0, sizeof r);
    r.w.a = open_device("a", NULL);
    r.w.b = open_device("b", NULL);
    r.w.c = open_device("c", NULL);
    r.w.hub = open_task_hub();
    REQUIRE(r.w.a != NULL && r.w.b != NULL && r.w.c != NULL && r.w.hub != NULL);
    REQUIRE(enroll(r.w.a, r.w.hub, NULL) == 0 && enroll(r.w.b, r.w.hub, NULL) == 0 &&
            enroll(r.w.c, r.w.hub, NULL) == 0);
    r.at_limit = nested(FS_MAX_DEPTH, "7", 1);
    CHECK_OK(fs_hub_set_resolver(r.w.hub, "order_lines", answer_resolver, &r.ctx));
    on_small_stack(resolver_rounds, &r);
    CHECK_INT_EQ(r.ctx.calls, 4);
    /* device b's refused writes are in its outbox */
    rows = outbox_ok(r.w.b, Q("{'state':'rejected'}"));
    CHECK_INT_EQ(json_array_size(rows), 2);
    json_decref(rows);
    rows = outbox_ok(r.w.c, Q("{'state':'rejected'}"));
    CHECK_INT_EQ(json_array_size(rows), 1);
    if (json_array_size(rows) == 1) CHECK_STR_EQ(jstr(json_array_get(rows, 0), "reason"), "resolver_failed");
    json_decref(rows);
    CHECK_SAME_RECORDS(r.w.a, r.w.hub);
    fs_store_close(r.w.a);
    fs_store_close(r.w.b);
    fs_store_close(r.w.c);
    fs_hub_close(r.w.hub);
    free(r.at_limit);
}
