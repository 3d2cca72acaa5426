/* test_audit.c — fs_audit_query: one row per action, the SHA-256 chain of
 * docs/AUDIT.md, filters, and refusals. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

static int64_t g_now = 1000;
static int64_t test_clock(void *ctx) {
    (void)ctx;
    return g_now;
}

/* Six actions at device times 1000..6000 by two actors on two records. */
static fs_store *seeded(void) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"device_id\":\"dev-1\"}");
    if (s == NULL) return NULL;
    if (fs_store_set_clock(s, test_clock, NULL) != FS_OK)
        fs_test_fail(__FILE__, __LINE__, "fs_store_set_clock: %s", fs_last_error());
    g_now = 1000;
    json_decref(apply_ok(s, Q("{'action':'create','actor':'op-1','type':'task','id':'T-1','set':{'status':'open'}}")));
    g_now = 2000;
    json_decref(apply_ok(s, Q("{'action':'create','actor':'op-2','type':'task','id':'T-2','set':{'status':'open'}}")));
    g_now = 3000;
    json_decref(apply_ok(s, Q("{'action':'pick','actor':'op-1','type':'task','id':'T-1','inc':{'picked':1}}")));
    g_now = 4000;
    json_decref(apply_ok(s, Q("{'action':'pick','actor':'op-2','type':'task','id':'T-2','inc':{'picked':1}}")));
    g_now = 5000;
    json_decref(apply_ok(s, Q("{'action':'tag','actor':'op-1','type':'task','id':'T-2','add':{'tags':['x']}}")));
    g_now = 6000;
    json_decref(apply_ok(s, Q("{'action':'pick','actor':'op-1','type':'task','id':'T-1','inc':{'picked':1}}")));
    return s;
}

static char *audit_ids_of(json_t *rows) {
    size_t i;
    char *s = strf("%s", "");
    for (i = 0; i < json_array_size(rows); i++) {
        char *next = strf("%s%s%lld", s, i ? "," : "", jint(json_array_get(rows, i), "audit_id"));
        free(s);
        s = next;
    }
    return s;
}

static void expect_audit_ids(const char *file, int line, fs_store *s, const char *filter,
                             const char *ids) {
    json_t *rows = audit_ok_at(file, line, s, filter ? Q(filter) : NULL);
    char *got;
    if (rows == NULL) return;
    got = audit_ids_of(rows);
    if (strcmp(got, ids) != 0)
        fs_test_fail(file, line, "audit filter %s gave [%s], expected [%s]",
                     filter ? filter : "NULL", got, ids);
    free(got);
    json_decref(rows);
}
#define EXPECT_AUDIT_IDS(s, f, ids) expect_audit_ids(__FILE__, __LINE__, (s), (f), (ids))

static void expect_audit_refused(const char *file, int line, fs_store *s, const char *filter,
                                 fs_status expected) {
    char *out = SENTINEL;
    char msg[FS_TEST_MSG_MAX];
    fs_status st = fs_audit_query(s, filter, &out);
    fs_test_copy_last_error(msg);
    if (st != expected)
        fs_test_fail(file, line, "audit filter %.200s returned %s (\"%s\"), expected %s", filter,
                     fs_status_name(st), msg, fs_status_name(expected));
    else if (msg[0] == '\0')
        fs_test_fail(file, line, "audit filter %.200s refused with an empty message", filter);
    if (out != NULL) {
        fs_test_fail(file, line, "audit filter %.200s: out not NULL after failure", filter);
        free_out(out);
    }
}
#define EXPECT_AUDIT_REFUSED(s, f, st) expect_audit_refused(__FILE__, __LINE__, (s), (f), (st))

TEST(test_audit_has_one_row_per_action_in_audit_id_order) {
    fs_store *s = seeded();
    json_t *rows;
    size_t i;
    REQUIRE(s != NULL);
    rows = audit_ok(s, NULL);
    REQUIRE(rows != NULL);
    CHECK_INT_EQ(json_array_size(rows), 6);
    for (i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        char key[32];
        snprintf(key, sizeof key, "dev-1-%u", (unsigned)i + 1);
        CHECK_INT_EQ(jint(row, "audit_id"), (long long)i + 1);
        CHECK_INT_EQ(jint(row, "device_time"), 1000 * ((long long)i + 1));
        CHECK_STR_EQ(json_string_value(json_array_get(json_object_get(row, "outbox_keys"), 0)),
                     key);
        CHECK_STR_EQ(jstr(row, "outcome"), "pending");
    }
    json_decref(rows);
    fs_store_close(s);
}

TEST(test_audit_chain_verifies_per_docs_audit_md) {
    fs_store *s = seeded();
    json_t *rows;
    REQUIRE(s != NULL);
    /* non-ASCII text and nested input go through the canonical form too */
    json_decref(apply_ok(s, "{\"action\":\"note\",\"actor\":\"op-\xc3\xa9\",\"type\":\"task\","
                            "\"id\":\"T-\xe2\x9c\x93\",\"set\":{\"status\":\"ok\"},"
                            "\"input\":{\"z\":[1,\"\xf0\x9f\x93\xa6\",{\"b\":null,\"a\":true}],"
                            "\"a\":\"line\\nbreak \\\"q\\\" \\\\ /\"}}"));
    rows = audit_ok(s, NULL);
    REQUIRE(rows != NULL);
    CHECK_INT_EQ(json_array_size(rows), 7);
    CHECK_INT_EQ(verify_audit_chain(rows), 0);
    json_decref(rows);
    fs_store_close(s);
}

TEST(test_audit_chain_continues_across_reopen) {
    fs_store *s = seeded();
    json_t *rows;
    REQUIRE(s != NULL);
    fs_store_close(s);
    s = open_store("a.db", TASK_SCHEMA, NULL);
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act("T-1", "'set':{'site':'after-reopen'}")));
    rows = audit_ok(s, NULL);
    REQUIRE(rows != NULL);
    CHECK_INT_EQ(json_array_size(rows), 7);
    CHECK_INT_EQ(jint(json_array_get(rows, 6), "audit_id"), 7);
    CHECK_INT_EQ(verify_audit_chain(rows), 0);
    json_decref(rows);
    fs_store_close(s);
}

TEST(test_audit_filters_by_type_id_actor_and_action) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_AUDIT_IDS(s, NULL, "1,2,3,4,5,6");
    EXPECT_AUDIT_IDS(s, "{}", "1,2,3,4,5,6");
    EXPECT_AUDIT_IDS(s, "{'type':'task'}", "1,2,3,4,5,6");
    EXPECT_AUDIT_IDS(s, "{'type':'task','id':'T-1'}", "1,3,6");
    EXPECT_AUDIT_IDS(s, "{'id':'T-2'}", "2,4,5");
    EXPECT_AUDIT_IDS(s, "{'actor':'op-2'}", "2,4");
    EXPECT_AUDIT_IDS(s, "{'action':'pick'}", "3,4,6");
    EXPECT_AUDIT_IDS(s, "{'action':'pick','actor':'op-1'}", "3,6");
    EXPECT_AUDIT_IDS(s, "{'actor':'nobody'}", "");
    fs_store_close(s);
}

TEST(test_audit_filters_by_device_time_since_inclusive_until_exclusive) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_AUDIT_IDS(s, "{'since':3000}", "3,4,5,6");
    EXPECT_AUDIT_IDS(s, "{'until':3000}", "1,2");
    EXPECT_AUDIT_IDS(s, "{'since':2000,'until':5000}", "2,3,4");
    EXPECT_AUDIT_IDS(s, "{'since':2001,'until':2999}", "");
    EXPECT_AUDIT_IDS(s, "{'since':7000}", "");
    fs_store_close(s);
}

TEST(test_audit_limit_and_desc) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_AUDIT_IDS(s, "{'limit':2}", "1,2");
    EXPECT_AUDIT_IDS(s, "{'desc':true}", "6,5,4,3,2,1");
    EXPECT_AUDIT_IDS(s, "{'desc':false}", "1,2,3,4,5,6");
    EXPECT_AUDIT_IDS(s, "{'desc':true,'limit':2}", "6,5");
    EXPECT_AUDIT_IDS(s, "{'id':'T-1','desc':true,'limit':2}", "6,3");
    EXPECT_AUDIT_IDS(s, "{'limit':0}", "");
    fs_store_close(s);
}

TEST(test_audit_query_rejects_bad_filters) {
    fs_store *s = seeded();
    char *pad = repeat_char(' ', FS_MAX_JSON_BYTES);
    char *big = strf("{}%s", pad);
    REQUIRE(s != NULL);
    EXPECT_AUDIT_REFUSED(s, Q("{'since':'yesterday'}"), FS_ERR_ARG);
    EXPECT_AUDIT_REFUSED(s, Q("{'until':1.5}"), FS_ERR_ARG);
    EXPECT_AUDIT_REFUSED(s, Q("{'limit':-1}"), FS_ERR_ARG);
    EXPECT_AUDIT_REFUSED(s, Q("{'desc':'no'}"), FS_ERR_ARG);
    EXPECT_AUDIT_REFUSED(s, Q("{'actor':5}"), FS_ERR_ARG);
    EXPECT_AUDIT_REFUSED(s, Q("{'actr':'op-1'}"), FS_ERR_ARG);
    EXPECT_AUDIT_REFUSED(s, "[1]", FS_ERR_ARG);
    EXPECT_AUDIT_REFUSED(s, "{\"actor\":", FS_ERR_JSON);
    EXPECT_AUDIT_REFUSED(s, "{\"actor\":\"op\xff\"}", FS_ERR_JSON);
    EXPECT_AUDIT_REFUSED(s, big, FS_ERR_TOO_BIG);
    free(pad);
    free(big);
    fs_store_close(s);
}

TEST(test_audit_query_rejects_null_arguments) {
    fs_store *s = seeded();
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    CHECK_STATUS(fs_audit_query(NULL, NULL, &out), FS_ERR_ARG);
    CHECK(out == NULL);
    CHECK_STATUS(fs_audit_query(s, NULL, NULL), FS_ERR_ARG);
    CHECK_STATUS(fs_audit_query(s, "{}", NULL), FS_ERR_ARG);
    fs_store_close(s);
}

TEST(test_refused_actions_leave_no_audit_row) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    CHECK_STATUS(apply_status(s, act("T-1", "'set':{'nope':1}")), FS_ERR_SCHEMA);
    CHECK_STATUS(apply_status(s, act("T-1", "'set':{'picked':1}")), FS_ERR_SCHEMA);
    CHECK_STATUS(apply_status(s, act("T-9", "'delete':true")), FS_ERR_NOT_FOUND);
    CHECK_INT_EQ(audit_count(s), 6);
    /* the next successful action continues the chain without a gap */
    json_decref(apply_ok(s, act("T-1", "'set':{'site':'A'}")));
    {
        json_t *rows = audit_ok(s, NULL);
        CHECK_INT_EQ(json_array_size(rows), 7);
        CHECK_INT_EQ(jint(json_array_get(rows, 6), "audit_id"), 7);
        CHECK_INT_EQ(verify_audit_chain(rows), 0);
        json_decref(rows);
    }
    fs_store_close(s);
}

TEST(test_canonical_helper_matches_python_json_dumps) {
    /* Guards the verifier itself: expected text produced by CPython 3.11's
     * json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False). */
    const char *src =
        "{\"z\":[1,2.5,0.1,1e300,1e-7,2.0,1e16,1e15,123456789.125,-0.0,0.0001,1.5e-5,-7,"
        "12345678901234567],\"a\":\"\\u001f\\u007f\\u2028\\n\\t\\\"\\\\/\\u00e9\\ud83d\\udce6\","
        "\"\\u00e9\":null,\"B\":true,\"b\":{}}";
    const char *expected =
        "{\"B\":true,\"a\":\"\\u001f\x7f\xe2\x80\xa8\\n\\t\\\"\\\\/\xc3\xa9\xf0\x9f\x93\xa6\","
        "\"b\":{},\"z\":[1,2.5,0.1,1e+300,1e-07,2.0,1e+16,1000000000000000.0,123456789.125,"
        "-0.0,0.0001,1.5e-05,-7,12345678901234567],\"\xc3\xa9\":null}";
    json_t *v = json_loads(src, 0, NULL);
    char *got;
    REQUIRE(v != NULL);
    got = canonical_json(v);
    CHECK_STR_EQ(got, expected);
    free(got);
    json_decref(v);
}

TEST(test_audit_chain_verifies_with_floats_and_control_characters_in_input) {
    fs_store *s = open_task_store();
    json_t *rows;
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, "{\"action\":\"weigh\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"T-1\","
                            "\"set\":{\"status\":\"open\",\"weight\":0.1},"
                            "\"input\":{\"w\":0.1,\"big\":1e300,\"tiny\":1e-7,\"two\":2.0,"
                            "\"e16\":1e16,\"neg\":-0.0,\"ctl\":\"\\u001f\\u007f\\u2028\\b\\f\"}}"));
    json_decref(apply_ok(s, act("T-1", "'set':{'weight':123456789.125},'input':[0.30000000000000004]")));
    rows = audit_ok(s, NULL);
    REQUIRE(rows != NULL);
    CHECK_INT_EQ(json_array_size(rows), 2);
    CHECK_INT_EQ(verify_audit_chain(rows), 0);
    json_decref(rows);
    fs_store_close(s);
}
