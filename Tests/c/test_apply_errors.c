/* test_apply_errors.c — every way fs_store_apply refuses an action: the status,
 * a message, a NULL result, and nothing written (record, outbox, audit). */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

/* Applies `action` on a store holding T-1 {status: open, picked: 1, tags: [a]}
 * and checks it is refused with `expected` and changes nothing. */
static void expect_refused(const char *file, int line, fs_store *s, const char *action,
                           fs_status expected, fs_status also_ok) {
    store_snap snap;
    char *out = SENTINEL;
    fs_status st;
    char msg[FS_TEST_MSG_MAX];
    snap_take(s, &snap);
    st = fs_store_apply(s, action, &out);
    fs_test_copy_last_error(msg);
    if (st != expected && st != also_ok)
        fs_test_fail(file, line, "action %.300s\n      returned %s (\"%s\"), expected %s", action,
                     fs_status_name(st), msg, fs_status_name(expected));
    else if (msg[0] == '\0')
        fs_test_fail(file, line, "action %.200s: refused with an empty fs_last_error()", action);
    if (out != NULL) {
        fs_test_fail(file, line, "action %.200s: out_result_json not NULL after failure", action);
        free_out(out);
    }
    snap_check_at(file, line, s, &snap);
}
#define EXPECT_REFUSED(s, action, expected) \
    expect_refused(__FILE__, __LINE__, (s), (action), (expected), (expected))
#define EXPECT_REFUSED2(s, action, expected, also) \
    expect_refused(__FILE__, __LINE__, (s), (action), (expected), (also))

static fs_store *seeded(void) {
    fs_store *s = open_task_store();
    if (s != NULL)
        json_decref(apply_ok(s, act("T-1", "'set':{'status':'open'},'inc':{'picked':1},"
                                           "'add':{'tags':['a']}")));
    return s;
}

TEST(test_apply_rejects_unknown_type) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, Q("{'action':'a','actor':'o','type':'tsak','id':'T-1','set':{'status':'x'}}"),
                   FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, Q("{'action':'a','actor':'o','type':'fs_outbox','id':'T-1','set':{'status':'x'}}"),
                   FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, Q("{'action':'a','actor':'o','type':'sqlite_master','id':'T-1','set':{'status':'x'}}"),
                   FS_ERR_SCHEMA);
    fs_store_close(s);
}

TEST(test_apply_rejects_unknown_field) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, act("T-1", "'set':{'stauts':'x'}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'set':{'status':'x','nope':1}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'set':{'id':'T-9'}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'set':{'_fs':{}}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'inc':{'nope':1}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'add':{'nope':['a']}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'remove':{'nope':['a']}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-2", "'set':{'status':'open','nope':1}"), FS_ERR_SCHEMA);
    fs_store_close(s);
}

TEST(test_apply_rejects_wrong_value_types) {
    static const char *const bad[] = {
        "'set':{'status':5}",         "'set':{'status':true}",     "'set':{'status':['x']}",
        "'set':{'status':{'a':1}}",   "'set':{'site':1.5}",        "'set':{'weight':'heavy'}",
        "'set':{'weight':true}",      "'set':{'urgent':1}",        "'set':{'urgent':'yes'}",
        "'set':{'on_hand':1.5}",      "'set':{'on_hand':'7'}",     "'inc':{'picked':'1'}",
        "'inc':{'picked':1.5}",       "'inc':{'picked':null}",     "'inc':{'picked':true}",
        "'add':{'tags':'a'}",         "'add':{'tags':[{'a':1}]}",  "'add':{'tags':[['a']]}",
        "'add':{'tags':[null]}",      "'add':{'tags':[true]}",     "'add':{'tags':[1.5]}",
        "'remove':{'tags':'a'}",      "'remove':{'tags':[{}]}",
    };
    fs_store *s = seeded();
    size_t i;
    REQUIRE(s != NULL);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_REFUSED(s, act("T-1", bad[i]), FS_ERR_SCHEMA);
    fs_store_close(s);
}

TEST(test_apply_rejects_int_outside_int64) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_REFUSED2(s, act("T-1", "'set':{'on_hand':9223372036854775808}"), FS_ERR_SCHEMA,
                    FS_ERR_JSON);
    fs_store_close(s);
}

TEST(test_apply_rejects_create_without_required_field) {
    fs_store *s = seeded();
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, act("T-2", "'set':{'site':'A'}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-2", "'inc':{'picked':1}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-2", "'add':{'tags':['a']}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-2", "'set':{'status':null}"), FS_ERR_SCHEMA);
    CHECK_STATUS(fs_store_get(s, "task", "T-2", &out), FS_ERR_NOT_FOUND);
    fs_store_close(s);
}

TEST(test_apply_rejects_inc_on_a_non_counter) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, act("T-1", "'inc':{'on_hand':1}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'inc':{'weight':1}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'inc':{'status':1}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'inc':{'tags':1}"), FS_ERR_SCHEMA);
    fs_store_close(s);
}

TEST(test_apply_rejects_set_on_a_counter) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, act("T-1", "'set':{'picked':5}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'set':{'picked':null}"), FS_ERR_SCHEMA);
    fs_store_close(s);
}

TEST(test_apply_rejects_set_on_a_set_field) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, act("T-1", "'set':{'tags':['x']}"), FS_ERR_SCHEMA);
    fs_store_close(s);
}

TEST(test_apply_rejects_add_and_remove_on_a_non_set_field) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, act("T-1", "'add':{'status':['x']}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'remove':{'lines':['x']}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'add':{'picked':[1]}"), FS_ERR_SCHEMA);
    fs_store_close(s);
}

TEST(test_apply_rejects_a_write_to_a_device_writes_false_field) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, act("T-1", "'set':{'locked':1}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-1", "'set':{'locked':null}"), FS_ERR_SCHEMA);
    EXPECT_REFUSED(s, act("T-2", "'set':{'status':'open','locked':1}"), FS_ERR_SCHEMA);
    fs_store_close(s);
}

TEST(test_apply_rejects_counter_overflow) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':9223372036854775806}"))); /* = INT64_MAX */
    EXPECT_REFUSED(s, act("T-1", "'inc':{'picked':1}"), FS_ERR_ARG);
    json_decref(apply_ok(s, act("T-2", "'set':{'status':'open'},'inc':{'picked':-9223372036854775807}")));
    json_decref(apply_ok(s, act("T-2", "'inc':{'picked':-1}"))); /* = INT64_MIN */
    EXPECT_REFUSED(s, act("T-2", "'inc':{'picked':-1}"), FS_ERR_ARG);
    fs_store_close(s);
}

TEST(test_apply_rejects_an_action_without_changes) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, Q("{'action':'a','actor':'o','type':'task','id':'T-1'}"), FS_ERR_ARG);
    EXPECT_REFUSED(s, act("T-1", "'set':{}"), FS_ERR_ARG);
    EXPECT_REFUSED(s, act("T-1", "'set':{},'inc':{},'add':{},'remove':{}"), FS_ERR_ARG);
    EXPECT_REFUSED(s, act("T-1", "'input':{'x':1}"), FS_ERR_ARG);
    fs_store_close(s);
}

TEST(test_apply_rejects_delete_combined_with_other_changes) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, act("T-1", "'delete':true,'set':{'site':'A'}"), FS_ERR_ARG);
    EXPECT_REFUSED(s, act("T-1", "'delete':true,'inc':{'picked':1}"), FS_ERR_ARG);
    EXPECT_REFUSED(s, act("T-1", "'delete':true,'add':{'tags':['b']}"), FS_ERR_ARG);
    EXPECT_REFUSED(s, act("T-1", "'delete':true,'remove':{'tags':['a']}"), FS_ERR_ARG);
    fs_store_close(s);
}

TEST(test_apply_rejects_missing_action_actor_type_or_id) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, Q("{'actor':'o','type':'task','id':'T-1','set':{'site':'A'}}"), FS_ERR_ARG);
    EXPECT_REFUSED(s, Q("{'action':'a','type':'task','id':'T-1','set':{'site':'A'}}"), FS_ERR_ARG);
    EXPECT_REFUSED(s, Q("{'action':'a','actor':'o','id':'T-1','set':{'site':'A'}}"), FS_ERR_ARG);
    EXPECT_REFUSED(s, Q("{'action':'a','actor':'o','type':'task','set':{'site':'A'}}"), FS_ERR_ARG);
    fs_store_close(s);
}

TEST(test_apply_rejects_wrongly_typed_action_members) {
    static const char *const bad[] = {
        "{'action':5,'actor':'o','type':'task','id':'T-1','set':{'site':'A'}}",
        "{'action':'a','actor':null,'type':'task','id':'T-1','set':{'site':'A'}}",
        "{'action':'a','actor':'o','type':['task'],'id':'T-1','set':{'site':'A'}}",
        "{'action':'a','actor':'o','type':'task','id':7,'set':{'site':'A'}}",
        "{'action':'a','actor':'o','type':'task','id':'T-1','set':'site'}",
        "{'action':'a','actor':'o','type':'task','id':'T-1','set':[['site','A']]}",
        "{'action':'a','actor':'o','type':'task','id':'T-1','inc':[1]}",
        "{'action':'a','actor':'o','type':'task','id':'T-1','add':'tags'}",
        "{'action':'a','actor':'o','type':'task','id':'T-1','remove':5}",
        "{'action':'a','actor':'o','type':'task','id':'T-1','delete':'yes'}",
        "{'action':'a','actor':'o','type':'task','id':'T-1','delete':1}",
    };
    fs_store *s = seeded();
    size_t i;
    REQUIRE(s != NULL);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) EXPECT_REFUSED(s, Q(bad[i]), FS_ERR_ARG);
    fs_store_close(s);
}

TEST(test_apply_rejects_an_unknown_action_member) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    /* a typo ("sett") must not be silently ignored */
    EXPECT_REFUSED2(s, act("T-1", "'set':{'site':'A'},'sett':{'site':'B'}"), FS_ERR_ARG,
                    FS_ERR_SCHEMA);
    fs_store_close(s);
}

TEST(test_apply_rejects_an_action_that_is_not_an_object) {
    fs_store *s = seeded();
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, "[]", FS_ERR_ARG);
    EXPECT_REFUSED(s, "42", FS_ERR_ARG);
    EXPECT_REFUSED(s, "\"set\"", FS_ERR_ARG);
    EXPECT_REFUSED(s, "null", FS_ERR_ARG);
    fs_store_close(s);
}

TEST(test_apply_rejects_malformed_json) {
    static const char *const bad[] = {
        "",
        "{",
        "{'action':}",
        "{'action':'a','actor':'o','type':'task','id':'T-1','set':{'site':'A'}} trailing",
        "{'action':'a','actor':'o','type':'task','id':'T-1','set':{'site':'A'},}",
        "{action:'a'}",
        "{'action':'a','actor':'o','type':'task','id':'T-1','set':{'site':'A\\q'}}",
        "{'action':'a','actor':'o','type':'task','id':'T-1','set':{'weight':NaN}}",
    };
    fs_store *s = seeded();
    size_t i;
    REQUIRE(s != NULL);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) EXPECT_REFUSED(s, Q(bad[i]), FS_ERR_JSON);
    fs_store_close(s);
}

TEST(test_apply_rejects_invalid_utf8) {
    static const char *const bad[] = {
        /* a lone 0xff byte inside a string value */
        "{\"action\":\"a\",\"actor\":\"o\",\"type\":\"task\",\"id\":\"T-1\",\"set\":{\"site\":\"A\xff\"}}",
        /* inside a key */
        "{\"action\":\"a\",\"actor\":\"o\",\"type\":\"task\",\"id\":\"T-1\",\"set\":{\"si\xfe" "te\":\"A\"}}",
        /* inside the id and the actor */
        "{\"action\":\"a\",\"actor\":\"o\",\"type\":\"task\",\"id\":\"T-\xff\",\"set\":{\"status\":\"x\"}}",
        "{\"action\":\"a\",\"actor\":\"o\xc3\",\"type\":\"task\",\"id\":\"T-1\",\"set\":{\"site\":\"A\"}}",
        /* overlong encoding of '/' and an encoded UTF-16 surrogate */
        "{\"action\":\"a\",\"actor\":\"o\",\"type\":\"task\",\"id\":\"T-1\",\"set\":{\"site\":\"\xc0\xaf\"}}",
        "{\"action\":\"a\",\"actor\":\"o\",\"type\":\"task\",\"id\":\"T-1\",\"set\":{\"site\":\"\xed\xa0\x80\"}}",
        /* in the verbatim input */
        "{\"action\":\"a\",\"actor\":\"o\",\"type\":\"task\",\"id\":\"T-1\",\"set\":{\"site\":\"A\"},\"input\":\"\x80\"}",
    };
    fs_store *s = seeded();
    size_t i;
    REQUIRE(s != NULL);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) EXPECT_REFUSED(s, bad[i], FS_ERR_JSON);
    fs_store_close(s);
}

TEST(test_apply_rejects_an_action_over_max_json_bytes) {
    fs_store *s = seeded();
    const char *head = "{\"action\":\"edit\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"T-1\","
                       "\"set\":{\"site\":\"A\"},\"input\":{\"blob\":\"";
    const char *tail = "\"}}";
    char *blob = repeat_char('x', FS_MAX_JSON_BYTES + 1 - strlen(head) - strlen(tail));
    char *action = strf("%s%s%s", head, blob, tail);
    char *huge;
    REQUIRE(s != NULL);
    CHECK_INT_EQ(strlen(action), FS_MAX_JSON_BYTES + 1);
    EXPECT_REFUSED(s, action, FS_ERR_TOO_BIG);
    /* far larger, and malformed: the size check comes first */
    huge = repeat_char('[', 4 * FS_MAX_JSON_BYTES);
    EXPECT_REFUSED(s, huge, FS_ERR_TOO_BIG);
    free(huge);
    free(blob);
    free(action);
    fs_store_close(s);
}

TEST(test_apply_rejects_an_id_over_max_id_bytes) {
    fs_store *s = seeded();
    char *id = repeat_char('i', FS_MAX_ID_BYTES + 1);
    REQUIRE(s != NULL);
    EXPECT_REFUSED(s, act(id, "'set':{'status':'open'}"), FS_ERR_TOO_BIG);
    free(id);
    fs_store_close(s);
}

TEST(test_apply_rejects_null_arguments) {
    fs_store *s = seeded();
    store_snap snap;
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    snap_take(s, &snap);
    CHECK_STATUS(fs_store_apply(NULL, act("T-1", "'set':{'site':'A'}"), &out), FS_ERR_ARG);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_apply(s, NULL, &out), FS_ERR_ARG);
    CHECK(out == NULL);
    /* a valid action with nowhere to put the result is refused and not applied */
    CHECK_STATUS(fs_store_apply(s, act("T-1", "'set':{'site':'A'}"), NULL), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    CHECK_UNCHANGED(s, &snap);
    fs_store_close(s);
}

TEST(test_apply_after_a_refusal_still_works) {
    fs_store *s = seeded();
    json_t *r;
    REQUIRE(s != NULL);
    CHECK_STATUS(apply_status(s, act("T-1", "'set':{'nope':1}")), FS_ERR_SCHEMA);
    r = apply_ok(s, act("T-1", "'set':{'site':'A'}"));
    /* the refused action consumed no sequence number */
    CHECK_INT_EQ(jint(r, "seq"), 2);
    CHECK_INT_EQ(jint(r, "audit_id"), 2);
    json_decref(r);
    fs_store_close(s);
}
