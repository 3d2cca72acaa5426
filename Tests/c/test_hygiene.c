/* test_hygiene.c — fs_store_hygiene and fs_fetch_request (docs/HYGIENE.md):
 * the report and the stats keys, what is evicted and what is not, the
 * audit anchor, the hygiene options at open, bad arguments, closed handles,
 * bad refs, and a fetch end to end through fs_hub_handle + fs_sync_receive. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

#define DAY_MS ((int64_t)86400000)
#define T0_MS ((int64_t)1700000000000LL)

/* `task` with a retention policy: done/cancelled tasks are archived, others
 * are kept 60 days after their last change. */
#define RET_SCHEMA                                                                   \
    "{\"version\":1,\"types\":{\"task\":{\"fields\":{"                               \
    "\"status\":{\"type\":\"string\"},"                                              \
    "\"site\":{\"type\":\"string\"},"                                                \
    "\"picked\":{\"type\":\"int\",\"merge\":\"counter\"}},"                          \
    "\"required\":[\"status\"],"                                                     \
    "\"retention\":{\"keep_days\":60,\"archive_when\":{\"status\":[\"done\",\"cancelled\"]}}}}}"

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

static int64_t hyg_clock(void *ctx) { return *(const int64_t *)ctx; }

/* A hub and the device "d" (more_options: members without braces, may be
 * NULL), both on the clock *now. */
typedef struct {
    fs_hub *h;
    fs_store *s;
    int64_t now;
} hyg_world;

static int hyg_open(hyg_world *w, const char *more_options) {
    char *options = strf("{\"device_id\":\"d\",\"durability\":\"normal\"%s%s}",
                         more_options ? "," : "", more_options ? more_options : "");
    w->now = T0_MS;
    w->h = open_hub("hub.db", RET_SCHEMA, "{\"durability\":\"normal\"}");
    w->s = open_store("d.db", RET_SCHEMA, options);
    free(options);
    if (w->h == NULL || w->s == NULL || enroll(w->s, w->h, NULL) != 0) return 0;
    if (fs_store_set_clock(w->s, hyg_clock, &w->now) != FS_OK ||
        fs_hub_set_clock(w->h, hyg_clock, &w->now) != FS_OK) {
        fs_test_fail(__FILE__, __LINE__, "set_clock: %s", fs_last_error());
        return 0;
    }
    return 1;
}

static void hyg_close(hyg_world *w) {
    fs_store_close(w->s);
    fs_hub_close(w->h);
}

/* fs_store_hygiene that must succeed: the parsed report or NULL. */
static json_t *hygiene_ok_at(const char *file, int line, fs_store *s) {
    char *out = SENTINEL;
    fs_status st = fs_store_hygiene(s, &out);
    json_t *v;
    if (st != FS_OK) {
        fs_test_fail(file, line, "fs_store_hygiene returned %s: \"%s\"", fs_status_name(st),
                     fs_last_error());
        return NULL;
    }
    if (fs_last_error()[0] != '\0')
        fs_test_fail(file, line, "fs_last_error() is \"%s\" after a success", fs_last_error());
    if (out == NULL || out == SENTINEL) {
        fs_test_fail(file, line, "fs_store_hygiene returned FS_OK and no report");
        return NULL;
    }
    v = take_json_at(file, line, out);
    if (v != NULL && !json_is_object(v)) {
        fs_test_fail(file, line, "the hygiene report is not a JSON object");
        json_decref(v);
        return NULL;
    }
    return v;
}
#define hygiene_ok(s) hygiene_ok_at(__FILE__, __LINE__, (s))

/* The ids of the store's task rows, joined by ',' (malloc()ed). */
static char *view_ids(fs_store *s) {
    json_t *rows = query_ok(s, "{\"type\":\"task\"}");
    char *ids = ids_of(rows);
    json_decref(rows);
    return ids;
}

/* A failed call must leave its output NULL and a message. */
#define REFUSED(call, out, expected)                                                     \
    do {                                                                                 \
        out = SENTINEL;                                                                  \
        CHECK_STATUS(call, expected);                                                    \
        CHECK_ERROR_MESSAGE();                                                           \
        if ((out) != NULL) {                                                             \
            fs_test_fail(__FILE__, __LINE__, "%s: output not NULL after failure", #call); \
            free_out(out);                                                               \
        }                                                                                \
    } while (0)

/* ---- fs_store_hygiene: success paths ---- */

TEST(test_hygiene_report_has_the_documented_keys) {
    hyg_world w;
    json_t *report, *value;
    const char *key;
    const char *keys[] = {"records_evicted", "fetched_expired", "audit_rows_evicted",
                          "bytes_before",    "bytes_after",     "bytes_reclaimed"};
    size_t i;
    REQUIRE(hyg_open(&w, NULL));
    report = hygiene_ok(w.s); /* an empty store */
    REQUIRE(report != NULL);
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (!json_is_integer(json_object_get(report, keys[i])))
            fs_test_fail(__FILE__, __LINE__, "report key %s is missing or not an integer", keys[i]);
    }
    json_object_foreach(report, key, value) {
        if (!json_is_integer(value)) fs_test_fail(__FILE__, __LINE__, "report key %s is not an integer", key);
    }
    CHECK_INT_EQ(jint(report, "records_evicted"), 0);
    CHECK_INT_EQ(jint(report, "fetched_expired"), 0);
    CHECK_INT_EQ(jint(report, "audit_rows_evicted"), 0);
    CHECK(jint(report, "bytes_before") > 0);
    CHECK(jint(report, "bytes_after") > 0);
    CHECK_INT_EQ(jint(report, "bytes_reclaimed"),
                 jint(report, "bytes_before") > jint(report, "bytes_after")
                     ? jint(report, "bytes_before") - jint(report, "bytes_after")
                     : 0);
    json_decref(report);
    hyg_close(&w);
}

TEST(test_hygiene_stats_keys_before_and_after_a_pass) {
    hyg_world w;
    json_t *st, *report;
    char *ids;
    REQUIRE(hyg_open(&w, NULL));
    st = stats_ok(w.s);
    REQUIRE(st != NULL);
    CHECK(json_is_integer(json_object_get(st, "audit_anchor_seq")));
    CHECK_INT_EQ(jint(st, "audit_anchor_seq"), 0);
    CHECK_STR_EQ(jstr(st, "audit_anchor_hash"), ZERO_HASH);
    CHECK(json_is_integer(json_object_get(st, "records_cached")));
    CHECK(json_is_integer(json_object_get(st, "records_evicted")));
    CHECK_INT_EQ(jint(st, "records_cached"), 0);
    CHECK_INT_EQ(jint(st, "records_evicted"), 0);
    json_decref(st);

    create_task(w.s, "A", "open");
    create_task(w.s, "B", "open");
    create_task(w.s, "C", "open");
    CHECK(sync_now(w.s, w.h).rounds > 0);
    json_decref(apply_ok(w.s, act("A", "'set':{'status':'done'}")));
    json_decref(apply_ok(w.s, act("B", "'set':{'status':'cancelled'}")));
    /* archived but not acknowledged yet: kept */
    report = hygiene_ok(w.s);
    CHECK_INT_EQ(jint(report, "records_evicted"), 0);
    json_decref(report);
    CHECK(sync_now(w.s, w.h).rounds > 0);
    report = hygiene_ok(w.s);
    CHECK_INT_EQ(jint(report, "records_evicted"), 2);
    CHECK_INT_EQ(jint(report, "records_evicted_task"), 2);
    json_decref(report);
    ids = view_ids(w.s);
    CHECK_STR_EQ(ids, "C");
    free(ids);
    st = stats_ok(w.s);
    CHECK_INT_EQ(jint(st, "records"), 1);
    CHECK_INT_EQ(jint(st, "records_evicted"), 2);
    CHECK_INT_EQ(jint(st, "records_cached"), 0);
    json_decref(st);
    hyg_close(&w);
}

TEST(test_hygiene_keep_days_window_and_pending_records) {
    hyg_world w;
    json_t *report;
    char *ids;
    REQUIRE(hyg_open(&w, NULL));
    create_task(w.s, "old", "open");
    create_task(w.s, "recent", "open");
    CHECK(sync_now(w.s, w.h).rounds > 0);
    w.now += 30 * DAY_MS;
    json_decref(apply_ok(w.s, act("recent", "'inc':{'picked':1}")));
    CHECK(sync_now(w.s, w.h).rounds > 0);
    json_decref(apply_ok(w.s, act("pending", "'set':{'status':'done'}"))); /* never sent */
    w.now += 31 * DAY_MS; /* old: 61 days unchanged, recent: 31 */
    report = hygiene_ok(w.s);
    CHECK_INT_EQ(jint(report, "records_evicted"), 1);
    json_decref(report);
    ids = view_ids(w.s);
    CHECK_STR_EQ(ids, "pending,recent");
    free(ids);
    CHECK_INT_EQ(outbox_count(w.s), 1);
    hyg_close(&w);
}

TEST(test_hygiene_get_of_an_evicted_record_mentions_fetching) {
    hyg_world w;
    char *out = SENTINEL;
    char msg[FS_TEST_MSG_MAX];
    REQUIRE(hyg_open(&w, NULL));
    json_decref(apply_ok(w.s, act("A", "'set':{'status':'done'}")));
    CHECK(sync_now(w.s, w.h).rounds > 0);
    json_decref(hygiene_ok(w.s));
    CHECK_STATUS(fs_store_get(w.s, "task", "A", &out), FS_ERR_NOT_FOUND);
    fs_test_copy_last_error(msg);
    CHECK(out == NULL);
    if (strstr(msg, "fetch") == NULL)
        fs_test_fail(__FILE__, __LINE__, "message \"%s\" does not mention fetching", msg);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(w.s, "task", "never", &out), FS_ERR_NOT_FOUND);
    fs_test_copy_last_error(msg);
    if (strstr(msg, "fetch") != NULL)
        fs_test_fail(__FILE__, __LINE__, "message \"%s\" for a record never held mentions fetching", msg);
    hyg_close(&w);
}

TEST(test_hygiene_evicts_audit_rows_as_a_prefix_with_an_anchor) {
    hyg_world w;
    json_t *report, *st, *rows, *hub_rows;
    int i;
    REQUIRE(hyg_open(&w, "\"audit_keep_days\":30"));
    for (i = 0; i < 10; i++) {
        w.now += DAY_MS;
        json_decref(apply_ok(w.s, act("T", i == 0 ? "'set':{'status':'open'}" : "'inc':{'picked':1}")));
    }
    CHECK(sync_now(w.s, w.h).rounds > 0);
    json_decref(apply_ok(w.s, act("T", "'inc':{'picked':1}"))); /* 11: not sent */
    w.now += 25 * DAY_MS; /* rows of days 1..4 are more than 30 days old */
    report = hygiene_ok(w.s);
    CHECK_INT_EQ(jint(report, "audit_rows_evicted"), 4);
    json_decref(report);
    st = stats_ok(w.s);
    rows = audit_ok(w.s, NULL);
    hub_rows = hub_audit_ok(w.h, "{\"device_id\":\"d\"}");
    REQUIRE(st != NULL && rows != NULL && hub_rows != NULL);
    CHECK_INT_EQ(jint(st, "audit_anchor_seq"), 4);
    CHECK_INT_EQ(jint(st, "audit_rows"), 7);
    CHECK_INT_EQ(json_array_size(rows), 7);
    CHECK_INT_EQ(jint(json_array_get(rows, 0), "audit_id"), 5);
    CHECK_STR_EQ(jstr(json_array_get(rows, 0), "prev_hash"), jstr(st, "audit_anchor_hash"));
    /* the anchor is the hash of row 4, which the hub keeps */
    CHECK_INT_EQ(json_array_size(hub_rows), 10);
    CHECK_STR_EQ(jstr(json_array_get(hub_rows, 3), "hash"), jstr(st, "audit_anchor_hash"));
    CHECK_INT_EQ(verify_audit_chain(hub_rows), 0);
    json_decref(st);
    json_decref(rows);
    json_decref(hub_rows);
    hyg_close(&w);
}

TEST(test_hygiene_every_reports_a_pass_in_the_receive_summary) {
    hyg_world w;
    char *request, *response;
    json_t *summary, *pass;
    REQUIRE(hyg_open(&w, "\"hygiene_every\":2"));
    json_decref(apply_ok(w.s, act("A", "'set':{'status':'done'}")));
    json_decref(apply_ok(w.s, act("B", "'set':{'status':'open'}")));
    request = prepare_ok(w.s);
    REQUIRE(request != NULL);
    response = handle_ok(w.h, request);
    fs_free(request);
    REQUIRE(response != NULL);
    summary = receive_ok(w.s, response);
    fs_free(response);
    REQUIRE(summary != NULL);
    pass = json_object_get(summary, "hygiene");
    CHECK(json_is_object(pass));
    CHECK_INT_EQ(jint(pass, "records_evicted"), 1);
    CHECK(json_is_integer(json_object_get(pass, "bytes_reclaimed")));
    json_decref(summary);
    hyg_close(&w);
}

TEST(test_hygiene_hands_space_back_to_the_file_system) {
    hyg_world w;
    json_t *report, *st;
    int i;
    REQUIRE(hyg_open(&w, NULL));
    for (i = 0; i < 800; i++) {
        char id[32];
        snprintf(id, sizeof id, "T-%04d", i);
        json_decref(apply_ok(w.s, act(id, "'set':{'status':'done','site':'"
                                          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'}")));
    }
    CHECK(sync_now(w.s, w.h).rounds > 0);
    report = hygiene_ok(w.s);
    REQUIRE(report != NULL);
    CHECK_INT_EQ(jint(report, "records_evicted"), 800);
    /* 800 view rows and confirmed states are gone: the pages they used go back
     * to the file system (incremental vacuum, docs/HYGIENE.md). */
    if (!(jint(report, "bytes_after") < jint(report, "bytes_before")))
        fs_test_fail(__FILE__, __LINE__, "bytes_before %lld, bytes_after %lld: nothing reclaimed",
                     jint(report, "bytes_before"), jint(report, "bytes_after"));
    CHECK_INT_EQ(jint(report, "bytes_reclaimed"), jint(report, "bytes_before") - jint(report, "bytes_after"));
    st = stats_ok(w.s);
    CHECK_INT_EQ(jint(st, "file_bytes"), jint(report, "bytes_after"));
    json_decref(st);
    json_decref(report);
    hyg_close(&w);
}

/* ---- fs_store_hygiene: bad arguments ---- */

TEST(test_hygiene_rejects_null_arguments) {
    fs_store *s = open_store("a.db", RET_SCHEMA, NULL);
    char *out;
    REQUIRE(s != NULL);
    REFUSED(fs_store_hygiene(NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_store_hygiene(s, NULL), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    fs_store_close(s);
}

TEST(test_hygiene_and_fetch_on_a_closed_store) {
    fs_store *s = open_store("a.db", RET_SCHEMA, NULL);
    char *out;
    REQUIRE(s != NULL);
    CHECK_OK(fs_store_close(s));
    REFUSED(fs_store_hygiene(s, &out), out, FS_ERR_CLOSED);
    REFUSED(fs_fetch_request(s, "[{\"type\":\"task\",\"id\":\"A\"}]", &out), out, FS_ERR_CLOSED);
}

TEST(test_hygiene_refuses_a_hub_handle) {
    fs_hub *h = open_hub("hub.db", RET_SCHEMA, NULL);
    char *out;
    REQUIRE(h != NULL);
    REFUSED(fs_store_hygiene((fs_store *)(void *)h, &out), out, FS_ERR_ARG);
    REFUSED(fs_fetch_request((fs_store *)(void *)h, "[{\"type\":\"task\",\"id\":\"A\"}]", &out), out,
            FS_ERR_ARG);
    fs_hub_close(h);
}

/* ---- hygiene options at open ---- */

TEST(test_hygiene_bad_options_at_open) {
    const char *bad[] = {
        "{\"audit_keep_days\":0}",      "{\"audit_keep_days\":-1}",
        "{\"audit_keep_days\":\"30\"}", "{\"audit_keep_days\":1.5}",
        "{\"hygiene_every\":-1}",       "{\"hygiene_every\":\"5\"}",
        "{\"hygiene_on_open\":1}",      "{\"hygiene_on_open\":\"yes\"}",
        "{\"fetch_ttl_ms\":\"x\"}",     "{\"fetch_ttl_ms\":0}",
        "{\"fetch_ttl_ms\":null}",
    };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fs_store *s = (fs_store *)(void *)SENTINEL;
        fs_status st = fs_store_open(test_path("bad.db"), RET_SCHEMA, bad[i], &s);
        if (st != FS_ERR_ARG)
            fs_test_fail(__FILE__, __LINE__, "options %s: %s (\"%s\"), expected FS_ERR_ARG", bad[i],
                         fs_status_name(st), fs_last_error());
        else if (fs_last_error()[0] == '\0')
            fs_test_fail(__FILE__, __LINE__, "options %s: no message", bad[i]);
        if (s != NULL) {
            fs_test_fail(__FILE__, __LINE__, "options %s: handle not NULL after failure", bad[i]);
            if (st == FS_OK) fs_store_close(s);
        }
    }
}

TEST(test_hygiene_good_options_at_open) {
    fs_store *s = open_store("a.db", RET_SCHEMA,
                             "{\"audit_keep_days\":1,\"hygiene_on_open\":true,\"hygiene_every\":0,"
                             "\"fetch_ttl_ms\":1}");
    CHECK(s != NULL);
    fs_store_close(s);
    s = open_store("a.db", RET_SCHEMA, "{\"hygiene_on_open\":false,\"hygiene_every\":100}");
    CHECK(s != NULL);
    fs_store_close(s);
}

/* ---- fs_fetch_request ---- */

TEST(test_fetch_request_builds_a_request) {
    fs_store *s = open_store("a.db", RET_SCHEMA, "{\"device_id\":\"dev-f\"}");
    char *out = SENTINEL;
    json_t *req, *fetch;
    REQUIRE(s != NULL);
    REQUIRE_OK(fs_fetch_request(s, Q("[{'type':'task','id':'T-9'},{'type':'task','id':'T-10'}]"), &out));
    CHECK_NO_ERROR_MESSAGE();
    req = take_json(out);
    REQUIRE(req != NULL);
    CHECK_STR_EQ(jstr(req, "device_id"), "dev-f");
    CHECK(json_is_string(json_object_get(req, "batch")));
    CHECK(json_is_integer(json_object_get(req, "protocol")));
    CHECK_INT_EQ(jint(req, "schema_version"), 1);
    CHECK(json_is_array(json_object_get(req, "entries")));
    CHECK_INT_EQ(json_array_size(json_object_get(req, "entries")), 0);
    fetch = json_object_get(req, "fetch");
    CHECK_INT_EQ(json_array_size(fetch), 2);
    CHECK_STR_EQ(jstr(json_array_get(fetch, 0), "id"), "T-9");
    CHECK_STR_EQ(jstr(json_array_get(fetch, 1), "type"), "task");
    json_decref(req);
    fs_store_close(s);
}

TEST(test_fetch_request_rejects_null_arguments) {
    fs_store *s = open_store("a.db", RET_SCHEMA, NULL);
    const char *refs = "[{\"type\":\"task\",\"id\":\"A\"}]";
    char *out;
    REQUIRE(s != NULL);
    REFUSED(fs_fetch_request(NULL, refs, &out), out, FS_ERR_ARG);
    REFUSED(fs_fetch_request(s, NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_fetch_request(s, refs, NULL), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    fs_store_close(s);
}

TEST(test_fetch_request_refuses_bad_refs) {
    fs_store *s = open_store("a.db", RET_SCHEMA, NULL);
    char *out, *many, *p;
    json_t *st;
    long long batches;
    store_snap snap;
    size_t i, n = 1001;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    st = stats_ok(s);
    batches = jint(st, "batches_sent");
    json_decref(st);
    snap_take(s, &snap);
    /* not an array, or an empty one, or refs of the wrong shape */
    REFUSED(fs_fetch_request(s, Q("{'type':'task','id':'A'}"), &out), out, FS_ERR_ARG);
    REFUSED(fs_fetch_request(s, "\"task\"", &out), out, FS_ERR_ARG);
    REFUSED(fs_fetch_request(s, "42", &out), out, FS_ERR_ARG);
    REFUSED(fs_fetch_request(s, "null", &out), out, FS_ERR_ARG);
    REFUSED(fs_fetch_request(s, "[]", &out), out, FS_ERR_ARG);
    REFUSED(fs_fetch_request(s, Q("[{'type':'task'}]"), &out), out, FS_ERR_ARG);
    REFUSED(fs_fetch_request(s, Q("[{'id':'A'}]"), &out), out, FS_ERR_ARG);
    REFUSED(fs_fetch_request(s, Q("[{'type':'task','id':''}]"), &out), out, FS_ERR_ARG);
    REFUSED(fs_fetch_request(s, Q("[{'type':'task','id':7}]"), &out), out, FS_ERR_ARG);
    REFUSED(fs_fetch_request(s, Q("['A']"), &out), out, FS_ERR_ARG);
    /* unknown type */
    REFUSED(fs_fetch_request(s, Q("[{'type':'nope','id':'A'}]"), &out), out, FS_ERR_SCHEMA);
    REFUSED(fs_fetch_request(s, Q("[{'type':'task','id':'A'},{'type':'nope','id':'B'}]"), &out), out,
            FS_ERR_SCHEMA);
    /* malformed JSON, invalid UTF-8 */
    REFUSED(fs_fetch_request(s, "[{\"type\":\"task\",\"id\":", &out), out, FS_ERR_JSON);
    REFUSED(fs_fetch_request(s, "", &out), out, FS_ERR_JSON);
    REFUSED(fs_fetch_request(s, "[{\"type\":\"task\",\"id\":\"\xff\xfe\"}]", &out), out, FS_ERR_JSON);
    /* more than 1000 refs */
    many = (char *)malloc(n * 40 + 8);
    REQUIRE(many != NULL);
    p = many;
    *p++ = '[';
    for (i = 0; i < n; i++) p += sprintf(p, "%s{\"type\":\"task\",\"id\":\"T-%zu\"}", i ? "," : "", i);
    *p++ = ']';
    *p = '\0';
    REFUSED(fs_fetch_request(s, many, &out), out, FS_ERR_TOO_BIG);
    /* ... but exactly 1000 are fine */
    p = strrchr(many, '{');
    p[-1] = ']';
    p[0] = '\0';
    CHECK_UNCHANGED(s, &snap);
    st = stats_ok(s);
    CHECK_INT_EQ(jint(st, "batches_sent"), batches);
    json_decref(st);
    out = NULL;
    CHECK_OK(fs_fetch_request(s, many, &out));
    {
        json_t *req = take_json(out);
        CHECK_INT_EQ(json_array_size(json_object_get(req, "fetch")), 1000);
        json_decref(req);
    }
    free(many);
    fs_store_close(s);
}

TEST(test_fetch_request_over_the_json_limit_is_too_big) {
    fs_store *s = open_store("a.db", RET_SCHEMA, NULL);
    char *big, *out;
    size_t n = FS_MAX_JSON_BYTES + 16;
    REQUIRE(s != NULL);
    big = repeat_char(' ', n);
    big[0] = '[';
    big[n - 1] = ']';
    REFUSED(fs_fetch_request(s, big, &out), out, FS_ERR_TOO_BIG);
    free(big);
    fs_store_close(s);
}

/* ---- a fetch end to end ---- */

TEST(test_fetch_end_to_end_through_the_hub) {
    hyg_world w;
    fs_store *o;
    char *out = SENTINEL, *request = NULL, *response;
    json_t *resp, *summary, *rec, *st, *report;
    char *ids;
    int64_t other_clock;
    REQUIRE(hyg_open(&w, "\"fetch_ttl_ms\":60000"));
    /* another device creates A and B; d pulls them, then evicts them 61 days on */
    o = open_store("o.db", RET_SCHEMA, "{\"device_id\":\"o\",\"durability\":\"normal\"}");
    REQUIRE(o != NULL);
    other_clock = w.now;
    REQUIRE_OK(fs_store_set_clock(o, hyg_clock, &other_clock));
    json_decref(apply_ok(o, act("A", "'set':{'status':'open','site':'WH-1'}")));
    json_decref(apply_ok(o, act("B", "'set':{'status':'open'}")));
    CHECK(sync_now(o, w.h).rounds > 0);
    CHECK(sync_now(w.s, w.h).rounds > 0);
    w.now += 61 * DAY_MS;
    report = hygiene_ok(w.s);
    CHECK_INT_EQ(jint(report, "records_evicted"), 2);
    json_decref(report);
    CHECK_STATUS(fs_store_get(w.s, "task", "A", &out), FS_ERR_NOT_FOUND);

    REQUIRE_OK(fs_fetch_request(w.s, Q("[{'type':'task','id':'A'},{'type':'task','id':'zzz'}]"), &request));
    response = handle_ok(w.h, request);
    fs_free(request);
    REQUIRE(response != NULL);
    resp = json_loads(response, 0, NULL);
    REQUIRE(resp != NULL);
    CHECK_INT_EQ(json_array_size(json_object_get(resp, "fetched")), 1);
    CHECK_INT_EQ(json_array_size(json_object_get(resp, "missing")), 1);
    CHECK_STR_EQ(jstr(json_array_get(json_object_get(resp, "missing"), 0), "id"), "zzz");
    json_decref(resp);
    summary = receive_ok(w.s, response);
    fs_free(response);
    REQUIRE(summary != NULL);
    CHECK_INT_EQ(jint(summary, "fetched"), 1);
    CHECK_INT_EQ(jint(summary, "applied"), 0);
    CHECK_INT_EQ(jint(summary, "outbox"), 0);
    json_decref(summary);

    rec = get_ok(w.s, "task", "A");
    CHECK_STR_EQ(jstr(rec, "status"), "open");
    CHECK_STR_EQ(jstr(rec, "site"), "WH-1");
    json_decref(rec);
    st = stats_ok(w.s);
    CHECK_INT_EQ(jint(st, "records_cached"), 1);
    CHECK_INT_EQ(jint(st, "records_evicted"), 1);
    json_decref(st);

    /* cached for fetch_ttl_ms, then evicted again */
    w.now += 59000;
    report = hygiene_ok(w.s);
    CHECK_INT_EQ(jint(report, "fetched_expired"), 0);
    json_decref(report);
    ids = view_ids(w.s);
    CHECK_STR_EQ(ids, "A");
    free(ids);
    w.now += 2000;
    report = hygiene_ok(w.s);
    CHECK_INT_EQ(jint(report, "fetched_expired"), 1);
    CHECK_INT_EQ(jint(report, "records_evicted"), 0);
    json_decref(report);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(w.s, "task", "A", &out), FS_ERR_NOT_FOUND);
    CHECK(out == NULL);
    st = stats_ok(w.s);
    CHECK_INT_EQ(jint(st, "records_cached"), 0);
    CHECK_INT_EQ(jint(st, "records_evicted"), 2);
    json_decref(st);
    fs_store_close(o);
    hyg_close(&w);
}
