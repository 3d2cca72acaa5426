/* test_stats.c — fs_store_stats: a flat object with the documented counters. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

TEST(test_stats_is_a_flat_object_of_numbers_and_strings) {
    fs_store *s = open_task_store();
    json_t *st;
    const char *key;
    json_t *value;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    st = stats_ok(s);
    REQUIRE(st != NULL);
    json_object_foreach(st, key, value) {
        if (!json_is_number(value) && !json_is_string(value))
            fs_test_fail(__FILE__, __LINE__, "stats key %s is neither a number nor a string", key);
    }
    CHECK(json_is_string(json_object_get(st, "device_id")));
    CHECK(json_is_integer(json_object_get(st, "schema_version")));
    CHECK(json_is_integer(json_object_get(st, "records")));
    CHECK(json_is_integer(json_object_get(st, "outbox_pending")));
    CHECK(json_is_integer(json_object_get(st, "audit_rows")));
    json_decref(st);
    fs_store_close(s);
}

TEST(test_stats_counts_records_outbox_and_audit_rows) {
    fs_store *s = open_store("a.db", Q("{'version':4,'types':{'task':{'fields':{'status':{'type':'string'},"
                                       "'picked':{'type':'int','merge':'counter'}}}}}"),
                             "{\"device_id\":\"dev-s\"}");
    json_t *st;
    REQUIRE(s != NULL);
    st = stats_ok(s);
    CHECK_STR_EQ(jstr(st, "device_id"), "dev-s");
    CHECK_INT_EQ(jint(st, "schema_version"), 4);
    CHECK_INT_EQ(jint(st, "records"), 0);
    CHECK_INT_EQ(jint(st, "outbox_pending"), 0);
    CHECK_INT_EQ(jint(st, "audit_rows"), 0);
    json_decref(st);
    create_task(s, "T-1", "open");
    create_task(s, "T-2", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':3}")));
    st = stats_ok(s);
    CHECK_INT_EQ(jint(st, "records"), 2);
    CHECK_INT_EQ(jint(st, "outbox_pending"), 3);
    CHECK_INT_EQ(jint(st, "audit_rows"), 3);
    json_decref(st);
    fs_store_close(s);
}

TEST(test_stats_rejects_null_arguments) {
    fs_store *s = open_task_store();
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    CHECK_STATUS(fs_store_stats(NULL, &out), FS_ERR_ARG);
    CHECK(out == NULL);
    CHECK_STATUS(fs_store_stats(s, NULL), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    fs_store_close(s);
}
