/* test_hub_storage.c — fs_hub_open's "storage" and "dsn" options (docs/ABI.md
 * "Hub options"; issue 17) at the C door: every malformed or contradictory
 * combination is FS_ERR_ARG or FS_ERR_TOO_BIG with out_hub left NULL, an
 * unreachable server is FS_ERR_IO, nothing is created, nothing crashes. With
 * FIELDSYNC_PG_DSN set (make test under CI), a PostgreSQL hub opens, answers
 * and refuses a file backup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

static void refused(const char *path, const char *options, fs_status expected) {
    fs_hub *out = (fs_hub *)SENTINEL;
    fs_status st = fs_hub_open(path, TASK_SCHEMA, options, &out);
    if (st != expected)
        fs_test_fail(__FILE__, __LINE__, "options %.200s: %s (\"%s\"), expected %s", options, fs_status_name(st),
                     fs_last_error(), fs_status_name(expected));
    if (st != FS_OK && out != NULL) fs_test_fail(__FILE__, __LINE__, "options %.200s: out_hub not NULL", options);
    if (st == FS_OK && out != NULL && out != (fs_hub *)SENTINEL) fs_hub_close(out);
}

TEST(test_storage_options_extremes_are_refused_with_nothing_made) {
    const char *file = test_path("h.db");
    char *long_dsn = strf("{\"storage\":\"postgres\",\"dsn\":\"%s\"}", repeat_char('x', 5000));
    refused(file, "{\"storage\":\"mysql\"}", FS_ERR_ARG);
    refused(file, "{\"storage\":\"\"}", FS_ERR_ARG);
    refused(file, "{\"storage\":null}", FS_ERR_ARG);
    refused(file, "{\"storage\":1}", FS_ERR_ARG);
    refused(file, "{\"storage\":[\"postgres\"]}", FS_ERR_ARG);
    refused(file, "{\"dsn\":\"host=127.0.0.1\"}", FS_ERR_ARG);
    refused(file, "{\"storage\":\"postgres\",\"dsn\":\"host=127.0.0.1\"}", FS_ERR_ARG);
    refused(NULL, "{\"storage\":\"postgres\"}", FS_ERR_ARG);
    refused(NULL, "{\"storage\":\"postgres\",\"dsn\":\"\"}", FS_ERR_ARG);
    refused(NULL, "{\"storage\":\"postgres\",\"dsn\":{}}", FS_ERR_ARG);
    refused(NULL, "{\"storage\":\"postgres\",\"dsn\":\"port=1\",\"durability\":\"full\"}", FS_ERR_ARG);
    refused(NULL, "{\"storage\":\"postgres\",\"dsn\":\"port=1\",\"busy_timeout_ms\":-1}", FS_ERR_ARG);
    refused(NULL, "{\"storage\":\"postgres\",\"dsn\":\"port=1\",\"busy_timeout_ms\":2147483648}", FS_ERR_ARG);
    refused(NULL, "{\"storage\":\"postgres\",\"dsn\":\"port=1\",\"busy_timeout_ms\":1e300}", FS_ERR_ARG);
    refused(NULL, long_dsn, FS_ERR_TOO_BIG);
    refused(NULL, NULL, FS_ERR_ARG);
    refused(NULL, "{\"storage\":\"sqlite\"}", FS_ERR_ARG);
    /* Nothing listens on port 1: libpq's refusal, as FS_ERR_IO. */
    refused(NULL, "{\"storage\":\"postgres\",\"dsn\":\"host=127.0.0.1 port=1 connect_timeout=2\"}", FS_ERR_IO);
    refused("", "{\"storage\":\"postgres\",\"dsn\":\"host=127.0.0.1 port=1 connect_timeout=2\"}", FS_ERR_IO);
    refused(NULL, "{\"storage\":\"postgres\",\"dsn\":\"not a conninfo\"}", FS_ERR_IO);
    CHECK(access(file, F_OK) != 0);
}

TEST(test_a_postgres_hub_answers_and_its_backup_is_the_servers) {
    const char *dsn = getenv("FIELDSYNC_PG_DSN");
    fs_hub *h = NULL;
    fs_store *s;
    json_t *stats;
    char *options;
    if (dsn == NULL || *dsn == '\0') {
        printf("  (skipped: FIELDSYNC_PG_DSN is not set)\n");
        return;
    }
    /* The server's own database may hold a hub from an earlier run: a
     * schema of this test's own keeps it apart. */
    options = strf("{\"storage\":\"postgres\",\"auth\":\"off\",\"dsn\":\"%s options='-csearch_path=fs_c_%d'\"}", dsn, (int)getpid());
    {
        char *sql = strf("psql \"%s\" -qAtc 'CREATE SCHEMA fs_c_%d' >/dev/null", dsn, (int)getpid());
        REQUIRE(system(sql) == 0);
    }
    REQUIRE_OK(fs_hub_open(NULL, TASK_SCHEMA, options, &h));
    s = open_device("dev-1", NULL);
    REQUIRE(s != NULL);
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'open'},'inc':{'picked':2}")));
    REQUIRE(sync_until_idle(s, h).rounds >= 0);
    stats = NULL;
    {
        char *text = NULL;
        REQUIRE_OK(fs_hub_stats(h, &text));
        stats = json_loads(text, 0, NULL);
        fs_free(text);
    }
    REQUIRE(stats != NULL);
    CHECK_STR_EQ(jstr(stats, "storage"), "postgres");
    CHECK_INT_EQ(jint(stats, "entries_applied"), 1);
    json_decref(stats);
    CHECK_STATUS(fs_hub_backup(h, test_path("copy.db")), FS_ERR_ARG);
    CHECK(access(test_path("copy.db"), F_OK) != 0);
    fs_store_close(s);
    fs_hub_close(h);
    {
        char *sql = strf("psql \"%s\" -qAtc 'DROP SCHEMA fs_c_%d CASCADE' >/dev/null 2>&1", dsn, (int)getpid());
        CHECK(system(sql) == 0);
    }
}
