/* test_outbox.c — fs_outbox_count, fs_outbox_list (order, shape, filters) and
 * fs_outbox_discard (only rejected or stuck entries). */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

static fs_store *seeded(void) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"device_id\":\"dev-1\"}");
    if (s == NULL) return NULL;
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'open'},'add':{'tags':['z']}")));
                                                                    /* dev-1-1 */
    create_task(s, "T-2", "open");                                  /* dev-1-2 */
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':2}")));     /* dev-1-3 */
    json_decref(apply_ok(s, act("T-1", "'remove':{'tags':['z']}"))); /* dev-1-4 */
    json_decref(apply_ok(s, act("T-2", "'delete':true")));          /* dev-1-5 */
    return s;
}

static char *keys_of(json_t *entries) {
    size_t i, len = 1;
    char *s;
    for (i = 0; i < json_array_size(entries); i++) {
        const char *k = jstr(json_array_get(entries, i), "key");
        len += (k ? strlen(k) : 6) + 1;
    }
    s = (char *)calloc(len, 1);
    if (s == NULL) abort();
    for (i = 0; i < json_array_size(entries); i++) {
        const char *k = jstr(json_array_get(entries, i), "key");
        if (i > 0) strcat(s, ",");
        strcat(s, k ? k : "(none)");
    }
    return s;
}

static void expect_keys(const char *file, int line, fs_store *s, const char *filter,
                        const char *keys) {
    json_t *e = outbox_ok_at(file, line, s, filter ? Q(filter) : NULL);
    char *got;
    if (e == NULL) return;
    got = keys_of(e);
    if (strcmp(got, keys) != 0)
        fs_test_fail(file, line, "outbox filter %s gave [%s], expected [%s]",
                     filter ? filter : "NULL", got, keys);
    free(got);
    json_decref(e);
}
#define EXPECT_KEYS(s, f, k) expect_keys(__FILE__, __LINE__, (s), (f), (k))

static void expect_list_refused(const char *file, int line, fs_store *s, const char *filter,
                                fs_status expected) {
    char *out = SENTINEL;
    char msg[FS_TEST_MSG_MAX];
    fs_status st = fs_outbox_list(s, filter, &out);
    fs_test_copy_last_error(msg);
    if (st != expected)
        fs_test_fail(file, line, "outbox filter %.200s returned %s (\"%s\"), expected %s", filter,
                     fs_status_name(st), msg, fs_status_name(expected));
    else if (msg[0] == '\0')
        fs_test_fail(file, line, "outbox filter %.200s refused with an empty message", filter);
    if (out != NULL) {
        fs_test_fail(file, line, "outbox filter %.200s: out not NULL after failure", filter);
        free_out(out);
    }
}
#define EXPECT_LIST_REFUSED(s, f, st) expect_list_refused(__FILE__, __LINE__, (s), (f), (st))

TEST(test_outbox_count_starts_at_zero) {
    fs_store *s = open_task_store();
    int64_t n = -1;
    REQUIRE(s != NULL);
    CHECK_OK(fs_outbox_count(s, &n));
    CHECK_INT_EQ(n, 0);
    fs_store_close(s);
}

TEST(test_outbox_count_counts_each_applied_action) {
    fs_store *s = seeded();
    int64_t n = -1;
    REQUIRE(s != NULL);
    CHECK_OK(fs_outbox_count(s, &n));
    CHECK_INT_EQ(n, 5);
    fs_store_close(s);
}

TEST(test_outbox_list_is_in_sequence_order) {
    fs_store *s = seeded();
    json_t *e;
    size_t i;
    REQUIRE(s != NULL);
    EXPECT_KEYS(s, NULL, "dev-1-1,dev-1-2,dev-1-3,dev-1-4,dev-1-5");
    e = outbox_ok(s, NULL);
    REQUIRE(e != NULL);
    for (i = 0; i < json_array_size(e); i++) {
        json_t *entry = json_array_get(e, i);
        CHECK_INT_EQ(jint(entry, "seq"), (long long)i + 1);
        CHECK_STR_EQ(jstr(entry, "state"), "pending");
        if (i > 0)
            CHECK(jint(entry, "hlc") > jint(json_array_get(e, i - 1), "hlc"));
    }
    json_decref(e);
    fs_store_close(s);
}

TEST(test_outbox_list_entry_ops_hold_only_the_operations_present) {
    fs_store *s = seeded();
    json_t *e, *ops;
    REQUIRE(s != NULL);
    e = outbox_ok(s, NULL);
    REQUIRE(e != NULL && json_array_size(e) == 5);
    ops = json_object_get(json_array_get(e, 0), "ops");
    CHECK(json_is_object(json_object_get(ops, "set")) && json_is_object(json_object_get(ops, "add")));
    CHECK_INT_EQ(json_object_size(ops), 2);
    ops = json_object_get(json_array_get(e, 1), "ops");
    CHECK(json_is_object(json_object_get(ops, "set")));
    CHECK_INT_EQ(json_object_size(ops), 1);
    ops = json_object_get(json_array_get(e, 2), "ops");
    CHECK_INT_EQ(jint(json_object_get(ops, "inc"), "picked"), 2);
    CHECK_INT_EQ(json_object_size(ops), 1);
    ops = json_object_get(json_array_get(e, 3), "ops");
    CHECK(json_is_array(json_object_get(json_object_get(ops, "remove"), "tags")));
    CHECK_INT_EQ(json_object_size(ops), 1);
    ops = json_object_get(json_array_get(e, 4), "ops");
    CHECK(json_is_true(json_object_get(ops, "delete")));
    CHECK_INT_EQ(json_object_size(ops), 1);
    CHECK_STR_EQ(jstr(json_array_get(e, 4), "id"), "T-2");
    json_decref(e);
    fs_store_close(s);
}

TEST(test_outbox_list_records_base_for_server_fields) {
    fs_store *s = seeded();
    json_t *e, *last;
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act("T-1", "'set':{'on_hand':4}")));
    e = outbox_ok(s, "{\"limit\":1000}");
    REQUIRE(e != NULL && json_array_size(e) == 6);
    last = json_array_get(e, 5);
    /* a write to a `server` field carries the server versions it was based on
     * (none known yet, so only the shape is checked) */
    CHECK(json_object_get(last, "base") != NULL);
    CHECK(json_is_object(json_object_get(last, "base")) || json_is_null(json_object_get(last, "base")));
    json_decref(e);
    fs_store_close(s);
}

TEST(test_outbox_list_filters_by_state_type_id_and_limit) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_KEYS(s, "{}", "dev-1-1,dev-1-2,dev-1-3,dev-1-4,dev-1-5");
    EXPECT_KEYS(s, "{'state':'pending'}", "dev-1-1,dev-1-2,dev-1-3,dev-1-4,dev-1-5");
    EXPECT_KEYS(s, "{'state':'inflight'}", "");
    EXPECT_KEYS(s, "{'state':'rejected'}", "");
    EXPECT_KEYS(s, "{'state':'stuck'}", "");
    EXPECT_KEYS(s, "{'type':'task','id':'T-1'}", "dev-1-1,dev-1-3,dev-1-4");
    EXPECT_KEYS(s, "{'id':'T-2'}", "dev-1-2,dev-1-5");
    EXPECT_KEYS(s, "{'type':'task'}", "dev-1-1,dev-1-2,dev-1-3,dev-1-4,dev-1-5");
    EXPECT_KEYS(s, "{'limit':2}", "dev-1-1,dev-1-2");
    EXPECT_KEYS(s, "{'id':'T-1','limit':1}", "dev-1-1");
    EXPECT_KEYS(s, "{'id':'nobody'}", "");
    fs_store_close(s);
}

TEST(test_outbox_list_rejects_bad_filters) {
    fs_store *s = seeded();
    char *pad = repeat_char(' ', FS_MAX_JSON_BYTES);
    char *big = strf("{}%s", pad);
    REQUIRE(s != NULL);
    EXPECT_LIST_REFUSED(s, Q("{'state':'lost'}"), FS_ERR_ARG);
    EXPECT_LIST_REFUSED(s, Q("{'state':1}"), FS_ERR_ARG);
    EXPECT_LIST_REFUSED(s, Q("{'limit':'ten'}"), FS_ERR_ARG);
    EXPECT_LIST_REFUSED(s, Q("{'limit':-5}"), FS_ERR_ARG);
    EXPECT_LIST_REFUSED(s, Q("{'id':5}"), FS_ERR_ARG);
    EXPECT_LIST_REFUSED(s, Q("{'stat':'pending'}"), FS_ERR_ARG);
    EXPECT_LIST_REFUSED(s, "[]", FS_ERR_ARG);
    EXPECT_LIST_REFUSED(s, "{", FS_ERR_JSON);
    EXPECT_LIST_REFUSED(s, "{\"id\":\"T\xff\"}", FS_ERR_JSON);
    EXPECT_LIST_REFUSED(s, big, FS_ERR_TOO_BIG);
    free(pad);
    free(big);
    fs_store_close(s);
}

TEST(test_outbox_calls_reject_null_arguments) {
    fs_store *s = seeded();
    int64_t n = 99;
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    CHECK_STATUS(fs_outbox_count(NULL, &n), FS_ERR_ARG);
    CHECK_INT_EQ(n, 0);
    CHECK_STATUS(fs_outbox_count(s, NULL), FS_ERR_ARG);
    CHECK_STATUS(fs_outbox_list(NULL, NULL, &out), FS_ERR_ARG);
    CHECK(out == NULL);
    CHECK_STATUS(fs_outbox_list(s, NULL, NULL), FS_ERR_ARG);
    CHECK_STATUS(fs_outbox_discard(NULL, "dev-1-1"), FS_ERR_ARG);
    CHECK_STATUS(fs_outbox_discard(s, NULL), FS_ERR_ARG);
    CHECK_INT_EQ(outbox_count(s), 5);
    fs_store_close(s);
}

TEST(test_outbox_discard_of_a_pending_entry_is_a_conflict) {
    fs_store *s = seeded();
    store_snap snap;
    REQUIRE(s != NULL);
    snap_take(s, &snap);
    CHECK_STATUS(fs_outbox_discard(s, "dev-1-1"), FS_ERR_CONFLICT);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_outbox_discard(s, "dev-1-5"), FS_ERR_CONFLICT);
    CHECK_UNCHANGED(s, &snap);
    fs_store_close(s);
}

TEST(test_outbox_discard_of_an_unknown_key_is_not_found) {
    fs_store *s = seeded();
    store_snap snap;
    REQUIRE(s != NULL);
    snap_take(s, &snap);
    CHECK_STATUS(fs_outbox_discard(s, "dev-1-6"), FS_ERR_NOT_FOUND);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_outbox_discard(s, "other-1"), FS_ERR_NOT_FOUND);
    CHECK_STATUS(fs_outbox_discard(s, ""), FS_ERR_NOT_FOUND);
    CHECK_UNCHANGED(s, &snap);
    fs_store_close(s);
}

TEST(test_outbox_discard_with_invalid_utf8_or_huge_key_changes_nothing) {
    fs_store *s = seeded();
    store_snap snap;
    char *huge = repeat_char('k', 2 * FS_MAX_JSON_BYTES);
    REQUIRE(s != NULL);
    snap_take(s, &snap);
    CHECK(fs_outbox_discard(s, "dev-1-\xff") != FS_OK);
    CHECK_ERROR_MESSAGE();
    CHECK(fs_outbox_discard(s, huge) != FS_OK);
    CHECK_ERROR_MESSAGE();
    CHECK_UNCHANGED(s, &snap);
    free(huge);
    fs_store_close(s);
}

TEST(test_outbox_list_and_count_write_nothing) {
    fs_store *s = seeded();
    store_snap snap;
    char *out = NULL;
    int64_t n;
    REQUIRE(s != NULL);
    snap_take(s, &snap);
    CHECK_OK(fs_outbox_list(s, Q("{'state':'pending'}"), &out));
    fs_free(out);
    CHECK_OK(fs_outbox_count(s, &n));
    CHECK_UNCHANGED(s, &snap);
    fs_store_close(s);
}
