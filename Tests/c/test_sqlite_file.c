/* test_sqlite_file.c — the store file read with plain SQLite: a table per
 * type with `id` and one column per field, the local view in it, internal
 * tables prefixed fs_, WAL mode, readable while the store is open. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

static sqlite3 *open_ro(const char *path) {
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fs_test_fail(__FILE__, __LINE__, "sqlite3_open_v2(%s): %s", path,
                     db ? sqlite3_errmsg(db) : "?");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* The first column of each row of `sql`, joined by ','. */
static char *column_list(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    char *s = strf("%s", "");
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        free(s);
        return strf("(error: %s)", sqlite3_errmsg(db));
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);
        char *next = strf("%s%s%s", s, s[0] ? "," : "", v ? (const char *)v : "NULL");
        free(s);
        s = next;
    }
    sqlite3_finalize(st);
    return s;
}

TEST(test_store_file_has_a_plain_task_table_with_one_column_per_field) {
    fs_store *s = open_task_store();
    sqlite3 *db;
    char *cols;
    size_t i;
    REQUIRE(s != NULL);
    db = open_ro(test_path("store.db"));
    REQUIRE(db != NULL);
    cols = column_list(db, "SELECT name FROM pragma_table_info('task') ORDER BY name");
    {
        /* id + the nine fields, nothing else required; check each is there */
        char *with_commas = strf(",%s,", cols);
        if (strstr(with_commas, ",id,") == NULL)
            fs_test_fail(__FILE__, __LINE__, "task table lacks column id (has %s)", cols);
        for (i = 0; i < TASK_FIELD_COUNT; i++) {
            char *needle = strf(",%s,", TASK_FIELDS[i]);
            if (strstr(with_commas, needle) == NULL)
                fs_test_fail(__FILE__, __LINE__, "task table lacks column %s (has %s)",
                             TASK_FIELDS[i], cols);
            free(needle);
        }
        free(with_commas);
    }
    free(cols);
    sqlite3_close(db);
    fs_store_close(s);
}

TEST(test_store_file_internal_tables_are_prefixed_fs) {
    fs_store *s = open_task_store();
    sqlite3 *db;
    char *tables;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    db = open_ro(test_path("store.db"));
    REQUIRE(db != NULL);
    tables = column_list(db, "SELECT name FROM sqlite_master WHERE type='table' AND name NOT "
                             "LIKE 'fs\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                             "ORDER BY name");
    CHECK_STR_EQ(tables, "task");
    free(tables);
    sqlite3_close(db);
    fs_store_close(s);
}

TEST(test_store_file_rows_mirror_the_local_view) {
    fs_store *s = open_task_store();
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rows = 0;
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'open','site':'A','weight':2.5,"
                                       "'urgent':true,'lines':[{'sku':'X','qty':1}]},"
                                       "'inc':{'picked':4},'add':{'tags':['b','a']}")));
    json_decref(apply_ok(s, act("T-2", "'set':{'status':'done','urgent':false}")));
    /* read while the store is open */
    db = open_ro(test_path("store.db"));
    REQUIRE(db != NULL);
    REQUIRE(sqlite3_prepare_v2(db, "SELECT id, status, site, picked, weight, urgent, tags, lines "
                                   "FROM task ORDER BY id", -1, &st, NULL) == SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        rows++;
        if (id != NULL && strcmp(id, "T-1") == 0) {
            json_t *tags, *lines, *exp_tags, *exp_lines;
            CHECK_STR_EQ((const char *)sqlite3_column_text(st, 1), "open");
            CHECK_STR_EQ((const char *)sqlite3_column_text(st, 2), "A");
            CHECK_INT_EQ(sqlite3_column_type(st, 3), SQLITE_INTEGER);
            CHECK_INT_EQ(sqlite3_column_int64(st, 3), 4);
            CHECK(sqlite3_column_double(st, 4) == 2.5);
            CHECK_INT_EQ(sqlite3_column_type(st, 5), SQLITE_INTEGER);
            CHECK_INT_EQ(sqlite3_column_int(st, 5), 1);
            /* sets and json as JSON text */
            CHECK_INT_EQ(sqlite3_column_type(st, 6), SQLITE_TEXT);
            tags = json_loads((const char *)sqlite3_column_text(st, 6), 0, NULL);
            exp_tags = json_loads("[\"a\",\"b\"]", 0, NULL);
            CHECK(json_is_array(tags) && json_array_size(tags) == 2);
            CHECK(json_equal(tags, exp_tags));
            lines = json_loads((const char *)sqlite3_column_text(st, 7), 0, NULL);
            exp_lines = json_loads("[{\"sku\":\"X\",\"qty\":1}]", 0, NULL);
            CHECK(json_equal(lines, exp_lines));
            json_decref(tags);
            json_decref(exp_tags);
            json_decref(lines);
            json_decref(exp_lines);
        } else if (id != NULL && strcmp(id, "T-2") == 0) {
            CHECK_STR_EQ((const char *)sqlite3_column_text(st, 1), "done");
            CHECK_INT_EQ(sqlite3_column_type(st, 2), SQLITE_NULL);
            CHECK_INT_EQ(sqlite3_column_int(st, 5), 0);
        } else {
            fs_test_fail(__FILE__, __LINE__, "unexpected row id %s", id ? id : "NULL");
        }
    }
    sqlite3_finalize(st);
    CHECK_INT_EQ(rows, 2);

    /* the store keeps writing while the host's read connection is open */
    json_decref(apply_ok(s, act("T-1", "'set':{'site':'B'}")));
    {
        char *site = column_list(db, "SELECT site FROM task WHERE id='T-1'");
        CHECK_STR_EQ(site, "B");
        free(site);
    }
    sqlite3_close(db);
    fs_store_close(s);
}

TEST(test_store_file_uses_wal_mode) {
    fs_store *s = open_task_store();
    sqlite3 *db;
    char *mode;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    db = open_ro(test_path("store.db"));
    REQUIRE(db != NULL);
    mode = column_list(db, "PRAGMA journal_mode");
    CHECK_STR_EQ(mode, "wal");
    free(mode);
    sqlite3_close(db);
    fs_store_close(s);
}

TEST(test_store_file_deleted_record_leaves_the_plain_table) {
    fs_store *s = open_task_store();
    sqlite3 *db;
    char *ids;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    create_task(s, "T-2", "open");
    json_decref(apply_ok(s, act("T-1", "'delete':true")));
    db = open_ro(test_path("store.db"));
    REQUIRE(db != NULL);
    ids = column_list(db, "SELECT id FROM task ORDER BY id");
    CHECK_STR_EQ(ids, "T-2");
    free(ids);
    sqlite3_close(db);
    fs_store_close(s);
}
