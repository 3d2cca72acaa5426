/* test_backup.c — fs_hub_backup and fs_store_backup (issue 15): a copy taken
 * while another handle writes is one consistent state; a backup never
 * overwrites and never leaves a half file under the name asked for; a store
 * restored from its own backup is the same device and, its hub having moved
 * on, recovers by itself with nothing lost or applied twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

static void pick(fs_store *s, int n) {
    int i;
    for (i = 0; i < n; i++) json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
}

static long long hub_picked(fs_hub *h) {
    json_t *rows = hub_query_ok(h, "{\"type\":\"task\",\"where\":{\"id\":\"T-1\"}}");
    long long n = rows && json_array_size(rows) == 1 ? jint(json_array_get(rows, 0), "picked") : -1;
    json_decref(rows);
    return n;
}

TEST(test_hub_backup_while_another_handle_writes_is_one_consistent_state) {
    fs_hub *h = open_task_hub(), *other = NULL, *copy = NULL;
    fs_store *s = open_device("dev-1", NULL);
    json_t *stats;
    const char *path = test_path("hub-backup.db");
    REQUIRE(h != NULL && s != NULL);
    create_task(s, "T-1", "open");
    pick(s, 3);
    REQUIRE(sync_until_idle(s, h).rounds >= 0);
    REQUIRE_OK(fs_hub_open(test_path("hub.db"), TASK_SCHEMA, NULL, &other));
    CHECK_OK(fs_hub_backup(h, path));
    /* the other handle goes on after the copy */
    pick(s, 2);
    REQUIRE(sync_until_idle(s, other).rounds >= 0);
    CHECK_INT_EQ(hub_picked(other), 5);
    CHECK(access(test_path("hub-backup.db.partial"), F_OK) != 0);
    CHECK(access(test_path("hub-backup.db-wal"), F_OK) != 0);
    REQUIRE_OK(fs_hub_open(path, TASK_SCHEMA, NULL, &copy));
    CHECK_INT_EQ(hub_picked(copy), 3);
    stats = hub_stats_ok(copy);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 4);
    CHECK_INT_EQ(jint(stats, "audit_rows"), 4);
    CHECK_INT_EQ(jint(stats, "audit_chain_breaks"), 0);
    CHECK_INT_EQ(jint(stats, "devices_enrolled"), 1);
    json_decref(stats);
    fs_hub_close(copy);
    fs_hub_close(other);
    fs_hub_close(h);
    fs_store_close(s);
}

TEST(test_a_backup_never_overwrites_and_leaves_nothing_when_it_fails) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_task_store();
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(write_file(test_path("taken.db"), "keep", 4) == 0);
    CHECK_STATUS(fs_hub_backup(h, test_path("taken.db")), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_store_backup(s, test_path("taken.db")), FS_ERR_ARG);
    CHECK_STATUS(fs_hub_backup(h, NULL), FS_ERR_ARG);
    CHECK_STATUS(fs_store_backup(s, ""), FS_ERR_ARG);
    CHECK_STATUS(fs_store_backup(NULL, test_path("x.db")), FS_ERR_ARG);
    CHECK_STATUS(fs_hub_backup(h, test_path("no-such-dir/hub.db")), FS_ERR_IO);
    CHECK(access(test_path("no-such-dir/hub.db.partial"), F_OK) != 0);
    {
        FILE *f = fopen(test_path("taken.db"), "rb");
        char buf[8] = {0};
        REQUIRE(f != NULL);
        CHECK(fread(buf, 1, sizeof buf, f) == 4 && memcmp(buf, "keep", 4) == 0);
        fclose(f);
    }
    fs_hub_close(h);
    CHECK_STATUS(fs_hub_backup(h, test_path("closed.db")), FS_ERR_CLOSED);
    fs_store_close(s);
}

TEST(test_a_store_restored_from_its_backup_recovers_and_loses_nothing) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL), *restored = NULL;
    json_t *before, *after, *stats;
    const char *image = test_path("dev-1-image.db");
    REQUIRE(h != NULL && s != NULL);
    create_task(s, "T-1", "open");
    pick(s, 1);
    REQUIRE(sync_until_idle(s, h).rounds >= 0);
    CHECK_OK(fs_store_backup(s, image));
    pick(s, 3); /* synced after the image was taken, then the device is lost */
    REQUIRE(sync_until_idle(s, h).rounds >= 0);
    before = stats_ok(s);
    fs_store_close(s);
    REQUIRE_OK(fs_store_open(image, TASK_SCHEMA, NULL, &restored));
    after = stats_ok(restored);
    CHECK_STR_EQ(jstr(after, "device_id"), "dev-1");
    CHECK_STR_EQ(jstr(after, "public_key"), jstr(before, "public_key"));
    CHECK_STR_EQ(jstr(after, "instance_id"), jstr(before, "instance_id"));
    CHECK_INT_EQ(jint(after, "last_seq"), 2);
    json_decref(before);
    json_decref(after);
    pick(restored, 2); /* seqs 3 and 4 again, other actions */
    REQUIRE(sync_until_idle(restored, h).rounds >= 0);
    REQUIRE(sync_now(restored, h).rounds >= 0);
    CHECK_INT_EQ(hub_picked(h), 6);
    CHECK_INT_EQ(outbox_count(restored), 0);
    stats = hub_stats_ok(h);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 7);
    CHECK_INT_EQ(jint(stats, "audit_chain_breaks"), 0);
    CHECK_INT_EQ(jint(stats, "audit_gaps"), 0);
    CHECK(jint(stats, "devices_restored") >= 1);
    json_decref(stats);
    stats = stats_ok(restored);
    CHECK_INT_EQ(jint(stats, "restored_recoveries"), 1);
    json_decref(stats);
    fs_store_close(restored);
    fs_hub_close(h);
}
