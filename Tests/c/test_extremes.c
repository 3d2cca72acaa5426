/* test_extremes.c — the device's sync budget at the extremes (issue 12):
 * every integer option at 0, -1, INT64_MIN, INT64_MAX and just past its
 * documented range (docs/ABI.md "Store options"), clocks returning the
 * extremes around every step, callbacks re-entering their own handle,
 * requests sized by bytes, a counter overflowing in receive, a full disk,
 * and fs_sync_connectivity's FS_ERR_BUSY. Each case runs in its own child
 * (runner.c), so an abort inside the library fails it. */
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "fixture.h"

#define MAX_DURATION_MS 316224000000LL /* 10 years of 366 days */
#define MAX_DAYS 36600LL               /* 100 years */
#define REAL_MS 1780000000000LL        /* 2026 */

/* A task schema whose records are kept keep_days, for hygiene. */
static char *schema_keeping(long long days) {
    return strf("{\"version\":1,\"types\":{\"task\":{\"fields\":{"
                "\"status\":{\"type\":\"string\"},\"picked\":{\"type\":\"int\",\"merge\":\"counter\"},"
                "\"doc\":{\"type\":\"json\"}},"
                "\"required\":[\"status\"],\"retention\":{\"keep_days\":%lld}}}}",
                days);
}

typedef struct {
    const char *key;
    long long low, high; /* the documented range */
    const char *pair;    /* an option both ends need besides it (cap >= base), or NULL */
} int_option;

static const int_option STORE_OPTIONS[] = {
    {"batch_size", 1, 100000, NULL},
    {"batch_bytes", 1, 16777216, NULL},
    {"pull_limit", 1, 100000, NULL},
    {"backoff_base_ms", 1, MAX_DURATION_MS, "\"backoff_cap_ms\":316224000000"},
    {"backoff_cap_ms", 1, MAX_DURATION_MS, "\"backoff_base_ms\":1"},
    {"max_attempts", 1, 1000000, NULL},
    {"pull_interval_ms", 0, MAX_DURATION_MS, NULL},
    {"fetch_ttl_ms", 1, MAX_DURATION_MS, NULL},
    {"audit_keep_days", 1, MAX_DAYS, NULL},
    {"hygiene_every", 0, 1000000000, NULL},
    {"busy_timeout_ms", 0, 2147483647, NULL},
};
#define STORE_OPTION_COUNT (sizeof STORE_OPTIONS / sizeof STORE_OPTIONS[0])

typedef struct {
    int64_t now;
} fixed_clock;

static int64_t read_clock(void *ctx) { return ((fixed_clock *)ctx)->now; }

/* Every step that computes with options and the clock, each expected to
 * succeed: apply, sync, a failure and its backoff, connectivity, a fetch,
 * hygiene, and prepare twice more. `clocks` are the values the clock takes
 * in turn, one per step. */
static void drive_at(const char *file, int line, fs_store *s, fs_hub *h, fixed_clock *c,
                     const int64_t *clocks, int nclocks) {
    int step = 0;
    char *out = NULL, *request = NULL, *response = NULL;
    int64_t wait = 0;
    json_t *summary;
#define NEXT_CLOCK() (c->now = clocks[step++ % nclocks])
#define STEP_OK(call)                                                                         \
    do {                                                                                      \
        fs_status st_ = (call);                                                               \
        if (st_ != FS_OK) {                                                                   \
            fs_test_fail(file, line, "%s returned %s at clock %lld: \"%s\"", #call,           \
                         fs_status_name(st_), (long long)c->now, fs_last_error());            \
            return;                                                                           \
        }                                                                                     \
    } while (0)
    NEXT_CLOCK();
    STEP_OK(fs_store_apply(s, Q("{'action':'open','actor':'op-1','type':'task','id':'T-1',"
                                "'set':{'status':'open'},'inc':{'picked':1}}"), &out));
    fs_free(out);
    NEXT_CLOCK();
    STEP_OK(fs_store_apply(s, act("T-2", "'set':{'status':'open'}"), &out));
    fs_free(out);
    NEXT_CLOCK();
    STEP_OK(fs_sync_prepare(s, &request, &wait));
    if (request) {
        NEXT_CLOCK();
        response = handle_ok_at(file, line, h, request);
        fs_free(request);
        request = NULL;
        if (!response) return;
        NEXT_CLOCK();
        STEP_OK(fs_sync_receive(s, response, &out));
        fs_free(response);
        fs_free(out);
    }
    NEXT_CLOCK();
    /* Sets the required field again: at a clock far ahead of the hub's, the
     * hub rejects T-1's creation (clock_skew) and the device's view drops it. */
    STEP_OK(fs_store_apply(s, act("T-1", "'set':{'status':'open'},'inc':{'picked':2}"), &out));
    fs_free(out);
    NEXT_CLOCK();
    STEP_OK(fs_sync_prepare(s, &request, &wait));
    fs_free(request);
    request = NULL;
    NEXT_CLOCK();
    STEP_OK(fs_sync_fail(s, "timeout"));
    NEXT_CLOCK();
    STEP_OK(fs_sync_prepare(s, &request, &wait));
    fs_free(request);
    request = NULL;
    NEXT_CLOCK();
    STEP_OK(fs_sync_fail(s, "timeout again"));
    NEXT_CLOCK();
    STEP_OK(fs_sync_connectivity(s, 1));
    NEXT_CLOCK();
    (void)sync_until_idle_at(file, line, s, h);
    NEXT_CLOCK();
    STEP_OK(fs_fetch_request(s, Q("[{'type':'task','id':'T-2'}]"), &request));
    NEXT_CLOCK();
    response = handle_ok_at(file, line, h, request);
    fs_free(request);
    request = NULL;
    if (!response) return;
    NEXT_CLOCK();
    STEP_OK(fs_sync_receive(s, response, &out));
    fs_free(response);
    summary = take_json(out);
    json_decref(summary);
    NEXT_CLOCK();
    STEP_OK(fs_store_hygiene(s, &out));
    fs_free(out);
    NEXT_CLOCK();
    STEP_OK(fs_sync_prepare(s, &request, &wait));
    fs_free(request);
    request = NULL;
    NEXT_CLOCK();
    STEP_OK(fs_sync_prepare(s, &request, &wait));
    fs_free(request);
    NEXT_CLOCK();
    STEP_OK(fs_store_stats(s, &out));
    fs_free(out);
#undef NEXT_CLOCK
#undef STEP_OK
}
#define drive(s, h, c, clocks, n) drive_at(__FILE__, __LINE__, (s), (h), (c), (clocks), (n))

static fs_store *open_options(const char *name, const char *schema, const char *options, fs_status *st) {
    fs_store *s = NULL;
    *st = fs_store_open(test_path(name), schema, options, &s);
    return *st == FS_OK ? s : NULL;
}

TEST(test_extremes_every_store_option_outside_its_range_is_refused_naming_the_range) {
    static const long long bad[] = {-1, INT64_MIN, INT64_MAX};
    char *schema = schema_keeping(30);
    size_t i, j;
    for (i = 0; i < STORE_OPTION_COUNT; i++) {
        const int_option *o = &STORE_OPTIONS[i];
        long long values[5];
        int n = 0;
        char high[32];
        snprintf(high, sizeof high, "%lld", o->high);
        for (j = 0; j < 3; j++) values[n++] = bad[j];
        values[n++] = o->high + 1;
        if (o->low > 0) values[n++] = o->low - 1; /* 0 */
        for (j = 0; j < (size_t)n; j++) {
            char *options = strf("{\"%s\":%lld}", o->key, values[j]);
            fs_status st;
            char msg[FS_TEST_MSG_MAX];
            fs_store *s = open_options("refused.db", schema, options, &st);
            fs_test_copy_last_error(msg);
            if (st != FS_ERR_ARG)
                fs_test_fail(__FILE__, __LINE__, "%s: returned %s, expected FS_ERR_ARG (\"%s\")", options,
                             fs_status_name(st), msg);
            else if (!strstr(msg, o->key) || !strstr(msg, high))
                fs_test_fail(__FILE__, __LINE__, "%s: the message does not name the option and its range: \"%s\"",
                             options, msg);
            fs_store_close(s);
            free(options);
        }
    }
    free(schema);
}

TEST(test_extremes_hub_busy_timeout_outside_its_range_is_refused_naming_the_range) {
    static const long long bad[] = {-1, INT64_MIN, INT64_MAX, 2147483648LL};
    size_t j;
    for (j = 0; j < 4; j++) {
        char *options = strf("{\"busy_timeout_ms\":%lld}", bad[j]);
        fs_hub *h = NULL;
        char msg[FS_TEST_MSG_MAX];
        fs_status st = fs_hub_open(test_path("hub.db"), TASK_SCHEMA, options, &h);
        fs_test_copy_last_error(msg);
        CHECK_INT_EQ(st, FS_ERR_ARG);
        if (!strstr(msg, "2147483647")) fs_test_fail(__FILE__, __LINE__, "%s: \"%s\"", options, msg);
        fs_hub_close(h);
        free(options);
    }
}

TEST(test_extremes_schema_keep_days_outside_its_range_is_refused_naming_the_range) {
    static const long long bad[] = {0, -1, INT64_MIN, INT64_MAX, 1000000000000LL, MAX_DAYS + 1};
    size_t j;
    for (j = 0; j < sizeof bad / sizeof bad[0]; j++) {
        char *schema = schema_keeping(bad[j]);
        fs_status st;
        char msg[FS_TEST_MSG_MAX];
        fs_store *s = open_options("keep.db", schema, NULL, &st);
        fs_hub *h = NULL;
        fs_test_copy_last_error(msg);
        if (st != FS_ERR_SCHEMA || !strstr(msg, "36600"))
            fs_test_fail(__FILE__, __LINE__, "keep_days %lld: %s \"%s\"", bad[j], fs_status_name(st), msg);
        fs_store_close(s);
        CHECK_STATUS(fs_hub_open(test_path("hub.db"), schema, NULL, &h), FS_ERR_SCHEMA);
        fs_hub_close(h);
        free(schema);
    }
}

/* Each option at both ends of its range is accepted, and every later step
 * works with it, whatever the clock says. */
TEST(test_extremes_every_store_option_at_its_bounds_works_through_every_step) {
    static const int64_t clocks[] = {REAL_MS, INT64_MAX, INT64_MIN, -1, 0, REAL_MS};
    char *schema = schema_keeping(MAX_DAYS);
    size_t i;
    int end;
    for (i = 0; i < STORE_OPTION_COUNT; i++) {
        for (end = 0; end < 2; end++) {
            const int_option *o = &STORE_OPTIONS[i];
            long long value = end ? o->high : o->low;
            char *options = strf("{\"durability\":\"normal\",\"device_id\":\"dev-x\",\"%s\":%lld%s%s}", o->key, value,
                                 o->pair ? "," : "", o->pair ? o->pair : "");
            fs_status st;
            fs_store *s;
            fs_hub *h;
            fixed_clock c;
            char *name = strf("%s-%d.db", o->key, end), *hub_name;
            c.now = REAL_MS;
            s = open_options(name, schema, options, &st);
            if (s == NULL) {
                fs_test_fail(__FILE__, __LINE__, "%s refused: %s \"%s\"", options, fs_status_name(st), fs_last_error());
                free(options);
                free(name);
                continue;
            }
            hub_name = strf("hub-%s", name);
            h = open_hub(hub_name, schema, NULL);
            CHECK(enroll(s, h, NULL) == 0);
            CHECK_OK(fs_store_set_clock(s, read_clock, &c));
            CHECK_OK(fs_hub_set_clock(h, read_clock, &c));
            drive(s, h, &c, clocks, 6);
            fs_store_close(s);
            fs_hub_close(h);
            free(options);
            free(name);
            free(hub_name);
        }
    }
    free(schema);
}

/* "Forever" spelled the natural way in each option at once, with clocks at
 * every extreme: nothing aborts, every step answers FS_OK. */
static void all_options_at_their_maximum_with_clock(const int64_t *clocks, int n) {
    char *schema = schema_keeping(MAX_DAYS);
    fs_store *s = open_store("max.db", schema,
                             "{\"durability\":\"normal\",\"device_id\":\"dev-max\",\"pull_interval_ms\":316224000000,"
                             "\"fetch_ttl_ms\":316224000000,\"audit_keep_days\":36600,\"backoff_base_ms\":316224000000,"
                             "\"backoff_cap_ms\":316224000000,\"hygiene_every\":1,\"max_attempts\":1000000,"
                             "\"batch_size\":100000,\"pull_limit\":100000,"
                             "\"busy_timeout_ms\":2147483647}");
    fs_hub *h = open_hub("hub.db", schema, NULL);
    fixed_clock c;
    free(schema);
    if (!s || !h || enroll(s, h, NULL) != 0) return;
    c.now = clocks[0];
    CHECK_OK(fs_store_set_clock(s, read_clock, &c));
    CHECK_OK(fs_hub_set_clock(h, read_clock, &c));
    drive(s, h, &c, clocks, n);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_extremes_clock_at_int64_max_with_options_at_their_maximum) {
    static const int64_t clocks[] = {INT64_MAX};
    all_options_at_their_maximum_with_clock(clocks, 1);
}

TEST(test_extremes_clock_at_int64_min_with_options_at_their_maximum) {
    static const int64_t clocks[] = {INT64_MIN};
    all_options_at_their_maximum_with_clock(clocks, 1);
}

TEST(test_extremes_clock_at_minus_one_and_zero_with_options_at_their_maximum) {
    static const int64_t clocks[] = {-1, 0};
    all_options_at_their_maximum_with_clock(clocks, 2);
}

TEST(test_extremes_clock_jumping_between_the_extremes_at_every_step) {
    static const int64_t clocks[] = {INT64_MAX, INT64_MIN, REAL_MS, -1, INT64_MAX, 0, INT64_MIN};
    all_options_at_their_maximum_with_clock(clocks, 7);
}

/* The clock alone at the extremes, every option at its default. */
TEST(test_extremes_clock_at_each_extreme_with_default_options) {
    static const int64_t extremes[] = {INT64_MAX, INT64_MIN, -1, 0};
    size_t i;
    for (i = 0; i < 4; i++) {
        char *name = strf("dev-%u", (unsigned)i);
        fs_store *s = open_device(name, NULL);
        fs_hub *h = open_hub(Q("hub.db"), TASK_SCHEMA, NULL);
        fixed_clock c;
        int64_t clocks[2];
        clocks[0] = extremes[i];
        clocks[1] = extremes[(i + 1) % 4];
        c.now = clocks[0];
        if (s && h && enroll(s, h, NULL) == 0) {
            CHECK_OK(fs_store_set_clock(s, read_clock, &c));
            CHECK_OK(fs_hub_set_clock(h, read_clock, &c));
            drive(s, h, &c, clocks, 1);
            drive(s, h, &c, clocks, 2);
        }
        fs_store_close(s);
        fs_hub_close(h);
        free(name);
    }
}

/* The cases as reported: Python's sys.maxsize as "forever". */
TEST(test_extremes_int64_max_as_forever_is_refused_at_open_not_trapped_later) {
    static const char *const keys[] = {"pull_interval_ms", "fetch_ttl_ms", "audit_keep_days", "busy_timeout_ms"};
    size_t i;
    for (i = 0; i < 4; i++) {
        char *options = strf("{\"%s\":9223372036854775807}", keys[i]);
        fs_store *s = NULL;
        char msg[FS_TEST_MSG_MAX];
        fs_status st = fs_store_open(test_path("forever.db"), TASK_SCHEMA, options, &s);
        fs_test_copy_last_error(msg);
        CHECK_INT_EQ(st, FS_ERR_ARG);
        if (strstr(msg, "must be >= 0")) fs_test_fail(__FILE__, __LINE__, "%s: \"%s\"", options, msg);
        fs_store_close(s);
        free(options);
    }
}

/* ---- re-entrant callbacks ---------------------------------------------- */

typedef struct {
    fs_store *store;
    fs_status get_status, apply_status;
    int calls;
} reentrant_clock;

static int64_t clock_calling_its_store(void *ctx) {
    reentrant_clock *c = (reentrant_clock *)ctx;
    char *out = NULL;
    if (c->calls++ == 0) {
        c->get_status = fs_store_get(c->store, "task", "T-1", &out);
        fs_free(out);
        out = NULL;
        c->apply_status = fs_store_apply(c->store, act("T-9", "'set':{'status':'open'}"), &out);
        fs_free(out);
    }
    return REAL_MS;
}

TEST(test_extremes_clock_calling_its_own_store_gets_misuse_and_the_outer_call_completes) {
    fs_store *s = open_task_store();
    reentrant_clock c;
    json_t *r;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    memset(&c, 0, sizeof c);
    c.store = s;
    REQUIRE_OK(fs_store_set_clock(s, clock_calling_its_store, &c));
    r = apply_ok(s, act("T-1", "'inc':{'picked':1}"));
    json_decref(r);
    CHECK(c.calls >= 1);
    CHECK_INT_EQ(c.get_status, FS_ERR_MISUSE);
    CHECK_INT_EQ(c.apply_status, FS_ERR_MISUSE);
    CHECK_INT_EQ(outbox_count(s), 2); /* the outer apply, not the inner one */
    /* the store still works, with the clock gone */
    REQUIRE_OK(fs_store_set_clock(s, NULL, NULL));
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    CHECK_INT_EQ(outbox_count(s), 3);
    fs_store_close(s);
}

TEST(test_extremes_clock_calling_its_own_store_during_sync_steps_gets_misuse) {
    fs_store *s = open_device("dev-1", NULL);
    fs_hub *h = open_task_hub();
    reentrant_clock c;
    char *request = NULL;
    int64_t wait = 0;
    REQUIRE(s != NULL && h != NULL);
    create_task(s, "T-1", "open");
    memset(&c, 0, sizeof c);
    c.store = s;
    REQUIRE_OK(fs_store_set_clock(s, clock_calling_its_store, &c));
    CHECK_OK(fs_sync_prepare(s, &request, &wait));
    CHECK_INT_EQ(c.get_status, FS_ERR_MISUSE);
    CHECK_INT_EQ(c.apply_status, FS_ERR_MISUSE);
    fs_free(request);
    c.calls = 0;
    c.apply_status = FS_OK;
    CHECK_OK(fs_sync_fail(s, "x"));
    CHECK_INT_EQ(c.apply_status, FS_ERR_MISUSE);
    REQUIRE_OK(fs_store_set_clock(s, NULL, NULL));
    CHECK_OK(fs_sync_connectivity(s, 1));
    (void)sync_until_idle(s, h);
    CHECK_INT_EQ(outbox_count(s), 0);
    fs_store_close(s);
    fs_hub_close(h);
}

typedef struct {
    fs_hub *hub;
    fs_status inner;
    int calls;
} reentrant_resolver;

static fs_status resolver_calling_its_hub(void *ctx, const char *conflict, char **out) {
    reentrant_resolver *r = (reentrant_resolver *)ctx;
    char *response = NULL;
    (void)conflict;
    r->calls++;
    r->inner = fs_hub_handle(r->hub, "{}", &response);
    fs_free(response);
    *out = strdup("[\"merged\"]");
    return FS_OK;
}

TEST(test_extremes_resolver_calling_its_own_hub_gets_misuse_and_the_outer_call_completes) {
    fs_store *a = open_device("dev-a", NULL);
    fs_store *b = open_device("dev-b", NULL);
    fs_hub *h = open_task_hub();
    reentrant_resolver r;
    json_t *rows;
    REQUIRE(a && b && h);
    memset(&r, 0, sizeof r);
    r.hub = h;
    REQUIRE_OK(fs_hub_set_resolver(h, "order_lines", resolver_calling_its_hub, &r));
    create_task(a, "T-1", "open");
    (void)sync_now(a, h);
    (void)sync_now(b, h);
    json_decref(apply_ok(a, act("T-1", "'set':{'lines':['a']}")));
    json_decref(apply_ok(b, act("T-1", "'set':{'lines':['b']}")));
    (void)sync_now(a, h);
    (void)sync_now(b, h); /* concurrent: the resolver runs */
    CHECK(r.calls >= 1);
    CHECK_INT_EQ(r.inner, FS_ERR_MISUSE);
    rows = hub_query_ok(h, "{\"type\":\"task\"}");
    REQUIRE(rows != NULL && json_array_size(rows) == 1);
    CHECK_STR_EQ(json_string_value(json_array_get(json_object_get(json_array_get(rows, 0), "lines"), 0)), "merged");
    json_decref(rows);
    CHECK_INT_EQ(outbox_count(b), 0);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

/* ---- requests sized by bytes -------------------------------------------- */

static long long request_entries(const char *request) {
    json_t *v = json_loads(request, 0, NULL);
    long long n = v ? (long long)json_array_size(json_object_get(v, "entries")) : -1;
    json_decref(v);
    return n;
}

TEST(test_extremes_requests_stop_at_batch_bytes_with_at_least_one_entry) {
    fs_store *s = open_device("dev-1", "\"batch_bytes\":300000");
    fs_hub *h = open_task_hub();
    char *blob = repeat_char('x', 100000);
    char *action = strf("{\"action\":\"scan\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"T-1\","
                        "\"set\":{\"status\":\"open\"},\"input\":{\"blob\":\"%s\"}}",
                        blob);
    char *request = NULL, *response;
    int64_t wait = 0;
    int i, rounds = 0;
    REQUIRE(s && h);
    REQUIRE(enroll(s, h, NULL) == 0);
    for (i = 0; i < 10; i++) json_decref(apply_ok(s, action));
    while (outbox_count(s) > 0 && rounds < 20) {
        REQUIRE_OK(fs_sync_prepare(s, &request, &wait));
        REQUIRE(request != NULL);
        CHECK(strlen(request) < 300000 + 120000);
        CHECK(request_entries(request) >= 1 && request_entries(request) <= 3);
        response = handle_ok(h, request);
        fs_free(request);
        json_decref(receive_ok(s, response));
        fs_free(response);
        rounds++;
    }
    CHECK_INT_EQ(outbox_count(s), 0);
    CHECK(rounds >= 4);
    /* a budget smaller than one action: one entry per request */
    fs_store_close(s);
    s = open_device("dev-2", "\"batch_bytes\":1");
    REQUIRE(s != NULL);
    for (i = 0; i < 3; i++) json_decref(apply_ok(s, action));
    REQUIRE_OK(fs_sync_prepare(s, &request, &wait));
    REQUIRE(request != NULL);
    CHECK_INT_EQ(request_entries(request), 1);
    fs_free(request);
    fs_store_close(s);
    fs_hub_close(h);
    free(blob);
    free(action);
}

/* ---- one record's counter overflow ---------------------------------------- */

TEST(test_extremes_counter_overflow_in_one_record_never_blocks_the_receive) {
    /* dev-b holds more than a batch of increments of T-1 (and an unrelated
     * record); dev-a pushes T-1's counter to 3 * 2^61 ~ 2^62.6 first. */
    fs_store *a = open_device("dev-a", NULL);
    fs_store *b = open_device("dev-b", "\"batch_size\":2");
    fs_hub *h = open_task_hub();
    json_t *rec, *rows;
    long long big = 2305843009213693952LL; /* 2^61 */
    char *inc = strf("'inc':{'picked':%lld}", big);
    int i, rounds;
    REQUIRE(a && b && h);
    create_task(a, "T-1", "open");
    (void)sync_now(a, h);
    (void)sync_now(b, h);
    for (i = 0; i < 3; i++) json_decref(apply_ok(a, act("T-1", inc)));
    (void)sync_now(a, h);
    for (i = 0; i < 3; i++) json_decref(apply_ok(b, act("T-1", "'inc':{'picked':1000000000000000000}")));
    create_task(b, "T-2", "other");
    /* every round must succeed; the hub applies what fits, refuses the rest */
    for (rounds = 0; rounds < 10 && outbox_count(b) > 0; rounds++) {
        char *request = NULL, *response;
        int64_t wait = 0;
        json_t *summary;
        REQUIRE_OK(fs_sync_prepare(b, &request, &wait));
        if (!request) break;
        response = handle_ok(h, request);
        fs_free(request);
        summary = receive_ok(b, response);
        fs_free(response);
        REQUIRE(summary != NULL);
        json_decref(summary);
    }
    rows = outbox_ok(b, "{\"state\":\"rejected\"}");
    REQUIRE(rows != NULL);
    CHECK_INT_EQ(json_array_size(rows), 1); /* 3 * 2^61 + 2e18 fits, + 3e18 does not */
    json_decref(rows);
    rec = get_ok(b, "task", "T-2");
    CHECK_STR_EQ(jstr(rec, "status"), "other");
    json_decref(rec);
    rec = get_ok(b, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 3 * big + 2000000000000000000LL);
    json_decref(rec);
    rows = hub_query_ok(h, "{\"type\":\"task\",\"where\":{\"id\":\"T-1\"}}");
    REQUIRE(rows != NULL && json_array_size(rows) == 1);
    CHECK_INT_EQ(jint(json_array_get(rows, 0), "picked"), 3 * big + 2000000000000000000LL);
    json_decref(rows);
    free(inc);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

/* The device's confirmed state is behind the hub's: its own acknowledged
 * increment no longer fits on it (another device took the counter down at
 * the hub since). The receive still commits, and the record is pulled again. */
TEST(test_extremes_an_acknowledged_increment_that_overflows_the_held_state_repulls_the_record) {
    fs_store *a = open_device("dev-a", NULL);
    fs_store *b = open_device("dev-b", "\"pull_limit\":1");
    fs_hub *h = open_task_hub();
    char *request = NULL, *response;
    json_t *rec, *rows;
    REQUIRE(a && b && h);
    create_task(a, "T-1", "open");
    (void)sync_now(a, h);
    (void)sync_now(b, h);
    create_task(a, "T-2", "open"); /* fills b's next pull page */
    json_decref(apply_ok(a, act("T-1", "'inc':{'picked':8000000000000000000}")));
    (void)sync_now(a, h);
    json_decref(apply_ok(b, act("T-1", "'inc':{'picked':5000000000000000000}"))); /* view 5e18 */
    /* b learns 8e18 by a fetch, which sends none of its entries: its pending
     * 5e18 no longer fits on it and is left out of the view */
    REQUIRE_OK(fs_fetch_request(b, Q("[{'type':'task','id':'T-1'}]"), &request));
    response = handle_ok(h, request);
    fs_free(request);
    REQUIRE(response != NULL);
    json_decref(receive_ok(b, response));
    fs_free(response);
    rec = get_ok(b, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 8000000000000000000LL);
    json_decref(rec);
    json_decref(apply_ok(a, act("T-1", "'inc':{'picked':-7000000000000000000}")));
    (void)sync_now(a, h); /* the hub: 1e18 */
    /* b sends its 5e18 (the hub: 6e18); its pull page holds T-2 only, so it
     * folds the acknowledged 5e18 into the 8e18 it holds: it overflows */
    (void)sync_now(b, h);
    rows = hub_query_ok(h, "{\"type\":\"task\",\"where\":{\"id\":\"T-1\"}}");
    REQUIRE(rows != NULL && json_array_size(rows) == 1);
    CHECK_INT_EQ(jint(json_array_get(rows, 0), "picked"), 6000000000000000000LL);
    json_decref(rows);
    rec = get_ok(b, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 6000000000000000000LL);
    json_decref(rec);
    CHECK_INT_EQ(outbox_count(b), 0);
    CHECK_SAME_RECORDS(b, h);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

/* ---- a full disk ------------------------------------------------------- */

static void limit_file_size(rlim_t bytes) {
    struct rlimit r;
    if (getrlimit(RLIMIT_FSIZE, &r) != 0) return;
    r.rlim_cur = bytes;
    if (setrlimit(RLIMIT_FSIZE, &r) != 0) fs_test_fail(__FILE__, __LINE__, "setrlimit failed");
}

TEST(test_extremes_a_store_that_hit_full_drains_its_outbox_to_the_hub) {
    fs_store *s = open_device("dev-1", "\"batch_size\":5");
    fs_hub *h = open_task_hub();
    struct rlimit saved;
    char *blob = repeat_char('b', 20000);
    char *action = strf("{\"action\":\"scan\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"T-1\","
                        "\"inc\":{\"picked\":1},\"input\":{\"blob\":\"%s\"}}",
                        blob);
    int ok = 0, rounds = 0, i;
    fs_status st = FS_OK;
    json_t *rows;
    REQUIRE(s && h);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    signal(SIGXFSZ, SIG_IGN);
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    limit_file_size(600 * 1024);
    for (i = 0; i < 300; i++) {
        char *out = NULL;
        st = fs_store_apply(s, action, &out);
        if (st != FS_OK) break;
        fs_free(out);
        ok++;
    }
    if (st != FS_ERR_FULL && st != FS_ERR_IO) {
        fs_test_fail(__FILE__, __LINE__, "the store never filled: %s", fs_status_name(st));
        setrlimit(RLIMIT_FSIZE, &saved);
        return;
    }
    CHECK(ok > 5);
    /* still full: prepare -> hub (with room) -> receive, until drained */
    while (outbox_count(s) > 0 && rounds < 100) {
        char *request = NULL, *response = NULL, *summary = NULL;
        int64_t wait = 0;
        st = fs_sync_prepare(s, &request, &wait);
        if (st != FS_OK || request == NULL) {
            fs_test_fail(__FILE__, __LINE__, "round %d: fs_sync_prepare on a full store: %s \"%s\" (request %p)",
                         rounds, fs_status_name(st), fs_last_error(), (void *)request);
            break;
        }
        REQUIRE(setrlimit(RLIMIT_FSIZE, &saved) == 0);
        response = handle_ok(h, request);
        fs_free(request);
        limit_file_size(600 * 1024);
        if (!response) break;
        st = fs_sync_receive(s, response, &summary);
        fs_free(response);
        fs_free(summary);
        if (st != FS_OK) {
            fs_test_fail(__FILE__, __LINE__, "round %d: fs_sync_receive on a full store: %s \"%s\"", rounds,
                         fs_status_name(st), fs_last_error());
            break;
        }
        rounds++;
    }
    REQUIRE(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    CHECK_INT_EQ(outbox_count(s), 0);
    /* exactly once: the hub counted every successful apply once */
    rows = hub_query_ok(h, "{\"type\":\"task\"}");
    REQUIRE(rows != NULL && json_array_size(rows) == 1);
    CHECK_INT_EQ(jint(json_array_get(rows, 0), "picked"), ok);
    json_decref(rows);
    rows = hub_audit_ok(h, NULL);
    REQUIRE(rows != NULL);
    CHECK_INT_EQ(json_array_size(rows), ok + 1);
    json_decref(rows);
    /* with room again the store writes */
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    free(blob);
    free(action);
    fs_store_close(s);
    fs_hub_close(h);
}

/* ---- fs_sync_connectivity and FS_ERR_BUSY ----------------------------- */

TEST(test_extremes_connectivity_that_returns_busy_changes_nothing) {
    fs_store *s = open_device("dev-1", "\"busy_timeout_ms\":0");
    sqlite3 *other = NULL;
    char *request = SENTINEL;
    int64_t wait = 0;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    REQUIRE_OK(fs_sync_connectivity(s, 0));
    REQUIRE(sqlite3_open(test_path("dev-1.db"), &other) == SQLITE_OK);
    sqlite3_busy_timeout(other, 0);
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_STATUS(fs_sync_connectivity(s, 1), FS_ERR_BUSY);
    CHECK_ERROR_MESSAGE();
    sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(other);
    /* still offline: no request */
    CHECK_OK(fs_sync_prepare(s, &request, &wait));
    CHECK(request == NULL);
    if (request != SENTINEL) fs_free(request);
    CHECK_INT_EQ(wait, 60000);
    fs_store_close(s);
}
