/* test_limits.c — FS_ERR_BUSY when another connection holds the write lock
 * past busy_timeout_ms, and FS_ERR_FULL/IO when the file cannot grow: in both
 * cases nothing is written and the store works again afterwards.
 * (A file size limit makes SQLite itself report SQLITE_IOERR_WRITE, not
 * SQLITE_FULL, so FS_ERR_IO is as right as FS_ERR_FULL there.) */
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "fixture.h"

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

TEST(test_apply_returns_busy_when_another_connection_holds_the_write_lock) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"busy_timeout_ms\":300}");
    sqlite3 *db = NULL;
    store_snap snap;
    char *out = SENTINEL;
    long long t0, elapsed;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    REQUIRE(sqlite3_open(test_path("a.db"), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    snap_take(s, &snap);
    t0 = now_ms();
    CHECK_STATUS(fs_store_apply(s, act("T-1", "'inc':{'picked':1}"), &out), FS_ERR_BUSY);
    elapsed = now_ms() - t0;
    CHECK_ERROR_MESSAGE();
    CHECK(out == NULL);
    free_out(out);
    if (elapsed < 250 || elapsed > 5000)
        fs_test_fail(__FILE__, __LINE__, "apply waited %lld ms for a 300 ms busy_timeout_ms",
                     elapsed);
    CHECK_UNCHANGED(s, &snap);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    /* the lock is gone: the same action goes through */
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    CHECK_INT_EQ(outbox_count(s), 2);
    fs_store_close(s);
}

TEST(test_apply_waits_for_a_short_foreign_lock_within_busy_timeout) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"busy_timeout_ms\":5000}");
    sqlite3 *db = NULL;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    REQUIRE(sqlite3_open(test_path("a.db"), &db) == SQLITE_OK);
    /* an uncontended foreign write commits at once; the store then proceeds */
    REQUIRE(sqlite3_exec(db, "BEGIN IMMEDIATE; COMMIT;", NULL, NULL, NULL) == SQLITE_OK);
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    sqlite3_close(db);
    fs_store_close(s);
}

TEST(test_apply_fails_cleanly_when_the_file_cannot_grow_and_writes_nothing) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"durability\":\"normal\"}");
    struct rlimit saved, small;
    char *blob = repeat_char('b', 30000);
    char *action = strf("{\"action\":\"scan\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"T-1\","
                        "\"inc\":{\"picked\":1},\"input\":{\"blob\":\"%s\"}}",
                        blob);
    int ok = 0, i;
    fs_status st = FS_OK;
    char msg[FS_TEST_MSG_MAX] = "";
    long long before_outbox = -1;
    long before_audit = -1;
    json_t *rec;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    signal(SIGXFSZ, SIG_IGN);
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    small = saved;
    small.rlim_cur = 600 * 1024;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    for (i = 0; i < 200; i++) {
        char *out = SENTINEL;
        before_outbox = outbox_count(s);
        before_audit = audit_count(s);
        st = fs_store_apply(s, action, &out);
        fs_test_copy_last_error(msg);
        if (st != FS_OK) {
            CHECK(out == NULL);
            free_out(out);
            break;
        }
        fs_free(out);
        ok++;
    }
    /* reads still work at the limit, and show nothing of the failed action */
    CHECK_INT_EQ(outbox_count(s), before_outbox);
    CHECK_INT_EQ(audit_count(s), before_audit);
    REQUIRE(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    if (st != FS_ERR_FULL && st != FS_ERR_IO)
        fs_test_fail(__FILE__, __LINE__, "after %d applies under a 600 KiB file size limit the "
                     "status is %s (\"%s\"), expected FS_ERR_FULL (or FS_ERR_IO)", ok,
                     fs_status_name(st), msg);
    CHECK(msg[0] != '\0');
    CHECK(ok > 0);
    /* room again: the store works and holds exactly the successful actions */
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':100}")));
    CHECK_INT_EQ(outbox_count(s), ok + 2);
    CHECK_INT_EQ(audit_count(s), ok + 2);
    rec = get_ok(s, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), ok + 100);
    json_decref(rec);
    fs_store_close(s);
    s = open_store("a.db", TASK_SCHEMA, NULL);
    REQUIRE(s != NULL);
    CHECK_INT_EQ(outbox_count(s), ok + 2);
    {
        json_t *rows = audit_ok(s, NULL);
        CHECK_INT_EQ(verify_audit_chain(rows), 0);
        json_decref(rows);
    }
    fs_store_close(s);
    free(blob);
    free(action);
}
