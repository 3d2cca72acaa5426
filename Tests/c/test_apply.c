/* test_apply.c — fs_store_apply on the happy path: records, the result JSON,
 * one outbox entry and one audit row per action, every operation kind. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

static int is_hex64(const char *s) {
    size_t i;
    if (s == NULL || strlen(s) != 64) return 0;
    for (i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* The number of pending outbox entries _fs.pending reports (count or list). */
static long pending_of(json_t *rec) {
    json_t *p = json_object_get(json_object_get(rec, "_fs"), "pending");
    if (json_is_integer(p)) return (long)json_integer_value(p);
    if (json_is_array(p)) return (long)json_array_size(p);
    return -1;
}

TEST(test_apply_creates_a_record_with_every_declared_field) {
    fs_store *s = open_task_store();
    json_t *r, *rec;
    size_t i;
    REQUIRE(s != NULL);
    r = apply_ok(s, act("T-1", "'set':{'status':'open','site':'A'}"));
    REQUIRE(r != NULL);
    rec = json_object_get(r, "record");
    REQUIRE(json_is_object(rec));
    CHECK_STR_EQ(jstr(rec, "type"), "task");
    CHECK_STR_EQ(jstr(rec, "id"), "T-1");
    CHECK_STR_EQ(jstr(rec, "status"), "open");
    CHECK_STR_EQ(jstr(rec, "site"), "A");
    for (i = 0; i < TASK_FIELD_COUNT; i++)
        if (json_object_get(rec, TASK_FIELDS[i]) == NULL)
            fs_test_fail(__FILE__, __LINE__, "result record lacks declared field %s",
                         TASK_FIELDS[i]);
    CHECK(json_is_null(json_object_get(rec, "weight")));
    CHECK(json_is_null(json_object_get(rec, "lines")));
    json_decref(r);

    rec = get_ok(s, "task", "T-1");
    REQUIRE(rec != NULL);
    CHECK_STR_EQ(jstr(rec, "status"), "open");
    for (i = 0; i < TASK_FIELD_COUNT; i++)
        if (json_object_get(rec, TASK_FIELDS[i]) == NULL)
            fs_test_fail(__FILE__, __LINE__, "fs_store_get record lacks declared field %s",
                         TASK_FIELDS[i]);
    json_decref(rec);
    fs_store_close(s);
}

TEST(test_apply_result_has_record_outbox_key_audit_id_seq_hlc) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"device_id\":\"dev-7\"}");
    json_t *r;
    REQUIRE(s != NULL);
    r = apply_ok(s, act("T-1", "'set':{'status':'open'}"));
    REQUIRE(r != NULL);
    CHECK(json_is_object(json_object_get(r, "record")));
    CHECK_STR_EQ(jstr(r, "outbox_key"), "dev-7-1");
    CHECK(json_is_integer(json_object_get(r, "audit_id")));
    CHECK(json_is_integer(json_object_get(r, "seq")));
    CHECK(json_is_integer(json_object_get(r, "hlc")));
    CHECK_INT_EQ(jint(r, "audit_id"), 1);
    CHECK_INT_EQ(jint(r, "seq"), 1);
    CHECK(jint(r, "hlc") > 0);
    json_decref(r);
    fs_store_close(s);
}

TEST(test_apply_audit_ids_seqs_and_hlc_strictly_increase) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"device_id\":\"dev-1\",\"durability\":\"normal\"}");
    long long last_hlc = 0;
    int i;
    REQUIRE(s != NULL);
    create_task(s, "T-0", "open");
    for (i = 2; i <= 40; i++) {
        json_t *r = apply_ok(s, act(i % 2 ? "T-0" : "T-1",
                                    i == 2 ? "'set':{'status':'open'}" : "'inc':{'picked':1}"));
        char key[32];
        REQUIRE(r != NULL);
        snprintf(key, sizeof key, "dev-1-%d", i);
        CHECK_INT_EQ(jint(r, "audit_id"), i);
        CHECK_INT_EQ(jint(r, "seq"), i);
        CHECK_STR_EQ(jstr(r, "outbox_key"), key);
        if (jint(r, "hlc") <= last_hlc)
            fs_test_fail(__FILE__, __LINE__, "hlc %lld after %lld", jint(r, "hlc"), last_hlc);
        last_hlc = jint(r, "hlc");
        json_decref(r);
    }
    fs_store_close(s);
}

TEST(test_apply_adds_exactly_one_outbox_entry_and_one_audit_row) {
    fs_store *s = open_task_store();
    static const char *const changes[] = {
        "'set':{'status':'open'}", "'set':{'site':'B'}",      "'inc':{'picked':2}",
        "'add':{'tags':['a']}",    "'remove':{'tags':['a']}", "'set':{'weight':1.25}",
        "'delete':true"};
    size_t i;
    REQUIRE(s != NULL);
    for (i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        json_t *st;
        json_decref(apply_ok(s, act("T-1", changes[i])));
        CHECK_INT_EQ(outbox_count(s), (long long)i + 1);
        CHECK_INT_EQ(audit_count(s), (long)i + 1);
        st = stats_ok(s);
        CHECK_INT_EQ(jint(st, "outbox_pending"), (long long)i + 1);
        CHECK_INT_EQ(jint(st, "audit_rows"), (long long)i + 1);
        json_decref(st);
    }
    fs_store_close(s);
}

TEST(test_apply_updates_only_the_fields_it_sets) {
    fs_store *s = open_task_store();
    json_t *r, *rec;
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'open','site':'A','urgent':true}")));
    r = apply_ok(s, act("T-1", "'set':{'site':'B'}"));
    REQUIRE(r != NULL);
    rec = json_object_get(r, "record");
    CHECK_STR_EQ(jstr(rec, "site"), "B");
    CHECK_STR_EQ(jstr(rec, "status"), "open");
    CHECK(json_is_true(json_object_get(rec, "urgent")));
    json_decref(r);
    rec = get_ok(s, "task", "T-1");
    CHECK_STR_EQ(jstr(rec, "site"), "B");
    CHECK_STR_EQ(jstr(rec, "status"), "open");
    json_decref(rec);
    fs_store_close(s);
}

TEST(test_apply_set_null_clears_a_field) {
    fs_store *s = open_task_store();
    json_t *rec;
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'open','site':'A','weight':2.5}")));
    json_decref(apply_ok(s, act("T-1", "'set':{'site':null,'weight':null}")));
    rec = get_ok(s, "task", "T-1");
    CHECK(json_is_null(json_object_get(rec, "site")));
    CHECK(json_is_null(json_object_get(rec, "weight")));
    CHECK_STR_EQ(jstr(rec, "status"), "open");
    json_decref(rec);
    fs_store_close(s);
}

TEST(test_apply_stores_every_value_type) {
    fs_store *s = open_task_store();
    json_t *rec, *lines, *expected;
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'open','weight':12.75,'urgent':false,"
                                       "'on_hand':7,'lines':[{'sku':'A-1','qty':2},{'sku':'B','qty':1}]}")));
    rec = get_ok(s, "task", "T-1");
    REQUIRE(rec != NULL);
    CHECK(json_is_number(json_object_get(rec, "weight")) &&
          json_number_value(json_object_get(rec, "weight")) == 12.75);
    CHECK(json_is_false(json_object_get(rec, "urgent")));
    CHECK_INT_EQ(jint(rec, "on_hand"), 7);
    lines = json_object_get(rec, "lines");
    expected = json_loads(Q("[{'sku':'A-1','qty':2},{'sku':'B','qty':1}]"), 0, NULL);
    CHECK(json_equal(lines, expected));
    json_decref(expected);
    json_decref(rec);
    fs_store_close(s);
}

TEST(test_apply_keeps_non_ascii_text_intact) {
    fs_store *s = open_task_store();
    json_t *rec;
    const char *text = "Gr\xc3\xb6\xc3\x9f" "e \xe2\x9c\x93 \xf0\x9f\x93\xa6 \\ \" /";
    char *action = strf("{\"action\":\"edit\",\"actor\":\"op-\xc3\xa9\",\"type\":\"task\","
                        "\"id\":\"T-\xc3\xa9\",\"set\":{\"status\":\"%s\"}}",
                        "Gr\xc3\xb6\xc3\x9f" "e \xe2\x9c\x93 \xf0\x9f\x93\xa6 \\\\ \\\" /");
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, action));
    rec = get_ok(s, "task", "T-\xc3\xa9");
    CHECK_STR_EQ(jstr(rec, "status"), text);
    CHECK_STR_EQ(jstr(rec, "id"), "T-\xc3\xa9");
    json_decref(rec);
    free(action);
    fs_store_close(s);
}

TEST(test_apply_counter_inc_sums_the_deltas) {
    fs_store *s = open_task_store();
    json_t *r, *rec;
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'open'},'inc':{'picked':3}")));
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':-1}")));
    r = apply_ok(s, act("T-1", "'inc':{'picked':10}"));
    CHECK_INT_EQ(jint(json_object_get(r, "record"), "picked"), 12);
    json_decref(r);
    rec = get_ok(s, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 12);
    json_decref(rec);
    fs_store_close(s);
}

TEST(test_apply_counter_reaches_int64_max_exactly) {
    fs_store *s = open_task_store();
    json_t *rec;
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'open'},'inc':{'picked':9223372036854775806}")));
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    rec = get_ok(s, "task", "T-1");
    CHECK(jint(rec, "picked") == INT64_MAX);
    json_decref(rec);
    fs_store_close(s);
}

TEST(test_apply_set_add_and_remove_keep_a_sorted_set) {
    fs_store *s = open_task_store();
    json_t *r, *rec, *expected;
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'open'},'add':{'tags':['late','b','a']}")));
    json_decref(apply_ok(s, act("T-1", "'add':{'tags':['a','c']}")));
    r = apply_ok(s, act("T-1", "'remove':{'tags':['late','not-there']}"));
    expected = json_loads(Q("['a','b','c']"), 0, NULL);
    CHECK(json_equal(json_object_get(json_object_get(r, "record"), "tags"), expected));
    json_decref(r);
    rec = get_ok(s, "task", "T-1");
    {
        char *got = jdump(json_object_get(rec, "tags"));
        if (!json_equal(json_object_get(rec, "tags"), expected))
            fs_test_fail(__FILE__, __LINE__, "tags == %s, expected [\"a\",\"b\",\"c\"]", got);
        free(got);
    }
    json_decref(expected);
    json_decref(rec);
    /* add and remove in one action */
    json_decref(apply_ok(s, act("T-1", "'add':{'tags':['d']},'remove':{'tags':['a']}")));
    rec = get_ok(s, "task", "T-1");
    expected = json_loads(Q("['b','c','d']"), 0, NULL);
    CHECK(json_equal(json_object_get(rec, "tags"), expected));
    json_decref(expected);
    json_decref(rec);
    fs_store_close(s);
}

TEST(test_apply_set_of_ints_is_sorted_numerically) {
    fs_store *s = open_task_store();
    json_t *rec, *expected;
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'open'},'add':{'tags':[10,2,33,2]}")));
    rec = get_ok(s, "task", "T-1");
    expected = json_loads("[2,10,33]", 0, NULL);
    {
        char *got = jdump(json_object_get(rec, "tags"));
        if (!json_equal(json_object_get(rec, "tags"), expected))
            fs_test_fail(__FILE__, __LINE__, "tags == %s, expected [2,10,33]", got);
        free(got);
    }
    json_decref(expected);
    json_decref(rec);
    fs_store_close(s);
}

TEST(test_apply_delete_tombstones_and_get_returns_not_found) {
    fs_store *s = open_task_store();
    json_t *r, *fs, *rows, *ob;
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    create_task(s, "T-2", "open");
    r = apply_ok(s, act("T-1", "'delete':true"));
    REQUIRE(r != NULL);
    fs = json_object_get(json_object_get(r, "record"), "_fs");
    CHECK(json_is_true(json_object_get(fs, "deleted")));
    json_decref(r);
    CHECK_STATUS(fs_store_get(s, "task", "T-1", &out), FS_ERR_NOT_FOUND);
    CHECK(out == NULL);
    rows = query_ok(s, "{\"type\":\"task\"}");
    {
        char *ids = ids_of(rows);
        CHECK_STR_EQ(ids, "T-2");
        free(ids);
    }
    json_decref(rows);
    CHECK_INT_EQ(outbox_count(s), 3);
    CHECK_INT_EQ(audit_count(s), 3);
    ob = outbox_ok(s, NULL);
    CHECK(json_is_true(json_object_get(json_object_get(json_array_get(ob, 2), "ops"), "delete")));
    json_decref(ob);
    /* deleting again: the record no longer exists */
    CHECK_STATUS(apply_status(s, act("T-1", "'delete':true")), FS_ERR_NOT_FOUND);
    CHECK_INT_EQ(outbox_count(s), 3);
    fs_store_close(s);
}

TEST(test_apply_delete_of_a_missing_record_is_not_found_and_writes_nothing) {
    fs_store *s = open_task_store();
    store_snap snap;
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    snap_take(s, &snap);
    CHECK_STATUS(fs_store_apply(s, act("T-404", "'delete':true"), &out), FS_ERR_NOT_FOUND);
    CHECK_ERROR_MESSAGE();
    CHECK(out == NULL);
    CHECK_UNCHANGED(s, &snap);
    fs_store_close(s);
}

TEST(test_apply_record_lists_its_pending_outbox_entries) {
    fs_store *s = open_task_store();
    json_t *rec, *fs;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    create_task(s, "T-2", "open");
    rec = get_ok(s, "task", "T-1");
    REQUIRE(rec != NULL);
    fs = json_object_get(rec, "_fs");
    CHECK(json_is_object(fs));
    CHECK(json_object_get(fs, "server_version") != NULL);
    CHECK(json_is_null(json_object_get(fs, "server_version")));
    CHECK_INT_EQ(pending_of(rec), 2);
    json_decref(rec);
    fs_store_close(s);
}

TEST(test_apply_accepts_an_id_of_exactly_max_id_bytes) {
    fs_store *s = open_task_store();
    char *id = repeat_char('i', FS_MAX_ID_BYTES);
    json_t *rec;
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act(id, "'set':{'status':'open'}")));
    rec = get_ok(s, "task", id);
    CHECK_STR_EQ(jstr(rec, "id"), id);
    json_decref(rec);
    free(id);
    fs_store_close(s);
}

TEST(test_apply_accepts_an_action_of_exactly_max_json_bytes) {
    fs_store *s = open_task_store();
    const char *head = "{\"action\":\"edit\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"T-1\","
                       "\"set\":{\"status\":\"open\"},\"input\":{\"blob\":\"";
    const char *tail = "\"}}";
    size_t fill = FS_MAX_JSON_BYTES - strlen(head) - strlen(tail);
    char *blob = repeat_char('x', fill);
    char *action = strf("%s%s%s", head, blob, tail);
    REQUIRE(s != NULL);
    CHECK_INT_EQ(strlen(action), FS_MAX_JSON_BYTES);
    json_decref(apply_ok(s, action));
    CHECK_INT_EQ(outbox_count(s), 1);
    free(blob);
    free(action);
    fs_store_close(s);
}

TEST(test_apply_outbox_entry_has_the_documented_shape) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"device_id\":\"dev-9\"}");
    json_t *r, *ob, *e, *ops, *exp_set, *exp_inc, *exp_add;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    r = apply_ok(s, Q("{'action':'pick_item','actor':'op-17','type':'task','id':'T-1',"
                      "'set':{'site':'S'},'inc':{'picked':2},'add':{'tags':['x']}}"));
    REQUIRE(r != NULL);
    ob = outbox_ok(s, NULL);
    REQUIRE(ob != NULL && json_array_size(ob) == 2);
    e = json_array_get(ob, 1);
    CHECK_STR_EQ(jstr(e, "key"), "dev-9-2");
    CHECK_INT_EQ(jint(e, "seq"), 2);
    CHECK_STR_EQ(jstr(e, "type"), "task");
    CHECK_STR_EQ(jstr(e, "id"), "T-1");
    CHECK_STR_EQ(jstr(e, "action"), "pick_item");
    CHECK_STR_EQ(jstr(e, "actor"), "op-17");
    CHECK(json_is_integer(json_object_get(e, "device_time")));
    CHECK_INT_EQ(jint(e, "hlc"), jint(r, "hlc"));
    CHECK_INT_EQ(jint(e, "schema_version"), 1);
    CHECK_STR_EQ(jstr(e, "state"), "pending");
    CHECK_INT_EQ(jint(e, "attempts"), 0);
    CHECK(json_is_integer(json_object_get(e, "next_attempt_at")));
    CHECK(json_object_get(e, "reason") != NULL && json_is_null(json_object_get(e, "reason")));
    ops = json_object_get(e, "ops");
    REQUIRE(json_is_object(ops));
    exp_set = json_loads("{\"site\":\"S\"}", 0, NULL);
    exp_inc = json_loads("{\"picked\":2}", 0, NULL);
    exp_add = json_loads("{\"tags\":[\"x\"]}", 0, NULL);
    CHECK(json_equal(json_object_get(ops, "set"), exp_set));
    CHECK(json_equal(json_object_get(ops, "inc"), exp_inc));
    CHECK(json_equal(json_object_get(ops, "add"), exp_add));
    /* only the operations present */
    CHECK(json_object_get(ops, "remove") == NULL);
    CHECK(json_object_get(ops, "delete") == NULL);
    CHECK_INT_EQ(json_object_size(ops), 3);
    json_decref(exp_set);
    json_decref(exp_inc);
    json_decref(exp_add);
    json_decref(ob);
    json_decref(r);
    fs_store_close(s);
}

TEST(test_apply_audit_row_has_the_documented_shape) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"device_id\":\"dev-9\"}");
    json_t *r, *rows, *row, *input, *keys;
    REQUIRE(s != NULL);
    r = apply_ok(s, Q("{'action':'create_task','actor':'op-17','type':'task','id':'T-1',"
                      "'set':{'status':'open'},'input':{'scanned':['A','B'],'n':3,'ok':true,"
                      "'nested':{'x':null}}}"));
    REQUIRE(r != NULL);
    rows = audit_ok(s, NULL);
    REQUIRE(rows != NULL && json_array_size(rows) == 1);
    row = json_array_get(rows, 0);
    CHECK_INT_EQ(jint(row, "audit_id"), jint(r, "audit_id"));
    CHECK_STR_EQ(jstr(row, "device_id"), "dev-9");
    CHECK_STR_EQ(jstr(row, "actor"), "op-17");
    CHECK_STR_EQ(jstr(row, "action"), "create_task");
    CHECK_STR_EQ(jstr(row, "type"), "task");
    CHECK_STR_EQ(jstr(row, "id"), "T-1");
    input = json_loads(Q("{'scanned':['A','B'],'n':3,'ok':true,'nested':{'x':null}}"), 0, NULL);
    CHECK(json_equal(json_object_get(row, "input"), input));
    json_decref(input);
    CHECK(json_is_integer(json_object_get(row, "device_time")));
    CHECK_INT_EQ(jint(row, "hlc"), jint(r, "hlc"));
    keys = json_object_get(row, "outbox_keys");
    CHECK(json_is_array(keys) && json_array_size(keys) == 1);
    CHECK_STR_EQ(json_string_value(json_array_get(keys, 0)), "dev-9-1");
    CHECK_STR_EQ(jstr(row, "prev_hash"),
                 "0000000000000000000000000000000000000000000000000000000000000000");
    CHECK(is_hex64(jstr(row, "hash")));
    CHECK_STR_EQ(jstr(row, "outcome"), "pending");
    CHECK(json_object_get(row, "reason") != NULL && json_is_null(json_object_get(row, "reason")));
    CHECK(json_object_get(row, "server_received_at") != NULL &&
          json_is_null(json_object_get(row, "server_received_at")));
    json_decref(rows);
    json_decref(r);
    fs_store_close(s);
}

TEST(test_apply_without_input_records_null_input) {
    fs_store *s = open_task_store();
    json_t *rows;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    rows = audit_ok(s, NULL);
    REQUIRE(rows != NULL && json_array_size(rows) == 1);
    CHECK(json_object_get(json_array_get(rows, 0), "input") != NULL);
    CHECK(json_is_null(json_object_get(json_array_get(rows, 0), "input")));
    json_decref(rows);
    fs_store_close(s);
}

TEST(test_apply_writes_to_server_and_custom_fields_are_allowed) {
    fs_store *s = open_task_store();
    json_t *rec;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'set':{'on_hand':3}")));
    json_decref(apply_ok(s, act("T-1", "'set':{'lines':{'a':1}}")));
    rec = get_ok(s, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "on_hand"), 3);
    CHECK_INT_EQ(jint(json_object_get(rec, "lines"), "a"), 1);
    json_decref(rec);
    fs_store_close(s);
}
