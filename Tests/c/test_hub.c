/* test_hub.c — fs_hub_open (errors, options, reopening), close, the hub
 * clock behind server_received_at, fs_hub_query against fs_store_query,
 * fs_hub_audit_query filters and chain verification, fs_hub_stats. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fixture.h"

static int64_t hub_clock(void *ctx) { return *(const int64_t *)ctx; }

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Opens `path` as a hub expecting `expected`; out_hub must be NULL after. */
static void check_hub_open_fails(const char *file, int line, const char *path, const char *schema,
                                 const char *options, fs_status expected) {
    fs_hub *out = (fs_hub *)SENTINEL;
    char msg[FS_TEST_MSG_MAX];
    fs_status st = fs_hub_open(path, schema, options, &out);
    fs_test_copy_last_error(msg);
    if (st != expected)
        fs_test_fail(file, line, "fs_hub_open(%.80s, schema %.60s, options %.80s)\n"
                     "      returned %s, expected %s; fs_last_error: \"%s\"",
                     path ? path : "NULL", schema ? schema : "NULL", options ? options : "NULL",
                     fs_status_name(st), fs_status_name(expected), msg);
    else if (msg[0] == '\0')
        fs_test_fail(file, line, "fs_hub_open refused with an empty fs_last_error()");
    if (st != FS_OK && out != NULL)
        fs_test_fail(file, line, "fs_hub_open failed but out_hub is not NULL");
    if (out != NULL && out != (fs_hub *)SENTINEL) fs_hub_close(out);
}
#define CHECK_HUB_OPEN_FAILS(path, schema, options, expected) \
    check_hub_open_fails(__FILE__, __LINE__, (path), (schema), (options), (expected))

/* A hub that two devices have synced with:
 *   dev-a (op-1): T-1 open WH-1 picked 2, T-2 open WH-3 picked 7 urgent,
 *                 T-3 done, weight 1.5, then T-1 picked +3 (by op-2)
 *   dev-b (op-1), after pulling those: T-4 open WH-3 picked 4 weight 0.5,
 *                 T-2 tags [x] */
static fs_hub *synced_hub(fs_store **a_out, fs_store **b_out) {
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("dev-a", NULL);
    fs_store *b = open_device("dev-b", NULL);
    *a_out = a;
    *b_out = b;
    if (h == NULL || a == NULL || b == NULL) return h;
    json_decref(apply_ok(a, act("T-1", "'set':{'status':'open','site':'WH-1'},'inc':{'picked':2}")));
    json_decref(apply_ok(a, act("T-2", "'set':{'status':'open','site':'WH-3','urgent':true},"
                                       "'inc':{'picked':7}")));
    json_decref(apply_ok(a, act("T-3", "'set':{'status':'done','weight':1.5}")));
    json_decref(apply_ok(a, Q("{'action':'pick','actor':'op-2','type':'task','id':'T-1',"
                              "'inc':{'picked':3}}")));
    sync_until_idle(a, h);
    sync_until_idle(b, h); /* dev-b learns of T-1..T-3 */
    json_decref(apply_ok(b, act("T-4", "'set':{'status':'open','site':'WH-3','weight':0.5},"
                                       "'inc':{'picked':4}")));
    json_decref(apply_ok(b, act("T-2", "'add':{'tags':['x']}")));
    sync_until_idle(b, h);
    sync_now(a, h);
    return h;
}

/* ---- open and close ---- */

TEST(test_hub_open_creates_a_hub_and_close_succeeds) {
    fs_hub *h = NULL;
    json_t *stats;
    CHECK_OK(fs_hub_open(test_path("hub.db"), TASK_SCHEMA, NULL, &h));
    CHECK_NO_ERROR_MESSAGE();
    REQUIRE(h != NULL);
    stats = hub_stats_ok(h);
    REQUIRE(stats != NULL);
    CHECK_INT_EQ(jint(stats, "records"), 0);
    CHECK_INT_EQ(jint(stats, "devices"), 0);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 0);
    CHECK_INT_EQ(jint(stats, "entries_rejected"), 0);
    CHECK_INT_EQ(jint(stats, "audit_rows"), 0);
    CHECK_INT_EQ(jint(stats, "audit_chain_breaks"), 0);
    json_decref(stats);
    CHECK_OK(fs_hub_close(h));
    CHECK_NO_ERROR_MESSAGE();
}

TEST(test_hub_open_accepts_its_documented_options) {
    fs_hub *h = open_hub("a.db", TASK_SCHEMA, "{\"durability\":\"normal\",\"busy_timeout_ms\":0}");
    CHECK(h != NULL);
    fs_hub_close(h);
    h = open_hub("b.db", TASK_SCHEMA, "{\"durability\":\"full\",\"busy_timeout_ms\":100000}");
    CHECK(h != NULL);
    fs_hub_close(h);
    h = open_hub("c.db", TASK_SCHEMA, "{}");
    CHECK(h != NULL);
    fs_hub_close(h);
}

TEST(test_hub_open_rejects_bad_options) {
    static const char *const bad[] = {
        "{\"durabilty\":\"full\"}",   "{\"durability\":\"fast\"}", "{\"durability\":1}",
        "{\"busy_timeout_ms\":-1}",   "{\"busy_timeout_ms\":\"5\"}",
        "{\"device_id\":\"dev-1\"}", /* a store option, not a hub option */
        "{\"durability\":null}",      "{\"busy_timeout_ms\":null}",
        "[]",                         "\"full\"",
    };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_HUB_OPEN_FAILS(test_path("hub.db"), TASK_SCHEMA, bad[i], FS_ERR_ARG);
    CHECK_HUB_OPEN_FAILS(test_path("hub.db"), TASK_SCHEMA, "{", FS_ERR_JSON);
}

TEST(test_hub_open_rejects_an_invalid_schema) {
    static const char *const bad[] = {
        "{\"version\":0,\"types\":{\"task\":{\"fields\":{\"s\":{\"type\":\"string\"}}}}}",
        "{\"version\":1,\"types\":{}}",
        "{\"version\":1,\"types\":{\"task\":{\"fields\":{\"s\":{\"type\":\"blob\"}}}}}",
        "{\"version\":1,\"types\":{\"task\":{\"fields\":{\"n\":{\"type\":\"string\",\"merge\":\"counter\"}}}}}",
        "{\"version\":1,\"min_client_version\":2,\"types\":{\"task\":{\"fields\":{\"s\":{\"type\":\"string\"}}}}}",
        "{\"version\":1,\"types\":{\"fs_x\":{\"fields\":{\"s\":{\"type\":\"string\"}}}}}",
        "[]",
    };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_HUB_OPEN_FAILS(test_path("hub.db"), bad[i], NULL, FS_ERR_SCHEMA);
    CHECK_HUB_OPEN_FAILS(test_path("hub.db"), "{\"version\":1,", NULL, FS_ERR_JSON);
}

TEST(test_hub_open_rejects_null_path_schema_and_out) {
    CHECK_HUB_OPEN_FAILS(NULL, TASK_SCHEMA, NULL, FS_ERR_ARG);
    CHECK_HUB_OPEN_FAILS(test_path("hub.db"), NULL, NULL, FS_ERR_ARG);
    CHECK_STATUS(fs_hub_open(test_path("hub.db"), TASK_SCHEMA, NULL, NULL), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
}

TEST(test_hub_open_in_a_missing_directory_returns_io) {
    char *path = strf("%s/no/such/dir/hub.db", fs_test_dir());
    CHECK_HUB_OPEN_FAILS(path, TASK_SCHEMA, NULL, FS_ERR_IO);
    free(path);
}

TEST(test_hub_open_of_a_device_store_file_is_corrupt_and_leaves_it_alone) {
    fs_store *s = open_device("dev-1", NULL);
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    fs_store_close(s);
    CHECK_HUB_OPEN_FAILS(test_path("dev-1.db"), TASK_SCHEMA, NULL, FS_ERR_CORRUPT);
    s = open_device("dev-1", NULL);
    REQUIRE(s != NULL);
    CHECK_INT_EQ(outbox_count(s), 1);
    CHECK_INT_EQ(audit_count(s), 1);
    fs_store_close(s);
}

TEST(test_store_open_of_a_hub_file_is_corrupt) {
    fs_hub *h = open_task_hub();
    fs_store *out = (fs_store *)SENTINEL;
    REQUIRE(h != NULL);
    fs_hub_close(h);
    CHECK_STATUS(fs_store_open(test_path("hub.db"), TASK_SCHEMA, NULL, &out), FS_ERR_CORRUPT);
    CHECK_ERROR_MESSAGE();
    CHECK(out == NULL);
    h = open_task_hub(); /* and the hub is still a hub */
    CHECK(h != NULL);
    fs_hub_close(h);
}

TEST(test_hub_open_of_random_bytes_is_corrupt_and_leaves_the_file_alone) {
    unsigned char junk[8192], after[8192];
    const char *path = test_path("junk.db");
    size_t i;
    FILE *f;
    unsigned x = 777;
    for (i = 0; i < sizeof junk; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (unsigned char)(x >> 16);
    }
    REQUIRE(write_file(path, junk, sizeof junk) == 0);
    CHECK_HUB_OPEN_FAILS(path, TASK_SCHEMA, NULL, FS_ERR_CORRUPT);
    f = fopen(path, "rb");
    REQUIRE(f != NULL);
    CHECK(fread(after, 1, sizeof after, f) == sizeof after);
    CHECK(fgetc(f) == EOF);
    fclose(f);
    CHECK(memcmp(junk, after, sizeof junk) == 0);
}

TEST(test_hub_open_of_a_foreign_sqlite_database_is_corrupt) {
    const char *path = test_path("foreign.db");
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int tables = -1;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE invoices(id INTEGER PRIMARY KEY, total REAL);", NULL, NULL,
                         NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_HUB_OPEN_FAILS(path, TASK_SCHEMA, NULL, FS_ERR_CORRUPT);
    REQUIRE(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL) == SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) tables = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK_INT_EQ(tables, 1);
}

TEST(test_hub_reopen_keeps_everything_and_refuses_another_schema) {
    fs_store *a, *b;
    fs_hub *h = synced_hub(&a, &b);
    char *records, *audit, *again;
    json_t *stats;
    const char *changed = Q("{'version':1,'types':{'task':{'fields':{'status':{'type':'string'}}}}}");
    REQUIRE(h != NULL && a != NULL && b != NULL);
    records = hub_records(h);
    {
        json_t *rows = hub_audit_ok(h, NULL);
        audit = jdump(rows);
        json_decref(rows);
    }
    fs_hub_close(h);
    CHECK_HUB_OPEN_FAILS(test_path("hub.db"), changed, NULL, FS_ERR_SCHEMA);
    h = open_task_hub();
    REQUIRE(h != NULL);
    again = hub_records(h);
    CHECK_STR_EQ(again, records);
    free(again);
    {
        json_t *rows = hub_audit_ok(h, NULL);
        again = jdump(rows);
        json_decref(rows);
    }
    CHECK_STR_EQ(again, audit);
    free(again);
    stats = hub_stats_ok(h);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 6);
    CHECK_INT_EQ(jint(stats, "devices"), 2);
    json_decref(stats);
    /* and it goes on deduplicating and numbering after the restart */
    json_decref(apply_ok(a, act("T-1", "'inc':{'picked':1}")));
    CHECK_INT_EQ(sync_until_idle(a, h).applied, 1);
    sync_now(b, h);
    CHECK_SAME_RECORDS(a, h);
    CHECK_SAME_RECORDS(b, h);
    free(records);
    free(audit);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

TEST(test_hub_close_null_is_ok) {
    CHECK_OK(fs_hub_close(NULL));
    CHECK_NO_ERROR_MESSAGE();
}

TEST(test_hub_close_twice_returns_closed) {
    fs_hub *h = open_task_hub();
    REQUIRE(h != NULL);
    CHECK_OK(fs_hub_close(h));
    CHECK_STATUS(fs_hub_close(h), FS_ERR_CLOSED);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_hub_close(h), FS_ERR_CLOSED);
}

/* ---- the clock ---- */

TEST(test_hub_set_clock_drives_server_received_at) {
    int64_t now = 1600000000000LL;
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *request, *response;
    json_t *r, *rows;
    int64_t before, after;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    CHECK_OK(fs_hub_set_clock(h, hub_clock, &now));
    CHECK_NO_ERROR_MESSAGE();
    /* the device's clock agrees with the hub's: stamps more than
     * max_clock_skew_ms ahead of the hub's clock are refused */
    CHECK_OK(fs_store_set_clock(s, hub_clock, &now));

    create_task(s, "T-1", "open");
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    response = handle_ok(h, request);
    fs_free(request);
    REQUIRE(response != NULL);
    r = json_loads(response, 0, NULL);
    CHECK_INT_EQ(jint(r, "server_time"), now);
    json_decref(r);
    json_decref(receive_ok(s, response));
    fs_free(response);

    now = 1600000005000LL;
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    sync_until_idle(s, h);

    rows = hub_audit_ok(h, NULL);
    REQUIRE(rows != NULL && json_array_size(rows) == 2);
    CHECK_INT_EQ(jint(json_array_get(rows, 0), "server_received_at"), 1600000000000LL);
    CHECK_INT_EQ(jint(json_array_get(rows, 1), "server_received_at"), 1600000005000LL);
    json_decref(rows);
    /* the device learns the hub's time of receipt */
    rows = audit_ok(s, NULL);
    REQUIRE(rows != NULL && json_array_size(rows) == 2);
    CHECK_INT_EQ(jint(json_array_get(rows, 0), "server_received_at"), 1600000000000LL);
    CHECK_INT_EQ(jint(json_array_get(rows, 1), "server_received_at"), 1600000005000LL);
    json_decref(rows);

    /* NULL restores the system clock */
    CHECK_OK(fs_hub_set_clock(h, NULL, NULL));
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    before = wall_ms();
    sync_until_idle(s, h);
    after = wall_ms();
    rows = hub_audit_ok(h, NULL);
    REQUIRE(rows != NULL && json_array_size(rows) == 3);
    CHECK_INT_EQ(jint(json_array_get(rows, 2), "audit_id"), 3);
    CHECK(jint(json_array_get(rows, 2), "server_received_at") >= before);
    CHECK(jint(json_array_get(rows, 2), "server_received_at") <= after);
    json_decref(rows);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_hub_server_received_at_does_not_change_device_time_or_stamps) {
    int64_t hub_now = 1500000000000LL, device_now = 1700000000000LL;
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    json_t *before, *after;
    char *b, *a;
    size_t i;
    static const char *const device_fields[] = {"audit_id", "device_time", "hlc", "hash",
                                                "prev_hash", "actor", "action", "outbox_keys"};
    REQUIRE(h != NULL && s != NULL);
    CHECK_OK(fs_hub_set_clock(h, hub_clock, &hub_now));
    CHECK_OK(fs_store_set_clock(s, hub_clock, &device_now));
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    before = audit_ok(s, NULL);
    sync_until_idle(s, h);
    after = audit_ok(s, NULL);
    REQUIRE(before != NULL && after != NULL && json_array_size(after) == 2);
    for (i = 0; i < json_array_size(after); i++) {
        size_t k;
        for (k = 0; k < sizeof device_fields / sizeof device_fields[0]; k++) {
            b = jdump(json_object_get(json_array_get(before, i), device_fields[k]));
            a = jdump(json_object_get(json_array_get(after, i), device_fields[k]));
            if (strcmp(a, b) != 0)
                fs_test_fail(__FILE__, __LINE__, "row %zu: %s changed from %s to %s by sync", i,
                             device_fields[k], b, a);
            free(a);
            free(b);
        }
        CHECK_INT_EQ(jint(json_array_get(after, i), "device_time"), device_now);
        CHECK_INT_EQ(jint(json_array_get(after, i), "server_received_at"), hub_now);
    }
    json_decref(before);
    json_decref(after);
    fs_store_close(s);
    fs_hub_close(h);
}

/* ---- queries ---- */

TEST(test_hub_query_filters_like_store_query) {
    static const char *const queries[] = {
        "{'type':'task'}",
        "{'type':'task','where':{'status':'open'}}",
        "{'type':'task','where':{'site':'WH-3'}}",
        "{'type':'task','where':{'site':null}}",
        "{'type':'task','where':{'picked':{'>=':3,'<':10}}}",
        "{'type':'task','where':{'picked':{'>':4}}}",
        "{'type':'task','where':{'weight':{'<=':1.0}}}",
        "{'type':'task','where':{'urgent':true}}",
        "{'type':'task','where':{'id':{'!=':'T-2'}}}",
        "{'type':'task','where':{'status':'open','site':'WH-3'}}",
        "{'type':'task','order_by':'picked','desc':true}",
        "{'type':'task','order_by':'weight','limit':2}",
        "{'type':'task','order_by':'id','desc':true,'limit':3}",
    };
    fs_store *a, *b;
    fs_hub *h = synced_hub(&a, &b);
    size_t i;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    CHECK_SAME_RECORDS(a, h);
    for (i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        json_t *at_hub = hub_query_ok(h, Q(queries[i]));
        json_t *at_device = query_ok(a, Q(queries[i]));
        char *x = jdump(at_hub), *y = jdump(at_device);
        if (strcmp(x, y) != 0)
            fs_test_fail(__FILE__, __LINE__, "query %s:\n      hub    %.400s\n      device %.400s",
                         queries[i], x, y);
        free(x);
        free(y);
        json_decref(at_hub);
        json_decref(at_device);
    }
    /* and the filters do filter */
    {
        json_t *rows = hub_query_ok(h, Q("{'type':'task','where':{'site':'WH-3'}}"));
        char *ids = ids_of(rows);
        CHECK_STR_EQ(ids, "T-2,T-4");
        free(ids);
        json_decref(rows);
        rows = hub_query_ok(h, Q("{'type':'task','order_by':'picked','desc':true}"));
        ids = ids_of(rows);
        CHECK_STR_EQ(ids, "T-2,T-1,T-4,T-3");
        free(ids);
        json_decref(rows);
    }
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

TEST(test_hub_query_refuses_what_store_query_refuses) {
    static const struct {
        const char *query;
        fs_status expected;
    } bad[] = {
        {"{'type':'order'}", FS_ERR_SCHEMA},
        {"{'type':'task','where':{'aisle':1}}", FS_ERR_SCHEMA},
        {"{'type':'task','where':{'tags':'x'}}", FS_ERR_SCHEMA},
        {"{'type':'task','where':{'lines':1}}", FS_ERR_SCHEMA},
        {"{'type':'task','where':{'picked':'many'}}", FS_ERR_SCHEMA},
        {"{'type':'task','order_by':'tags'}", FS_ERR_SCHEMA},
        {"{'type':'task','where':{'picked':{'~':1}}}", FS_ERR_ARG},
        {"{'type':'task','bogus':1}", FS_ERR_ARG},
        {"{'where':{}}", FS_ERR_ARG},
        {"{'type':7}", FS_ERR_ARG},
        {"[]", FS_ERR_ARG},
        {"{", FS_ERR_JSON},
    };
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    size_t i;
    REQUIRE(h != NULL && s != NULL);
    create_task(s, "T-1", "open");
    sync_until_idle(s, h);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = SENTINEL;
        const char *q = Q(bad[i].query);
        fs_status st_store, st_hub = fs_hub_query(h, q, &out);
        if (st_hub != bad[i].expected)
            fs_test_fail(__FILE__, __LINE__, "fs_hub_query(%s) returned %s (\"%s\"), expected %s",
                         bad[i].query, fs_status_name(st_hub), fs_last_error(),
                         fs_status_name(bad[i].expected));
        if (out != NULL) fs_test_fail(__FILE__, __LINE__, "fs_hub_query(%s): output not NULL", bad[i].query);
        free_out(out);
        out = NULL;
        st_store = fs_store_query(s, q, &out);
        free_out(out);
        if (st_store != st_hub)
            fs_test_fail(__FILE__, __LINE__, "query %s: hub says %s, store says %s", bad[i].query,
                         fs_status_name(st_hub), fs_status_name(st_store));
    }
    fs_store_close(s);
    fs_hub_close(h);
}

/* The (device_id, audit_id) pairs of audit rows, e.g. "dev-a/1,dev-b/2". */
static char *row_keys(json_t *rows) {
    size_t i;
    char *s = strf("%s", "");
    for (i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        char *next = strf("%s%s%s/%lld", s, i ? "," : "", jstr(row, "device_id") ? jstr(row, "device_id") : "?",
                          jint(row, "audit_id"));
        free(s);
        s = next;
    }
    return s;
}

static void expect_rows(const char *file, int line, fs_hub *h, const char *filter, const char *keys) {
    json_t *rows = hub_audit_ok_at(file, line, h, filter ? Q(filter) : NULL);
    char *got = row_keys(rows);
    if (strcmp(got, keys) != 0)
        fs_test_fail(file, line, "hub audit filter %s gave [%s], expected [%s]", filter ? filter : "NULL",
                     got, keys);
    free(got);
    json_decref(rows);
}
#define EXPECT_ROWS(h, filter, keys) expect_rows(__FILE__, __LINE__, (h), (filter), (keys))

TEST(test_hub_audit_query_lists_rows_by_device_then_audit_id_and_filters) {
    fs_store *a, *b;
    fs_hub *h = synced_hub(&a, &b);
    REQUIRE(h != NULL && a != NULL && b != NULL);
    EXPECT_ROWS(h, NULL, "dev-a/1,dev-a/2,dev-a/3,dev-a/4,dev-b/1,dev-b/2");
    EXPECT_ROWS(h, "{}", "dev-a/1,dev-a/2,dev-a/3,dev-a/4,dev-b/1,dev-b/2");
    EXPECT_ROWS(h, "{'device_id':'dev-a'}", "dev-a/1,dev-a/2,dev-a/3,dev-a/4");
    EXPECT_ROWS(h, "{'device_id':'dev-b'}", "dev-b/1,dev-b/2");
    EXPECT_ROWS(h, "{'type':'task'}", "dev-a/1,dev-a/2,dev-a/3,dev-a/4,dev-b/1,dev-b/2");
    EXPECT_ROWS(h, "{'id':'T-1'}", "dev-a/1,dev-a/4");
    EXPECT_ROWS(h, "{'id':'T-2'}", "dev-a/2,dev-b/2");
    EXPECT_ROWS(h, "{'type':'task','id':'T-2','device_id':'dev-b'}", "dev-b/2");
    EXPECT_ROWS(h, "{'actor':'op-2'}", "dev-a/4");
    EXPECT_ROWS(h, "{'action':'pick'}", "dev-a/4");
    EXPECT_ROWS(h, "{'limit':2}", "dev-a/1,dev-a/2");
    EXPECT_ROWS(h, "{'device_id':'nobody'}", "");
    EXPECT_ROWS(h, "{'type':'order'}", "");
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

TEST(test_hub_audit_query_desc_reverses_the_whole_listing) {
    /* "desc" as in fs_audit_query: the newest rows first, so that
     * {"desc":true,"limit":n} gives the last n rows */
    fs_store *a, *b;
    fs_hub *h = synced_hub(&a, &b);
    REQUIRE(h != NULL && a != NULL && b != NULL);
    EXPECT_ROWS(h, "{'desc':true}", "dev-b/2,dev-b/1,dev-a/4,dev-a/3,dev-a/2,dev-a/1");
    EXPECT_ROWS(h, "{'device_id':'dev-a','desc':true,'limit':2}", "dev-a/4,dev-a/3");
    EXPECT_ROWS(h, "{'desc':false}", "dev-a/1,dev-a/2,dev-a/3,dev-a/4,dev-b/1,dev-b/2");
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

TEST(test_hub_audit_query_since_and_until_bound_device_time) {
    int64_t now = 1700000000000LL;
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    REQUIRE(h != NULL && s != NULL);
    CHECK_OK(fs_store_set_clock(s, hub_clock, &now));
    create_task(s, "T-1", "open"); /* device_time ...000 */
    now += 1000;
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}"))); /* ...1000 */
    now += 1000;
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}"))); /* ...2000 */
    sync_until_idle(s, h);
    EXPECT_ROWS(h, "{'since':1700000001000}", "dev-1/2,dev-1/3");
    EXPECT_ROWS(h, "{'until':1700000001000}", "dev-1/1");
    EXPECT_ROWS(h, "{'since':1700000000000,'until':1700000002000}", "dev-1/1,dev-1/2");
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_hub_audit_query_rejects_bad_filters) {
    static const struct {
        const char *filter;
        fs_status expected;
    } bad[] = {
        {"{'device':'dev-a'}", FS_ERR_ARG}, {"{'device_id':5}", FS_ERR_ARG},
        {"{'id':true}", FS_ERR_ARG},        {"{'since':'yesterday'}", FS_ERR_ARG},
        {"{'limit':'ten'}", FS_ERR_ARG},    {"{'limit':-1}", FS_ERR_ARG},
        {"[]", FS_ERR_ARG},                 {"{", FS_ERR_JSON},
    };
    fs_hub *h = open_task_hub();
    size_t i;
    REQUIRE(h != NULL);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = SENTINEL;
        fs_status st = fs_hub_audit_query(h, Q(bad[i].filter), &out);
        if (st != bad[i].expected)
            fs_test_fail(__FILE__, __LINE__, "filter %s: %s (\"%s\"), expected %s", bad[i].filter,
                         fs_status_name(st), fs_last_error(), fs_status_name(bad[i].expected));
        if (out != NULL) fs_test_fail(__FILE__, __LINE__, "filter %s: output not NULL", bad[i].filter);
        free_out(out);
    }
    fs_hub_close(h);
}

TEST(test_hub_audit_rows_verify_and_match_the_devices_rows) {
    static const char *const device_fields[] = {"audit_id", "device_id", "actor", "action", "type",
                                                "id", "input", "device_time", "hlc", "outbox_keys",
                                                "prev_hash", "hash"};
    fs_store *a, *b;
    fs_hub *h = synced_hub(&a, &b);
    fs_store *devices[2];
    const char *names[2] = {"dev-a", "dev-b"};
    int d;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    devices[0] = a;
    devices[1] = b;
    for (d = 0; d < 2; d++) {
        char *filter = strf("{\"device_id\":\"%s\"}", names[d]);
        json_t *at_hub = hub_audit_ok(h, filter);
        json_t *at_device = audit_ok(devices[d], NULL);
        size_t i, k;
        free(filter);
        REQUIRE(at_hub != NULL && at_device != NULL);
        CHECK_INT_EQ(json_array_size(at_hub), json_array_size(at_device));
        CHECK_INT_EQ(verify_audit_chain(at_hub), 0);
        for (i = 0; i < json_array_size(at_hub) && i < json_array_size(at_device); i++) {
            json_t *hr = json_array_get(at_hub, i), *dr = json_array_get(at_device, i);
            CHECK(json_is_true(json_object_get(hr, "chain_ok")));
            CHECK_STR_EQ(jstr(hr, "outcome"), "applied");
            CHECK_INT_EQ(jint(hr, "server_received_at"), jint(dr, "server_received_at"));
            for (k = 0; k < sizeof device_fields / sizeof device_fields[0]; k++) {
                char *x = jdump(json_object_get(hr, device_fields[k]));
                char *y = jdump(json_object_get(dr, device_fields[k]));
                if (strcmp(x, y) != 0)
                    fs_test_fail(__FILE__, __LINE__, "%s row %zu: %s is %s at the hub, %s on the device",
                                 names[d], i, device_fields[k], x, y);
                free(x);
                free(y);
            }
        }
        json_decref(at_hub);
        json_decref(at_device);
    }
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

TEST(test_hub_stats_count_records_devices_entries_and_conflicts) {
    fs_store *a, *b;
    fs_hub *h = synced_hub(&a, &b);
    json_t *stats;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    stats = hub_stats_ok(h);
    REQUIRE(stats != NULL);
    CHECK_INT_EQ(jint(stats, "records"), 4);
    CHECK_INT_EQ(jint(stats, "devices"), 2);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 6);
    CHECK_INT_EQ(jint(stats, "entries_rejected"), 0);
    CHECK_INT_EQ(jint(stats, "audit_rows"), 6);
    CHECK_INT_EQ(jint(stats, "audit_hash_failures"), 0);
    CHECK_INT_EQ(jint(stats, "audit_chain_breaks"), 0);
    CHECK_INT_EQ(jint(stats, "audit_gaps"), 0);
    CHECK(json_is_number(json_object_get(stats, "conflict_rate")));
    CHECK_INT_EQ(jint(stats, "conflicts.task.picked.writes"), 4);
    json_decref(stats);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}
