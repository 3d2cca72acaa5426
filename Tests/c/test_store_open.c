/* test_store_open.c — fs_store_open options, reopening, bad files, close and
 * use after close. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* Opens `path` expecting `expected`; checks out_store is NULL afterwards. */
static void check_open_fails(const char *file, int line, const char *path, const char *schema,
                             const char *options, fs_status expected) {
    fs_store *out = (fs_store *)SENTINEL;
    char msg[FS_TEST_MSG_MAX];
    fs_status st = fs_store_open(path, schema, options, &out);
    fs_test_copy_last_error(msg);
    if (st != expected)
        fs_test_fail(file, line, "fs_store_open(%.80s, schema %.60s%s, options %.80s)\n"
                     "      returned %s, expected %s; fs_last_error: \"%s\"",
                     path ? path : "NULL", schema ? schema : "NULL",
                     schema && strlen(schema) > 60 ? "..." : "", options ? options : "NULL",
                     fs_status_name(st), fs_status_name(expected), msg);
    else if (msg[0] == '\0')
        fs_test_fail(file, line, "fs_store_open refused with an empty fs_last_error()");
    if (st != FS_OK && out != NULL)
        fs_test_fail(file, line, "fs_store_open failed but out_store is not NULL");
    if (out != NULL && out != (fs_store *)SENTINEL) fs_store_close(out);
}
#define CHECK_OPEN_FAILS(path, schema, options, expected) \
    check_open_fails(__FILE__, __LINE__, (path), (schema), (options), (expected))

TEST(test_open_creates_the_file_and_close_succeeds) {
    fs_store *s = NULL;
    const char *path = test_path("new.db");
    CHECK(!exists(path));
    REQUIRE_OK(fs_store_open(path, TASK_SCHEMA, NULL, &s));
    CHECK(s != NULL);
    CHECK(exists(path));
    CHECK_OK(fs_store_close(s));
}

TEST(test_open_accepts_empty_options_object) {
    fs_store *s = NULL;
    REQUIRE_OK(fs_store_open(test_path("a.db"), TASK_SCHEMA, "{}", &s));
    CHECK_OK(fs_store_close(s));
}

TEST(test_open_with_durability_normal_and_full_both_persist) {
    static const char *const modes[] = {"normal", "full"};
    size_t i;
    for (i = 0; i < 2; i++) {
        char name[32], opts[64];
        fs_store *s;
        json_t *rec;
        snprintf(name, sizeof name, "%s.db", modes[i]);
        snprintf(opts, sizeof opts, "{\"durability\":\"%s\"}", modes[i]);
        s = open_store(name, TASK_SCHEMA, opts);
        REQUIRE(s != NULL);
        create_task(s, "T-1", modes[i]);
        CHECK_OK(fs_store_close(s));
        s = open_store(name, TASK_SCHEMA, opts);
        REQUIRE(s != NULL);
        rec = get_ok(s, "task", "T-1");
        CHECK_STR_EQ(jstr(rec, "status"), modes[i]);
        CHECK_INT_EQ(outbox_count(s), 1);
        json_decref(rec);
        CHECK_OK(fs_store_close(s));
    }
}

TEST(test_open_accepts_busy_timeout_zero_and_large) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"busy_timeout_ms\":0}");
    REQUIRE(s != NULL);
    fs_store_close(s);
    s = open_store("a.db", TASK_SCHEMA, "{\"busy_timeout_ms\":600000}");
    REQUIRE(s != NULL);
    fs_store_close(s);
}

TEST(test_open_rejects_unknown_option_key) {
    CHECK_OPEN_FAILS(test_path("a.db"), TASK_SCHEMA, "{\"durabilty\":\"full\"}", FS_ERR_ARG);
    CHECK_OPEN_FAILS(test_path("a.db"), TASK_SCHEMA, "{\"durability\":\"full\",\"x\":1}",
                     FS_ERR_ARG);
}

TEST(test_open_with_a_bad_option_creates_no_file) {
    const char *path = test_path("never.db");
    CHECK_OPEN_FAILS(path, TASK_SCHEMA, "{\"bogus_option\":true}", FS_ERR_ARG);
    CHECK(!exists(path));
}

TEST(test_open_rejects_bad_option_values) {
    static const char *const bad[] = {
        "{\"durability\":\"fast\"}",      "{\"durability\":1}",
        "{\"device_id\":\"bad id\"}",
        "{\"device_id\":\"\"}",           "{\"device_id\":\"dev/1\"}",
        "{\"device_id\":7}",              "{\"busy_timeout_ms\":-1}",
        "{\"busy_timeout_ms\":\"100\"}",  "{\"busy_timeout_ms\":1.5}",
        "{\"busy_timeout_ms\":true}",
    };
    open_refused(bad);
}

TEST(test_open_rejects_null_option_values) {
    /* null is none of the documented values; like a typo it must not be
     * silently taken as "use the default" */
    CHECK_OPEN_FAILS(test_path("a.db"), TASK_SCHEMA, "{\"durability\":null}", FS_ERR_ARG);
    CHECK_OPEN_FAILS(test_path("a.db"), TASK_SCHEMA, "{\"device_id\":null}", FS_ERR_ARG);
    CHECK_OPEN_FAILS(test_path("a.db"), TASK_SCHEMA, "{\"busy_timeout_ms\":null}", FS_ERR_ARG);
}

TEST(test_open_rejects_device_id_over_64_chars) {
    char *id = repeat_char('d', 65);
    char *opts = strf("{\"device_id\":\"%s\"}", id);
    CHECK_OPEN_FAILS(test_path("a.db"), TASK_SCHEMA, opts, FS_ERR_ARG);
    free(opts);
    free(id);
}

TEST(test_open_accepts_device_id_of_64_allowed_chars) {
    /* [A-Za-z0-9_.:-]{1,64} */
    const char *id = "Az09_.:-Az09_.:-Az09_.:-Az09_.:-Az09_.:-Az09_.:-Az09_.:-Az09_.:-";
    char *opts = strf("{\"device_id\":\"%s\"}", id);
    fs_store *s;
    json_t *r;
    CHECK_INT_EQ(strlen(id), 64);
    s = open_store("a.db", TASK_SCHEMA, opts);
    free(opts);
    REQUIRE(s != NULL);
    r = apply_ok(s, act("T-1", "'set':{'status':'open'}"));
    {
        char *key = strf("%s-1", id);
        CHECK_STR_EQ(jstr(r, "outbox_key"), key);
        free(key);
    }
    json_decref(r);
    fs_store_close(s);
}

TEST(test_open_rejects_options_that_are_not_an_object) {
    CHECK_OPEN_FAILS(test_path("a.db"), TASK_SCHEMA, "[]", FS_ERR_ARG);
    CHECK_OPEN_FAILS(test_path("a.db"), TASK_SCHEMA, "\"full\"", FS_ERR_ARG);
    CHECK_OPEN_FAILS(test_path("a.db"), TASK_SCHEMA, "5", FS_ERR_ARG);
}

TEST(test_open_rejects_malformed_options_json) {
    CHECK_OPEN_FAILS(test_path("a.db"), TASK_SCHEMA, "{", FS_ERR_JSON);
    CHECK_OPEN_FAILS(test_path("a.db"), TASK_SCHEMA, "{\"device_id\":\"d\xff\"}", FS_ERR_JSON);
}

TEST(test_open_rejects_null_path_schema_and_out) {
    fs_store *out = (fs_store *)SENTINEL;
    CHECK_STATUS(fs_store_open(NULL, TASK_SCHEMA, NULL, &out), FS_ERR_ARG);
    CHECK(out == NULL);
    out = (fs_store *)SENTINEL;
    CHECK_STATUS(fs_store_open(test_path("a.db"), NULL, NULL, &out), FS_ERR_ARG);
    CHECK(out == NULL);
    CHECK_STATUS(fs_store_open(test_path("b.db"), TASK_SCHEMA, NULL, NULL), FS_ERR_ARG);
    CHECK(!exists(test_path("b.db")));
}

TEST(test_open_rejects_malformed_schema_json) {
    CHECK_OPEN_FAILS(test_path("a.db"), "{\"version\":1,", NULL, FS_ERR_JSON);
    CHECK_OPEN_FAILS(test_path("a.db"), "", NULL, FS_ERR_JSON);
    CHECK_OPEN_FAILS(test_path("a.db"), "not json", NULL, FS_ERR_JSON);
}

TEST(test_open_rejects_schema_with_invalid_utf8) {
    const char *schema = "{\"version\":1,\"types\":{\"task\":{\"fields\":{"
                         "\"status\":{\"type\":\"str\xff" "ing\"}}}}}";
    CHECK_OPEN_FAILS(test_path("a.db"), schema, NULL, FS_ERR_JSON);
}

TEST(test_open_rejects_oversized_schema_and_options) {
    /* a syntactically fine object padded past FS_MAX_JSON_BYTES with spaces */
    char *pad = repeat_char(' ', FS_MAX_JSON_BYTES);
    char *schema = strf("%s%s", TASK_SCHEMA, pad);
    char *opts = strf("{\"durability\":\"full\"}%s", pad);
    CHECK_OPEN_FAILS(test_path("a.db"), schema, NULL, FS_ERR_TOO_BIG);
    CHECK_OPEN_FAILS(test_path("b.db"), TASK_SCHEMA, opts, FS_ERR_TOO_BIG);
    free(pad);
    free(schema);
    free(opts);
}

TEST(test_open_in_a_missing_directory_returns_io) {
    char *path = strf("%s/no/such/dir/store.db", fs_test_dir());
    CHECK_OPEN_FAILS(path, TASK_SCHEMA, NULL, FS_ERR_IO);
    free(path);
}

TEST(test_open_on_a_directory_fails_with_io) {
    CHECK_OPEN_FAILS(fs_test_dir(), TASK_SCHEMA, NULL, FS_ERR_IO);
}

TEST(test_open_a_file_of_random_bytes_returns_corrupt_and_leaves_it_alone) {
    unsigned char junk[8192], after[8192];
    const char *path = test_path("junk.db");
    size_t i;
    FILE *f;
    unsigned x = 12345;
    for (i = 0; i < sizeof junk; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (unsigned char)(x >> 16);
    }
    REQUIRE(write_file(path, junk, sizeof junk) == 0);
    CHECK_OPEN_FAILS(path, TASK_SCHEMA, NULL, FS_ERR_CORRUPT);
    f = fopen(path, "rb");
    REQUIRE(f != NULL);
    CHECK(fread(after, 1, sizeof after, f) == sizeof after);
    CHECK(fgetc(f) == EOF);
    fclose(f);
    CHECK(memcmp(junk, after, sizeof junk) == 0);
}

TEST(test_open_a_foreign_sqlite_database_returns_corrupt) {
    const char *path = test_path("foreign.db");
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int tables = -1;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE invoices(id INTEGER PRIMARY KEY, total REAL);"
                             "INSERT INTO invoices(total) VALUES (9.5);",
                         NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_OPEN_FAILS(path, TASK_SCHEMA, NULL, FS_ERR_CORRUPT);
    /* nothing of ours was added to the host's database */
    REQUIRE(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE type='table'", -1,
                               &st, NULL) == SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) tables = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK_INT_EQ(tables, 1);
}

TEST(test_reopen_keeps_records_outbox_audit_and_device_id) {
    fs_store *s = open_task_store();
    json_t *stats, *rec, *rows, *ob;
    char device_id[128];
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':4},'add':{'tags':['x']}")));
    create_task(s, "T-2", "done");
    stats = stats_ok(s);
    REQUIRE(stats != NULL && jstr(stats, "device_id") != NULL);
    snprintf(device_id, sizeof device_id, "%s", jstr(stats, "device_id"));
    json_decref(stats);
    CHECK_OK(fs_store_close(s));

    s = open_task_store();
    REQUIRE(s != NULL);
    rec = get_ok(s, "task", "T-1");
    CHECK_STR_EQ(jstr(rec, "status"), "open");
    CHECK_INT_EQ(jint(rec, "picked"), 4);
    CHECK_INT_EQ(json_array_size(json_object_get(rec, "tags")), 1);
    json_decref(rec);
    CHECK_INT_EQ(outbox_count(s), 3);
    rows = audit_ok(s, NULL);
    CHECK_INT_EQ(json_array_size(rows), 3);
    CHECK_STR_EQ(jstr(json_array_get(rows, 0), "device_id"), device_id);
    json_decref(rows);
    ob = outbox_ok(s, NULL);
    CHECK_INT_EQ(json_array_size(ob), 3);
    json_decref(ob);
    stats = stats_ok(s);
    CHECK_STR_EQ(jstr(stats, "device_id"), device_id);
    json_decref(stats);
    /* the sequence continues after the reopen */
    rec = apply_ok(s, act("T-2", "'set':{'site':'B'}"));
    CHECK_INT_EQ(jint(rec, "seq"), 4);
    CHECK_INT_EQ(jint(rec, "audit_id"), 4);
    json_decref(rec);
    CHECK_OK(fs_store_close(s));
}

static int valid_device_id(const char *id) {
    size_t n = id ? strlen(id) : 0, i;
    if (n < 1 || n > 64) return 0;
    for (i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

TEST(test_generated_device_id_is_valid_kept_and_unique) {
    fs_store *a = open_store("a.db", TASK_SCHEMA, NULL);
    fs_store *b = open_store("b.db", TASK_SCHEMA, NULL);
    json_t *sa, *sb, *again, *r;
    char id_a[128];
    REQUIRE(a != NULL && b != NULL);
    sa = stats_ok(a);
    sb = stats_ok(b);
    REQUIRE(sa != NULL && sb != NULL);
    CHECK(valid_device_id(jstr(sa, "device_id")));
    CHECK(valid_device_id(jstr(sb, "device_id")));
    CHECK(jstr(sa, "device_id") && jstr(sb, "device_id") &&
          strcmp(jstr(sa, "device_id"), jstr(sb, "device_id")) != 0);
    snprintf(id_a, sizeof id_a, "%s", jstr(sa, "device_id") ? jstr(sa, "device_id") : "");
    r = apply_ok(a, act("T-1", "'set':{'status':'open'}"));
    {
        char *key = strf("%s-1", id_a);
        CHECK_STR_EQ(jstr(r, "outbox_key"), key);
        free(key);
    }
    json_decref(r);
    fs_store_close(a);
    fs_store_close(b);
    a = open_store("a.db", TASK_SCHEMA, NULL);
    REQUIRE(a != NULL);
    again = stats_ok(a);
    CHECK_STR_EQ(jstr(again, "device_id"), id_a);
    /* giving the stored id explicitly is accepted */
    fs_store_close(a);
    {
        char *opts = strf("{\"device_id\":\"%s\"}", id_a);
        a = open_store("a.db", TASK_SCHEMA, opts);
        free(opts);
        CHECK(a != NULL);
        fs_store_close(a);
    }
    json_decref(sa);
    json_decref(sb);
    json_decref(again);
}

TEST(test_given_device_id_is_used_in_outbox_keys_and_audit_rows) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"device_id\":\"dev-42\"}");
    json_t *r, *rows, *ob, *st;
    REQUIRE(s != NULL);
    r = apply_ok(s, act("T-1", "'set':{'status':'open'}"));
    CHECK_STR_EQ(jstr(r, "outbox_key"), "dev-42-1");
    json_decref(r);
    r = apply_ok(s, act("T-1", "'set':{'site':'X'}"));
    CHECK_STR_EQ(jstr(r, "outbox_key"), "dev-42-2");
    json_decref(r);
    rows = audit_ok(s, NULL);
    CHECK_STR_EQ(jstr(json_array_get(rows, 1), "device_id"), "dev-42");
    CHECK_STR_EQ(json_string_value(json_array_get(
                     json_object_get(json_array_get(rows, 1), "outbox_keys"), 0)),
                 "dev-42-2");
    json_decref(rows);
    ob = outbox_ok(s, NULL);
    CHECK_STR_EQ(jstr(json_array_get(ob, 0), "key"), "dev-42-1");
    json_decref(ob);
    st = stats_ok(s);
    CHECK_STR_EQ(jstr(st, "device_id"), "dev-42");
    json_decref(st);
    fs_store_close(s);
}

TEST(test_open_refuses_a_device_id_different_from_the_stored_one) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"device_id\":\"dev-A\"}");
    fs_store *other = (fs_store *)SENTINEL;
    fs_status st;
    json_t *stats;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    fs_store_close(s);
    st = fs_store_open(test_path("a.db"), TASK_SCHEMA, "{\"device_id\":\"dev-B\"}", &other);
    CHECK(st != FS_OK);
    CHECK(fs_last_error()[0] != '\0');
    CHECK(other == NULL);
    if (st == FS_OK && other != NULL && other != (fs_store *)SENTINEL) fs_store_close(other);
    s = open_store("a.db", TASK_SCHEMA, NULL);
    REQUIRE(s != NULL);
    stats = stats_ok(s);
    CHECK_STR_EQ(jstr(stats, "device_id"), "dev-A");
    CHECK_INT_EQ(outbox_count(s), 1);
    json_decref(stats);
    fs_store_close(s);
}

TEST(test_open_accepts_the_same_schema_reformatted) {
    /* same content, other key order and whitespace */
    const char *same =
        "{ \"types\": { \"task\": { \"required\": [\"status\"], \"fields\": {\n"
        "  \"lines\": {\"resolver\": \"order_lines\", \"merge\": \"custom\", \"type\": \"json\"},\n"
        "  \"locked\": {\"device_writes\": false, \"merge\": \"server\", \"type\": \"int\"},\n"
        "  \"on_hand\": {\"merge\": \"server\", \"type\": \"int\"},\n"
        "  \"tags\": {\"type\": \"set\"},\n"
        "  \"urgent\": {\"type\": \"bool\"},\n"
        "  \"weight\": {\"type\": \"float\"},\n"
        "  \"picked\": {\"merge\": \"counter\", \"type\": \"int\"},\n"
        "  \"site\": {\"merge\": \"lww\", \"type\": \"string\"},\n"
        "  \"status\": {\"type\": \"string\"} } } }, \"version\": 1 }";
    fs_store *s = open_task_store();
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    fs_store_close(s);
    s = open_store("store.db", same, NULL);
    REQUIRE(s != NULL);
    CHECK_INT_EQ(outbox_count(s), 1);
    fs_store_close(s);
}

TEST(test_open_refuses_a_changed_schema_with_the_same_version) {
    /* `site` becomes an int: the message must name the field */
    const char *changed =
        "{\"version\":1,\"types\":{\"task\":{\"fields\":{"
        "\"status\":{\"type\":\"string\"},\"site\":{\"type\":\"int\"},"
        "\"picked\":{\"type\":\"int\",\"merge\":\"counter\"},\"weight\":{\"type\":\"float\"},"
        "\"urgent\":{\"type\":\"bool\"},\"tags\":{\"type\":\"set\"},"
        "\"on_hand\":{\"type\":\"int\",\"merge\":\"server\"},"
        "\"locked\":{\"type\":\"int\",\"merge\":\"server\",\"device_writes\":false},"
        "\"lines\":{\"type\":\"json\",\"merge\":\"custom\",\"resolver\":\"order_lines\"}"
        "},\"required\":[\"status\"]}}}";
    const char *extra =
        "{\"version\":1,\"types\":{\"task\":{\"fields\":{"
        "\"status\":{\"type\":\"string\"},\"site\":{\"type\":\"string\",\"merge\":\"lww\"},"
        "\"picked\":{\"type\":\"int\",\"merge\":\"counter\"},\"weight\":{\"type\":\"float\"},"
        "\"urgent\":{\"type\":\"bool\"},\"tags\":{\"type\":\"set\"},"
        "\"on_hand\":{\"type\":\"int\",\"merge\":\"server\"},"
        "\"locked\":{\"type\":\"int\",\"merge\":\"server\",\"device_writes\":false},"
        "\"lines\":{\"type\":\"json\",\"merge\":\"custom\",\"resolver\":\"order_lines\"},"
        "\"surprise_field\":{\"type\":\"string\"}"
        "},\"required\":[\"status\"]}}}";
    fs_store *s = open_task_store();
    fs_store *out = (fs_store *)SENTINEL;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    fs_store_close(s);
    CHECK_STATUS(fs_store_open(test_path("store.db"), changed, NULL, &out), FS_ERR_SCHEMA);
    if (strstr(fs_last_error(), "site") == NULL)
        fs_test_fail(__FILE__, __LINE__, "message \"%s\" does not name the field site",
                     fs_last_error());
    CHECK(out == NULL);
    out = (fs_store *)SENTINEL;
    CHECK_STATUS(fs_store_open(test_path("store.db"), extra, NULL, &out), FS_ERR_SCHEMA);
    if (strstr(fs_last_error(), "surprise_field") == NULL)
        fs_test_fail(__FILE__, __LINE__, "message \"%s\" does not name surprise_field",
                     fs_last_error());
    CHECK(out == NULL);
    /* the store is intact with its own schema */
    s = open_task_store();
    REQUIRE(s != NULL);
    CHECK_INT_EQ(outbox_count(s), 1);
    fs_store_close(s);
}

TEST(test_open_refuses_an_older_schema_version_than_the_stored_one) {
    const char *v2 = Q("{'version':2,'types':{'task':{'fields':{'status':{'type':'string'}}}}}");
    char v1[256];
    fs_store *s, *out = (fs_store *)SENTINEL;
    snprintf(v1, sizeof v1, "%s", Q("{'version':1,'types':{'task':{'fields':{'status':{'type':'string'}}}}}"));
    s = open_store("a.db", v2, NULL);
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    fs_store_close(s);
    CHECK_STATUS(fs_store_open(test_path("a.db"), v1, NULL, &out), FS_ERR_SCHEMA);
    CHECK_ERROR_MESSAGE();
    CHECK(out == NULL);
    s = open_store("a.db", v2, NULL);
    REQUIRE(s != NULL);
    CHECK_INT_EQ(outbox_count(s), 1);
    fs_store_close(s);
}

TEST(test_close_null_is_ok) {
    CHECK_OK(fs_store_close(NULL));
    CHECK_NO_ERROR_MESSAGE();
}

TEST(test_close_twice_returns_closed) {
    fs_store *s = open_task_store();
    REQUIRE(s != NULL);
    CHECK_OK(fs_store_close(s));
    CHECK_STATUS(fs_store_close(s), FS_ERR_CLOSED);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_store_close(s), FS_ERR_CLOSED);
}

static int64_t some_clock(void *ctx) {
    (void)ctx;
    return 1;
}

TEST(test_closed_handle_refuses_every_call) {
    fs_store *s = open_task_store();
    char *out;
    int64_t n;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    CHECK_OK(fs_store_close(s));
    CHECK_STATUS(fs_store_set_clock(s, some_clock, NULL), FS_ERR_CLOSED);
    out = SENTINEL;
    CHECK_STATUS(fs_store_apply(s, act("T-2", "'set':{'status':'open'}"), &out), FS_ERR_CLOSED);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_get(s, "task", "T-1", &out), FS_ERR_CLOSED);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_query(s, "{\"type\":\"task\"}", &out), FS_ERR_CLOSED);
    CHECK(out == NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_store_stats(s, &out), FS_ERR_CLOSED);
    CHECK(out == NULL);
    n = 77;
    CHECK_STATUS(fs_outbox_count(s, &n), FS_ERR_CLOSED);
    CHECK_INT_EQ(n, 0);
    out = SENTINEL;
    CHECK_STATUS(fs_outbox_list(s, NULL, &out), FS_ERR_CLOSED);
    CHECK(out == NULL);
    CHECK_STATUS(fs_outbox_discard(s, "x-1"), FS_ERR_CLOSED);
    out = SENTINEL;
    CHECK_STATUS(fs_audit_query(s, NULL, &out), FS_ERR_CLOSED);
    CHECK(out == NULL);
    CHECK_STATUS(fs_store_close(s), FS_ERR_CLOSED);
    /* the refused apply wrote nothing */
    s = open_task_store();
    REQUIRE(s != NULL);
    CHECK_INT_EQ(outbox_count(s), 1);
    CHECK_INT_EQ(audit_count(s), 1);
    fs_store_close(s);
}
