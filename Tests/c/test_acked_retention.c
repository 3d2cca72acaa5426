/* test_acked_retention.c — the store option acked_retention_s (docs/ABI.md
 * "Store options"; docs/OPERATIONS.md "Restoring a hub"): out-of-range and
 * wrong-kind values are FS_ERR_ARG at open, never a crash; acknowledged
 * entries are kept and counted in fs_store_stats; a hub's backup is its next
 * generation, the running hub keeps its own. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

TEST(test_acked_retention_extremes_are_refused_at_open) {
    static const char *const bad[] = {
        "{\"acked_retention_s\":-1}",
        "{\"acked_retention_s\":316224001}",
        "{\"acked_retention_s\":9223372036854775807}",
        "{\"acked_retention_s\":-9223372036854775808}",
        "{\"acked_retention_s\":1e300}",
        "{\"acked_retention_s\":1.5}",
        "{\"acked_retention_s\":\"604800\"}",
        "{\"acked_retention_s\":true}",
        "{\"acked_retention_s\":null}",
        "{\"acked_retention_s\":[604800]}",
    };
    static const char *const good[] = {"{\"acked_retention_s\":0}", "{\"acked_retention_s\":316224000}"};
    size_t i;
    open_refused(bad);
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        fs_store *out = NULL;
        CHECK_OK(fs_store_open(test_path("b.db"), TASK_SCHEMA, good[i], &out));
        if (out != NULL) fs_store_close(out);
    }
}

TEST(test_stats_show_the_acknowledged_entries_kept) {
    fs_hub *h = open_task_hub(), *copy = NULL;
    fs_store *kept = open_device("dev-1", NULL);
    fs_store *none = open_device("dev-2", "\"acked_retention_s\":0");
    json_t *stats;
    int i;
    REQUIRE(h != NULL && kept != NULL && none != NULL);
    for (i = 0; i < 3; i++) {
        json_decref(apply_ok(kept, act("T-1", "'set':{'status':'open'},'inc':{'picked':1}")));
        json_decref(apply_ok(none, act("T-2", "'set':{'status':'open'},'inc':{'picked':1}")));
    }
    REQUIRE(sync_until_idle(kept, h).rounds >= 0);
    REQUIRE(sync_until_idle(none, h).rounds >= 0);
    stats = stats_ok(kept);
    CHECK_INT_EQ(jint(stats, "outbox_total"), 0);
    CHECK_INT_EQ(jint(stats, "acked_retained"), 3);
    CHECK_INT_EQ(jint(stats, "acked_retention_s"), 604800);
    CHECK_INT_EQ(jint(stats, "hub_generation"), 1);
    CHECK_INT_EQ(jint(stats, "hub_recoveries"), 0);
    CHECK_INT_EQ(jint(stats, "entries_lost_in_hub_restore"), 0);
    CHECK_STR_EQ(jstr(stats, "hub_restore_incomplete"), "");
    json_decref(stats);
    stats = stats_ok(none);
    CHECK_INT_EQ(jint(stats, "acked_retained"), 0);
    CHECK_INT_EQ(jint(stats, "acked_retention_s"), 0);
    json_decref(stats);
    CHECK_OK(fs_hub_backup(h, test_path("hub-copy.db")));
    stats = hub_stats_ok(h);
    CHECK_INT_EQ(jint(stats, "generation"), 1);
    CHECK_INT_EQ(jint(stats, "devices_recovered"), 0);
    json_decref(stats);
    REQUIRE_OK(fs_hub_open(test_path("hub-copy.db"), TASK_SCHEMA, NULL, &copy));
    stats = hub_stats_ok(copy);
    CHECK_INT_EQ(jint(stats, "generation"), 2);
    json_decref(stats);
    fs_hub_close(copy);
    fs_store_close(none);
    fs_store_close(kept);
    fs_hub_close(h);
}
