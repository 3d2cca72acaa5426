/* test_get_query.c — fs_store_get and fs_store_query: shapes, filters, order,
 * limit, and every refusal. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

/* T-1 open  picked 5 site A urgent weight 1.5 tags [x]
 * T-2 open  picked 1 site B
 * T-3 done  picked 9 site A
 * T-4 open  picked 2 (no site)
 * T-5 deleted */
static fs_store *seeded(void) {
    fs_store *s = open_task_store();
    if (s == NULL) return NULL;
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'open','site':'A','urgent':true,"
                                       "'weight':1.5},'inc':{'picked':5},'add':{'tags':['x']}")));
    json_decref(apply_ok(s, act("T-2", "'set':{'status':'open','site':'B','urgent':false,"
                                       "'weight':0.5},'inc':{'picked':1}")));
    json_decref(apply_ok(s, act("T-3", "'set':{'status':'done','site':'A'},'inc':{'picked':9}")));
    json_decref(apply_ok(s, act("T-4", "'set':{'status':'open'},'inc':{'picked':2}")));
    json_decref(apply_ok(s, act("T-5", "'set':{'status':'open','site':'A'}")));
    json_decref(apply_ok(s, act("T-5", "'delete':true")));
    return s;
}

/* Runs `query` (single-quoted) and compares the ids of the rows with `ids`. */
static void expect_ids(const char *file, int line, fs_store *s, const char *query,
                       const char *ids) {
    json_t *rows = query_ok_at(file, line, s, Q(query));
    char *got;
    if (rows == NULL) return;
    got = ids_of(rows);
    if (strcmp(got, ids) != 0)
        fs_test_fail(file, line, "query %s\n      gave [%s], expected [%s]", query, got, ids);
    free(got);
    json_decref(rows);
}
#define EXPECT_IDS(s, q, ids) expect_ids(__FILE__, __LINE__, (s), (q), (ids))

static void expect_query_refused(const char *file, int line, fs_store *s, const char *query,
                                 fs_status expected, fs_status also_ok) {
    char *out = SENTINEL;
    char msg[FS_TEST_MSG_MAX];
    fs_status st = fs_store_query(s, query, &out);
    fs_test_copy_last_error(msg);
    if (st != expected && st != also_ok)
        fs_test_fail(file, line, "query %.300s\n      returned %s (\"%s\"), expected %s", query,
                     fs_status_name(st), msg, fs_status_name(expected));
    else if (msg[0] == '\0')
        fs_test_fail(file, line, "query %.200s refused with an empty message", query);
    if (out != NULL) {
        fs_test_fail(file, line, "query %.200s: out_rows_json not NULL after failure", query);
        free_out(out);
    }
}
#define EXPECT_QUERY_REFUSED(s, q, st) expect_query_refused(__FILE__, __LINE__, (s), (q), (st), (st))
#define EXPECT_QUERY_REFUSED2(s, q, st, also) \
    expect_query_refused(__FILE__, __LINE__, (s), (q), (st), (also))

TEST(test_get_returns_the_documented_record_shape) {
    fs_store *s = seeded();
    json_t *rec, *fs, *tags;
    size_t i;
    REQUIRE(s != NULL);
    rec = get_ok(s, "task", "T-1");
    REQUIRE(rec != NULL);
    CHECK_STR_EQ(jstr(rec, "type"), "task");
    CHECK_STR_EQ(jstr(rec, "id"), "T-1");
    CHECK_STR_EQ(jstr(rec, "status"), "open");
    CHECK_STR_EQ(jstr(rec, "site"), "A");
    CHECK_INT_EQ(jint(rec, "picked"), 5);
    CHECK(json_is_true(json_object_get(rec, "urgent")));
    tags = json_object_get(rec, "tags");
    CHECK(json_is_array(tags) && json_array_size(tags) == 1);
    CHECK(json_is_null(json_object_get(rec, "on_hand")));
    CHECK(json_is_null(json_object_get(rec, "locked")));
    for (i = 0; i < TASK_FIELD_COUNT; i++)
        CHECK(json_object_get(rec, TASK_FIELDS[i]) != NULL);
    /* type, id, the 9 fields and _fs, nothing else */
    CHECK_INT_EQ(json_object_size(rec), TASK_FIELD_COUNT + 3);
    fs = json_object_get(rec, "_fs");
    REQUIRE(json_is_object(fs));
    CHECK(json_object_get(fs, "server_version") != NULL);
    CHECK(json_object_get(fs, "pending") != NULL);
    json_decref(rec);
    fs_store_close(s);
}

TEST(test_get_of_a_missing_record_is_not_found) {
    fs_store *s = seeded();
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    CHECK_STATUS(fs_store_get(s, "task", "T-404", &out), FS_ERR_NOT_FOUND);
    CHECK_ERROR_MESSAGE();
    CHECK(out == NULL);
    out = SENTINEL;
    /* an empty id: no such record, or refused as a bad argument */
    CHECK_STATUS2(fs_store_get(s, "task", "", &out), FS_ERR_NOT_FOUND, FS_ERR_ARG);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(s, "task", "T-5", &out), FS_ERR_NOT_FOUND); /* deleted */
    CHECK(out == NULL);
    fs_store_close(s);
}

TEST(test_get_of_an_unknown_type_is_schema) {
    fs_store *s = seeded();
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    CHECK_STATUS(fs_store_get(s, "tasks", "T-1", &out), FS_ERR_SCHEMA);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(s, "fs_outbox", "1", &out), FS_ERR_SCHEMA);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(s, "task; DROP TABLE task", "T-1", &out), FS_ERR_SCHEMA);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(s, "", "T-1", &out), FS_ERR_SCHEMA);
    CHECK(out == NULL);
    json_decref(get_ok(s, "task", "T-1"));
    fs_store_close(s);
}

TEST(test_get_rejects_null_arguments) {
    fs_store *s = seeded();
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    CHECK_STATUS(fs_store_get(NULL, "task", "T-1", &out), FS_ERR_ARG);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(s, NULL, "T-1", &out), FS_ERR_ARG);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(s, "task", NULL, &out), FS_ERR_ARG);
    CHECK(out == NULL);
    CHECK_STATUS(fs_store_get(s, "task", "T-1", NULL), FS_ERR_ARG);
    fs_store_close(s);
}

TEST(test_get_rejects_invalid_utf8_in_type_and_id) {
    fs_store *s = seeded();
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    CHECK_STATUS(fs_store_get(s, "task", "T-\xff", &out), FS_ERR_JSON);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(s, "ta\xffsk", "T-1", &out), FS_ERR_JSON);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(s, "task", "\xc3", &out), FS_ERR_JSON);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(s, "task", "\xed\xa0\x80", &out), FS_ERR_JSON);
    CHECK(out == NULL);
    fs_store_close(s);
}

TEST(test_get_rejects_over_long_id_and_type) {
    fs_store *s = seeded();
    char *id = repeat_char('i', FS_MAX_ID_BYTES + 1);
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    CHECK_STATUS(fs_store_get(s, "task", id, &out), FS_ERR_TOO_BIG);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(s, id, "T-1", &out), FS_ERR_TOO_BIG);
    CHECK(out == NULL);
    free(id);
    id = repeat_char('i', 4 * FS_MAX_JSON_BYTES);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(s, "task", id, &out), FS_ERR_TOO_BIG);
    CHECK(out == NULL);
    free(id);
    fs_store_close(s);
}

TEST(test_query_returns_records_in_id_order_without_fs) {
    fs_store *s = seeded();
    json_t *rows;
    size_t i, k;
    REQUIRE(s != NULL);
    rows = query_ok(s, "{\"type\":\"task\"}");
    REQUIRE(rows != NULL);
    {
        char *ids = ids_of(rows);
        CHECK_STR_EQ(ids, "T-1,T-2,T-3,T-4");
        free(ids);
    }
    for (i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        CHECK_STR_EQ(jstr(row, "type"), "task");
        CHECK(json_object_get(row, "_fs") == NULL);
        for (k = 0; k < TASK_FIELD_COUNT; k++)
            if (json_object_get(row, TASK_FIELDS[k]) == NULL)
                fs_test_fail(__FILE__, __LINE__, "query row lacks field %s", TASK_FIELDS[k]);
    }
    CHECK_INT_EQ(jint(json_array_get(rows, 0), "picked"), 5);
    json_decref(rows);
    fs_store_close(s);
}

TEST(test_query_where_equality) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_IDS(s, "{'type':'task','where':{'status':'open'}}", "T-1,T-2,T-4");
    EXPECT_IDS(s, "{'type':'task','where':{'status':'open','site':'A'}}", "T-1");
    EXPECT_IDS(s, "{'type':'task','where':{'picked':9}}", "T-3");
    EXPECT_IDS(s, "{'type':'task','where':{'urgent':true}}", "T-1");
    EXPECT_IDS(s, "{'type':'task','where':{'urgent':false}}", "T-2");
    EXPECT_IDS(s, "{'type':'task','where':{'weight':0.5}}", "T-2");
    EXPECT_IDS(s, "{'type':'task','where':{'id':'T-3'}}", "T-3");
    EXPECT_IDS(s, "{'type':'task','where':{'status':'nobody'}}", "");
    EXPECT_IDS(s, "{'type':'task','where':{}}", "T-1,T-2,T-3,T-4");
    fs_store_close(s);
}

TEST(test_query_where_null_matches_unset) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_IDS(s, "{'type':'task','where':{'site':null}}", "T-4");
    EXPECT_IDS(s, "{'type':'task','where':{'urgent':null}}", "T-3,T-4");
    fs_store_close(s);
}

TEST(test_query_where_operators) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_IDS(s, "{'type':'task','where':{'picked':{'>=':3,'<':10}}}", "T-1,T-3");
    EXPECT_IDS(s, "{'type':'task','where':{'picked':{'>':5}}}", "T-3");
    EXPECT_IDS(s, "{'type':'task','where':{'picked':{'<=':2}}}", "T-2,T-4");
    EXPECT_IDS(s, "{'type':'task','where':{'picked':{'=':1}}}", "T-2");
    EXPECT_IDS(s, "{'type':'task','where':{'status':{'!=':'open'}}}", "T-3");
    EXPECT_IDS(s, "{'type':'task','where':{'id':{'>':'T-2'}}}", "T-3,T-4");
    EXPECT_IDS(s, "{'type':'task','where':{'weight':{'>':1.0}}}", "T-1");
    EXPECT_IDS(s, "{'type':'task','where':{'site':{'>=':'B'}}}", "T-2");
    EXPECT_IDS(s, "{'type':'task','where':{'status':'open','picked':{'>':1}}}", "T-1,T-4");
    fs_store_close(s);
}

TEST(test_query_order_by_desc_and_limit) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_IDS(s, "{'type':'task','order_by':'picked'}", "T-2,T-4,T-1,T-3");
    EXPECT_IDS(s, "{'type':'task','order_by':'picked','desc':true}", "T-3,T-1,T-4,T-2");
    EXPECT_IDS(s, "{'type':'task','order_by':'picked','desc':false}", "T-2,T-4,T-1,T-3");
    EXPECT_IDS(s, "{'type':'task','order_by':'picked','limit':2}", "T-2,T-4");
    EXPECT_IDS(s, "{'type':'task','desc':true}", "T-4,T-3,T-2,T-1");
    EXPECT_IDS(s, "{'type':'task','order_by':'id','desc':true,'limit':1}", "T-4");
    EXPECT_IDS(s, "{'type':'task','limit':0}", "");
    EXPECT_IDS(s, "{'type':'task','where':{'status':'open'},'order_by':'picked','desc':true,"
                  "'limit':2}", "T-1,T-4");
    fs_store_close(s);
}

TEST(test_query_of_an_empty_type_returns_an_empty_array) {
    fs_store *s = open_task_store();
    json_t *rows;
    REQUIRE(s != NULL);
    rows = query_ok(s, "{\"type\":\"task\"}");
    CHECK(json_is_array(rows) && json_array_size(rows) == 0);
    json_decref(rows);
    fs_store_close(s);
}

TEST(test_query_rejects_unknown_type_and_fields) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'tasks'}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'fs_outbox'}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','where':{'colour':'red'}}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','where':{'status = 1 OR 1':'x'}}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','order_by':'colour'}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','order_by':'picked; DROP TABLE task'}"),
                         FS_ERR_SCHEMA);
    EXPECT_IDS(s, "{'type':'task'}", "T-1,T-2,T-3,T-4");
    fs_store_close(s);
}

TEST(test_query_rejects_filter_values_of_the_wrong_type) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','where':{'picked':'many'}}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','where':{'status':5}}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','where':{'urgent':'yes'}}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','where':{'picked':{'>':'3'}}}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','where':{'status':['open']}}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','where':{'id':5}}"), FS_ERR_SCHEMA);
    fs_store_close(s);
}

TEST(test_query_rejects_set_and_json_fields_in_where_and_order_by) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','where':{'tags':'x'}}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','where':{'lines':null}}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','order_by':'tags'}"), FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','order_by':'lines'}"), FS_ERR_SCHEMA);
    fs_store_close(s);
}

TEST(test_query_rejects_wrong_shapes) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_QUERY_REFUSED(s, "[]", FS_ERR_ARG);
    EXPECT_QUERY_REFUSED(s, "\"task\"", FS_ERR_ARG);
    EXPECT_QUERY_REFUSED(s, Q("{}"), FS_ERR_ARG);
    EXPECT_QUERY_REFUSED(s, Q("{'type':5}"), FS_ERR_ARG);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','where':[]}"), FS_ERR_ARG);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','limit':'10'}"), FS_ERR_ARG);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','limit':-1}"), FS_ERR_ARG);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','desc':'yes'}"), FS_ERR_ARG);
    EXPECT_QUERY_REFUSED(s, Q("{'type':'task','order_by':5}"), FS_ERR_ARG);
    EXPECT_QUERY_REFUSED2(s, Q("{'type':'task','where':{'picked':{'~':3}}}"), FS_ERR_ARG,
                          FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED2(s, Q("{'type':'task','where':{'picked':{}}}"), FS_ERR_ARG,
                          FS_ERR_SCHEMA);
    EXPECT_QUERY_REFUSED2(s, Q("{'type':'task','wehre':{'status':'open'}}"), FS_ERR_ARG,
                          FS_ERR_SCHEMA);
    fs_store_close(s);
}

TEST(test_query_rejects_malformed_json_invalid_utf8_and_oversize) {
    fs_store *s = seeded();
    char *pad = repeat_char(' ', FS_MAX_JSON_BYTES);
    char *big = strf("{\"type\":\"task\"}%s", pad);
    REQUIRE(s != NULL);
    EXPECT_QUERY_REFUSED(s, "{\"type\":", FS_ERR_JSON);
    EXPECT_QUERY_REFUSED(s, "", FS_ERR_JSON);
    EXPECT_QUERY_REFUSED(s, "{\"type\":\"task\",\"where\":{\"status\":\"o\xff\"}}", FS_ERR_JSON);
    EXPECT_QUERY_REFUSED(s, big, FS_ERR_TOO_BIG);
    free(pad);
    free(big);
    fs_store_close(s);
}

TEST(test_query_rejects_null_arguments) {
    fs_store *s = seeded();
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    CHECK_STATUS(fs_store_query(NULL, "{\"type\":\"task\"}", &out), FS_ERR_ARG);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_query(s, NULL, &out), FS_ERR_ARG);
    CHECK(out == NULL);
    CHECK_STATUS(fs_store_query(s, "{\"type\":\"task\"}", NULL), FS_ERR_ARG);
    fs_store_close(s);
}

TEST(test_query_and_get_write_nothing) {
    fs_store *s = seeded();
    store_snap snap;
    char *out = NULL;
    REQUIRE(s != NULL);
    snap_take(s, &snap);
    CHECK_OK(fs_store_get(s, "task", "T-1", &out));
    fs_free(out);
    CHECK_OK(fs_store_query(s, Q("{'type':'task','where':{'status':'open'}}"), &out));
    fs_free(out);
    CHECK_UNCHANGED(s, &snap);
    fs_store_close(s);
}
