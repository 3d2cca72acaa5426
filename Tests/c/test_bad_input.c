/* test_bad_input.c — sweeps over every function: NULL in every pointer
 * position, malformed JSON, invalid UTF-8 and oversized text in every string
 * argument. Each is refused with its code and writes nothing. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

static fs_store *seeded(void) {
    fs_store *s = open_task_store();
    if (s != NULL) {
        create_task(s, "T-1", "open");
        json_decref(apply_ok(s, act("T-1", "'inc':{'picked':2}")));
    }
    return s;
}

/* One refused call: status, message, output NULL/0. */
#define REFUSED(call, out, expected)                                             \
    do {                                                                         \
        fs_status st_ = (call);                                                  \
        char msg_[FS_TEST_MSG_MAX];                                              \
        fs_test_copy_last_error(msg_);                                           \
        if (st_ != (expected))                                                   \
            fs_test_fail(__FILE__, __LINE__, "%s returned %s (\"%s\"), expected %s", #call, \
                         fs_status_name(st_), msg_, fs_status_name(expected));   \
        else if (msg_[0] == '\0')                                                \
            fs_test_fail(__FILE__, __LINE__, "%s: empty fs_last_error()", #call); \
        if ((out) != NULL) {                                                     \
            fs_test_fail(__FILE__, __LINE__, "%s: output not NULL after failure", #call); \
            free_out(out);                                                       \
        }                                                                        \
        out = SENTINEL;                                                          \
    } while (0)

TEST(test_null_in_every_pointer_position_is_arg_and_writes_nothing) {
    fs_store *s = seeded();
    fs_store *so = (fs_store *)SENTINEL;
    store_snap snap;
    char *out = SENTINEL;
    int64_t n = 5;
    const char *action = act("T-1", "'set':{'site':'A'}");
    REQUIRE(s != NULL);
    snap_take(s, &snap);

    CHECK_STATUS(fs_store_open(NULL, TASK_SCHEMA, NULL, &so), FS_ERR_ARG);
    CHECK(so == NULL);
    so = (fs_store *)SENTINEL;
    CHECK_STATUS(fs_store_open(test_path("x.db"), NULL, NULL, &so), FS_ERR_ARG);
    CHECK(so == NULL);
    CHECK_STATUS(fs_store_open(test_path("x.db"), TASK_SCHEMA, NULL, NULL), FS_ERR_ARG);

    CHECK_STATUS(fs_store_set_clock(NULL, NULL, NULL), FS_ERR_ARG);

    REFUSED(fs_store_apply(NULL, action, &out), out, FS_ERR_ARG);
    REFUSED(fs_store_apply(s, NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_store_apply(s, action, NULL), FS_ERR_ARG);

    REFUSED(fs_store_get(NULL, "task", "T-1", &out), out, FS_ERR_ARG);
    REFUSED(fs_store_get(s, NULL, "T-1", &out), out, FS_ERR_ARG);
    REFUSED(fs_store_get(s, "task", NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_store_get(s, "task", "T-1", NULL), FS_ERR_ARG);

    REFUSED(fs_store_query(NULL, "{\"type\":\"task\"}", &out), out, FS_ERR_ARG);
    REFUSED(fs_store_query(s, NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_store_query(s, "{\"type\":\"task\"}", NULL), FS_ERR_ARG);

    REFUSED(fs_store_stats(NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_store_stats(s, NULL), FS_ERR_ARG);

    CHECK_STATUS(fs_outbox_count(NULL, &n), FS_ERR_ARG);
    CHECK_INT_EQ(n, 0);
    CHECK_STATUS(fs_outbox_count(s, NULL), FS_ERR_ARG);

    REFUSED(fs_outbox_list(NULL, NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_outbox_list(s, NULL, NULL), FS_ERR_ARG);

    CHECK_STATUS(fs_outbox_discard(NULL, "k"), FS_ERR_ARG);
    CHECK_STATUS(fs_outbox_discard(s, NULL), FS_ERR_ARG);

    REFUSED(fs_audit_query(NULL, NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_audit_query(s, NULL, NULL), FS_ERR_ARG);

    CHECK_UNCHANGED(s, &snap);
    fs_store_close(s);
}

TEST(test_malformed_json_in_every_json_argument_is_json_error) {
    fs_store *s = seeded();
    fs_store *so = (fs_store *)SENTINEL;
    store_snap snap;
    char *out = SENTINEL;
    static const char *const broken[] = {"{", "{\"a\":1,}", "[1 2]", "{'a':1}", "tru", "\"open"};
    size_t i;
    REQUIRE(s != NULL);
    snap_take(s, &snap);
    for (i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        CHECK_STATUS(fs_store_open(test_path("x.db"), broken[i], NULL, &so), FS_ERR_JSON);
        CHECK(so == NULL);
        so = (fs_store *)SENTINEL;
        CHECK_STATUS(fs_store_open(test_path("x.db"), TASK_SCHEMA, broken[i], &so), FS_ERR_JSON);
        CHECK(so == NULL);
        so = (fs_store *)SENTINEL;
        REFUSED(fs_store_apply(s, broken[i], &out), out, FS_ERR_JSON);
        REFUSED(fs_store_query(s, broken[i], &out), out, FS_ERR_JSON);
        REFUSED(fs_outbox_list(s, broken[i], &out), out, FS_ERR_JSON);
        REFUSED(fs_audit_query(s, broken[i], &out), out, FS_ERR_JSON);
    }
    CHECK_UNCHANGED(s, &snap);
    fs_store_close(s);
}

TEST(test_invalid_utf8_in_every_string_argument_is_json_error) {
    fs_store *s = seeded();
    fs_store *so = (fs_store *)SENTINEL;
    store_snap snap;
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    snap_take(s, &snap);
    CHECK_STATUS(fs_store_open(test_path("x.db"),
                               "{\"version\":1,\"types\":{\"t\xff\":{\"fields\":{\"s\":{\"type\":\"string\"}}}}}",
                               NULL, &so), FS_ERR_JSON);
    CHECK(so == NULL);
    so = (fs_store *)SENTINEL;
    CHECK_STATUS(fs_store_open(test_path("x.db"), TASK_SCHEMA, "{\"device_id\":\"\xff\"}", &so),
                 FS_ERR_JSON);
    CHECK(so == NULL);
    REFUSED(fs_store_apply(s, "{\"action\":\"a\xff\",\"actor\":\"o\",\"type\":\"task\",\"id\":\"T-1\","
                              "\"set\":{\"site\":\"A\"}}", &out), out, FS_ERR_JSON);
    REFUSED(fs_store_get(s, "task", "T-1\xff", &out), out, FS_ERR_JSON);
    REFUSED(fs_store_get(s, "task\xff", "T-1", &out), out, FS_ERR_JSON);
    REFUSED(fs_store_query(s, "{\"type\":\"task\xff\"}", &out), out, FS_ERR_JSON);
    REFUSED(fs_outbox_list(s, "{\"type\":\"task\xff\"}", &out), out, FS_ERR_JSON);
    REFUSED(fs_audit_query(s, "{\"type\":\"task\xff\"}", &out), out, FS_ERR_JSON);
    CHECK_UNCHANGED(s, &snap);
    fs_store_close(s);
}

TEST(test_oversized_text_in_every_argument_is_too_big) {
    fs_store *s = seeded();
    fs_store *so = (fs_store *)SENTINEL;
    store_snap snap;
    char *out = SENTINEL;
    char *pad = repeat_char(' ', FS_MAX_JSON_BYTES);
    char *big_obj = strf("{}%s", pad);
    char *big_schema = strf("%s%s", TASK_SCHEMA, pad);
    char *big_query = strf("{\"type\":\"task\"}%s", pad);
    char *long_id = repeat_char('x', FS_MAX_ID_BYTES + 1);
    REQUIRE(s != NULL);
    snap_take(s, &snap);
    CHECK_STATUS(fs_store_open(test_path("x.db"), big_schema, NULL, &so), FS_ERR_TOO_BIG);
    CHECK(so == NULL);
    so = (fs_store *)SENTINEL;
    CHECK_STATUS(fs_store_open(test_path("x.db"), TASK_SCHEMA, big_obj, &so), FS_ERR_TOO_BIG);
    CHECK(so == NULL);
    REFUSED(fs_store_apply(s, big_obj, &out), out, FS_ERR_TOO_BIG);
    REFUSED(fs_store_apply(s, act(long_id, "'set':{'status':'open'}"), &out), out, FS_ERR_TOO_BIG);
    REFUSED(fs_store_get(s, "task", long_id, &out), out, FS_ERR_TOO_BIG);
    REFUSED(fs_store_get(s, long_id, "T-1", &out), out, FS_ERR_TOO_BIG);
    REFUSED(fs_store_query(s, big_query, &out), out, FS_ERR_TOO_BIG);
    REFUSED(fs_outbox_list(s, big_obj, &out), out, FS_ERR_TOO_BIG);
    REFUSED(fs_audit_query(s, big_obj, &out), out, FS_ERR_TOO_BIG);
    CHECK_UNCHANGED(s, &snap);
    free(pad);
    free(big_obj);
    free(big_schema);
    free(big_query);
    free(long_id);
    fs_store_close(s);
}

TEST(test_over_long_type_and_field_names_in_actions_are_refused) {
    fs_store *s = seeded();
    store_snap snap;
    char *name = repeat_char('f', FS_MAX_ID_BYTES + 1);
    char *a1 = strf("{\"action\":\"a\",\"actor\":\"o\",\"type\":\"%s\",\"id\":\"T-1\","
                    "\"set\":{\"status\":\"x\"}}", name);
    char *a2 = strf("{\"action\":\"a\",\"actor\":\"o\",\"type\":\"task\",\"id\":\"T-1\","
                    "\"set\":{\"%s\":\"x\"}}", name);
    REQUIRE(s != NULL);
    snap_take(s, &snap);
    CHECK_STATUS2(apply_status(s, a1), FS_ERR_TOO_BIG, FS_ERR_SCHEMA);
    CHECK_STATUS2(apply_status(s, a2), FS_ERR_TOO_BIG, FS_ERR_SCHEMA);
    CHECK_UNCHANGED(s, &snap);
    free(name);
    free(a1);
    free(a2);
    fs_store_close(s);
}

TEST(test_embedded_nul_escape_in_an_id_does_not_alias_another_record) {
    /* "T-1\u0000x" is a valid JSON string; it must not be treated as "T-1" */
    fs_store *s = seeded();
    json_t *rec;
    fs_status st;
    REQUIRE(s != NULL);
    /* as a new record without `status` it must be refused; FS_OK would mean
     * it was taken as an update of T-1 */
    st = apply_status(s, act("T-1\\u0000x", "'set':{'site':'ALIAS'}"));
    CHECK(st != FS_OK);
    rec = get_ok(s, "task", "T-1");
    CHECK(json_is_null(json_object_get(rec, "site")));
    json_decref(rec);
    fs_store_close(s);
}
