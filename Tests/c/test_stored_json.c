/* test_stored_json.c — JSON the engine stored that no longer reads back (a
 * damaged file) is FS_ERR_CORRUPT naming the table and the key, and the call
 * changes nothing; it is never read as an empty state or change. The damage
 * is done with plain SQLite, as a bad sector or a careless host would. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

/* Runs `sql` on the file `name` of the test dir through its own connection. */
static void damage_at(const char *file, int line, const char *name, const char *sql) {
    sqlite3 *db = NULL;
    char *err = NULL;
    if (sqlite3_open_v2(test_path(name), &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fs_test_fail(file, line, "sqlite3_open_v2(%s): %s", name, db ? sqlite3_errmsg(db) : "?");
    } else {
        sqlite3_busy_timeout(db, 5000);
        if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
            fs_test_fail(file, line, "%s: %s", sql, err ? err : "?");
        else if (sqlite3_changes(db) < 1)
            fs_test_fail(file, line, "%s changed no row", sql);
    }
    sqlite3_free(err);
    sqlite3_close(db);
}
#define DAMAGE(name, sql) damage_at(__FILE__, __LINE__, (name), (sql))

/* The call returned FS_ERR_CORRUPT and its message names `place`. */
static void expect_corrupt_at(const char *file, int line, fs_status st, const char *what,
                              const char *place) {
    char msg[FS_TEST_MSG_MAX];
    fs_test_copy_last_error(msg);
    if (st != FS_ERR_CORRUPT)
        fs_test_fail(file, line, "%s returned %s, expected FS_ERR_CORRUPT; fs_last_error: \"%s\"",
                     what, fs_status_name(st), msg);
    else if (strstr(msg, place) == NULL)
        fs_test_fail(file, line, "%s: the message \"%s\" does not name %s", what, msg, place);
}
#define EXPECT_CORRUPT(st, what, place) expect_corrupt_at(__FILE__, __LINE__, (st), (what), (place))

static const char *const SET_ON_HAND =
    "{\"action\":\"count\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"T-1\",\"set\":{\"on_hand\":5}}";

TEST(test_damaged_confirmed_state_is_corrupt_and_apply_changes_nothing) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    store_snap snap;
    char *out = SENTINEL;
    REQUIRE(h != NULL && s != NULL);
    create_task(s, "T-1", "open");
    sync_until_idle(s, h);
    fs_store_close(s);
    DAMAGE("dev-1.db", "UPDATE fs_shadow SET state = '{\"fields\":{\"status\":' WHERE id = 'T-1'");
    s = open_device("dev-1", NULL);
    REQUIRE(s != NULL);
    snap_take(s, &snap);
    /* A server field's write is based on the confirmed state's version. */
    EXPECT_CORRUPT(fs_store_apply(s, SET_ON_HAND, &out), "fs_store_apply", "fs_shadow.state of task/T-1");
    CHECK(out == NULL);
    free_out(out);
    CHECK_UNCHANGED(s, &snap);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_confirmed_state_that_is_not_an_object_is_corrupt) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *out = NULL;
    REQUIRE(h != NULL && s != NULL);
    create_task(s, "T-1", "open");
    sync_until_idle(s, h);
    fs_store_close(s);
    DAMAGE("dev-1.db", "UPDATE fs_shadow SET state = '[1,2]' WHERE id = 'T-1'");
    s = open_device("dev-1", NULL);
    REQUIRE(s != NULL);
    EXPECT_CORRUPT(fs_store_apply(s, SET_ON_HAND, &out), "fs_store_apply", "fs_shadow.state of task/T-1");
    free_out(out);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_damaged_outbox_ops_are_corrupt_and_change_nothing) {
    fs_store *s = open_task_store();
    char *out = NULL;
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, Q("{'action':'count','actor':'op-1','type':'task','id':'T-1',"
                              "'set':{'status':'open','on_hand':1}}")));
    DAMAGE("store.db", "UPDATE fs_outbox SET ops = '{\"set\":{\"on_hand\":' WHERE seq = 1");
    /* A second write of a server field is based on the pending first one. */
    EXPECT_CORRUPT(fs_store_apply(s, SET_ON_HAND, &out), "fs_store_apply", "fs_outbox.ops");
    free_out(out);
    out = NULL;
    EXPECT_CORRUPT(fs_outbox_list(s, NULL, &out), "fs_outbox_list", "fs_outbox entry 1");
    free_out(out);
    CHECK(outbox_count(s) == 1);
    CHECK(audit_count(s) == 1);
    fs_store_close(s);
}

TEST(test_damaged_ops_of_an_answered_entry_make_receive_corrupt_and_change_nothing) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *request, *response = NULL, *summary = SENTINEL;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    response = handle_ok(h, request);
    fs_free(request);
    REQUIRE(response != NULL);
    DAMAGE("dev-1.db", "UPDATE fs_outbox SET ops = 'not json' WHERE seq = 1");
    /* Moving the applied change into the confirmed state reads its ops. */
    EXPECT_CORRUPT(fs_sync_receive(s, response, &summary), "fs_sync_receive", "fs_outbox.ops of task/T-1");
    CHECK(summary == NULL);
    free_out(summary);
    CHECK(outbox_count(s) == 1);
    fs_free(response);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_damaged_audit_input_is_corrupt_in_audit_query) {
    fs_store *s = open_task_store();
    char *out = SENTINEL;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    DAMAGE("store.db", "UPDATE fs_audit SET input = '{\"set\":' WHERE audit_id = 1");
    EXPECT_CORRUPT(fs_audit_query(s, NULL, &out), "fs_audit_query", "fs_audit.input of audit row 1");
    CHECK(out == NULL);
    free_out(out);
    out = NULL;
    DAMAGE("store.db", "UPDATE fs_audit SET input = '{}', outbox_keys = '{\"a\":1}' WHERE audit_id = 1");
    EXPECT_CORRUPT(fs_audit_query(s, NULL, &out), "fs_audit_query", "fs_audit.outbox_keys of audit row 1");
    free_out(out);
    fs_store_close(s);
}

TEST(test_damaged_hub_record_state_is_corrupt_and_the_request_changes_nothing) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    hub_snap snap;
    char *request, *response = SENTINEL;
    REQUIRE(h != NULL && s != NULL);
    create_task(s, "T-1", "open");
    sync_until_idle(s, h);
    fs_hub_close(h);
    DAMAGE("hub.db", "UPDATE fs_hub_records SET state = '{\"fields\":' WHERE id = 'T-1'");
    h = open_task_hub();
    REQUIRE(h != NULL);
    json_decref(apply_ok(s, Q("{'action':'close','actor':'op-1','type':'task','id':'T-1','set':{'status':'done'}}")));
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    hub_snap_take(h, &snap);
    EXPECT_CORRUPT(fs_hub_handle(h, request, &response), "fs_hub_handle", "fs_hub_records.state of task/T-1");
    CHECK(response == NULL);
    free_out(response);
    CHECK_HUB_UNCHANGED(h, &snap);
    fs_free(request);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_damaged_hub_audit_row_is_corrupt_in_hub_audit_query) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *out = SENTINEL;
    REQUIRE(h != NULL && s != NULL);
    create_task(s, "T-1", "open");
    sync_until_idle(s, h);
    DAMAGE("hub.db", "UPDATE fs_hub_audit SET input = '[' WHERE audit_id = 1");
    EXPECT_CORRUPT(fs_hub_audit_query(h, NULL, &out), "fs_hub_audit_query", "fs_hub_audit row dev-1/1");
    CHECK(out == NULL);
    free_out(out);
    fs_store_close(s);
    fs_hub_close(h);
}
