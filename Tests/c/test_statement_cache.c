/* test_statement_cache.c — memory stays flat however many distinct filters a
 * host sends: values (a LIMIT included) are bound, never written into SQL
 * text, and statements built for one filter are not cached (docs/ABI.md,
 * "Memory"). Each test runs in its own child process; VmRSS is its own. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

/* Resident memory of this process in KiB (/proc/self/status VmRSS). */
static long rss_kib(void) {
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0) kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

/* 20,000 distinct inputs took 196 MiB when each cached a statement; a
 * generous bound that is still far below that. */
#define GROWTH_LIMIT_KIB (32L * 1024)
#define DISTINCT_INPUTS 20000

static void check_growth(const char *file, int line, const char *what, long before) {
    long after = rss_kib();
    if (before < 0 || after < 0) {
        fs_test_fail(file, line, "cannot read VmRSS from /proc/self/status");
        return;
    }
    if (after - before > GROWTH_LIMIT_KIB)
        fs_test_fail(file, line, "%d distinct %s grew VmRSS by %ld KiB (limit %ld KiB)",
                     DISTINCT_INPUTS, what, after - before, GROWTH_LIMIT_KIB);
}

static fs_store *store_with_actions(void) {
    fs_store *s = open_task_store();
    int i;
    if (s == NULL) return NULL;
    for (i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "T-%d", i);
        create_task(s, id, "open");
    }
    return s;
}

/* Runs one listing call and frees its result; records a failure if it fails. */
typedef fs_status (*store_listing_fn)(fs_store *, const char *, char **);
static int listing(store_listing_fn fn, fs_store *s, const char *arg) {
    char *out = NULL;
    fs_status st = fn(s, arg, &out);
    if (st != FS_OK) {
        fs_test_fail(__FILE__, __LINE__, "%s: %s (%s)", arg, fs_status_name(st), fs_last_error());
        return 0;
    }
    fs_free(out);
    return 1;
}

TEST(test_audit_query_with_many_distinct_limits_keeps_memory_flat) {
    fs_store *s = store_with_actions();
    char filter[64];
    long before;
    int i;
    REQUIRE(s != NULL);
    REQUIRE(listing(fs_audit_query, s, "{\"limit\":1}")); /* warm up */
    before = rss_kib();
    for (i = 0; i < DISTINCT_INPUTS; i++) {
        snprintf(filter, sizeof filter, "{\"limit\":%d,\"desc\":%s}", 1000 + i, i % 2 ? "true" : "false");
        if (!listing(fs_audit_query, s, filter)) break;
    }
    check_growth(__FILE__, __LINE__, "audit limits", before);
    fs_store_close(s);
}

TEST(test_outbox_list_with_many_distinct_limits_keeps_memory_flat) {
    fs_store *s = store_with_actions();
    char filter[64];
    long before;
    int i;
    REQUIRE(s != NULL);
    REQUIRE(listing(fs_outbox_list, s, "{\"limit\":1}"));
    before = rss_kib();
    for (i = 0; i < DISTINCT_INPUTS; i++) {
        snprintf(filter, sizeof filter, "{\"limit\":%d}", 1000 + i);
        if (!listing(fs_outbox_list, s, filter)) break;
    }
    check_growth(__FILE__, __LINE__, "outbox limits", before);
    fs_store_close(s);
}

/* Query i's "where": each of seven fields absent or compared with one of the
 * six operators (the base-7 digits of i), so every query has its own shape. */
static char *query_shape(int i) {
    static const char *const fields[] = {"status", "site", "picked", "weight", "urgent", "on_hand", "locked"};
    static const char *const values[] = {"\"open\"", "\"WH-1\"", "1", "2.5", "true", "3", "4"};
    static const char *const ops[] = {"=", "!=", "<", "<=", ">", ">="};
    char *where = strf("%s", "");
    char *q;
    int f, n = i;
    for (f = 0; f < 7; f++, n /= 7) {
        char *next;
        if (n % 7 == 0) continue;
        next = strf("%s%s\"%s\":{\"%s\":%s}", where, where[0] ? "," : "", fields[f], ops[n % 7 - 1], values[f]);
        free(where);
        where = next;
    }
    q = strf("{\"type\":\"task\",\"where\":{%s},\"limit\":%d}", where, i);
    free(where);
    return q;
}

TEST(test_store_query_with_many_distinct_shapes_keeps_memory_flat) {
    fs_store *s = store_with_actions();
    long before;
    int i;
    REQUIRE(s != NULL);
    REQUIRE(listing(fs_store_query, s, "{\"type\":\"task\"}"));
    before = rss_kib();
    for (i = 1; i <= DISTINCT_INPUTS; i++) {
        char *q = query_shape(i);
        int ok = listing(fs_store_query, s, q);
        free(q);
        if (!ok) break;
    }
    check_growth(__FILE__, __LINE__, "query shapes", before);
    fs_store_close(s);
}

TEST(test_hub_queries_with_many_distinct_filters_keep_memory_flat) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    long before;
    int i;
    REQUIRE(h != NULL && s != NULL);
    create_task(s, "T-1", "open");
    sync_until_idle(s, h);
    before = rss_kib();
    for (i = 1; i <= DISTINCT_INPUTS; i++) {
        char *q = i % 2 ? query_shape(i) : strf("{\"device_id\":\"dev-1\",\"limit\":%d}", i);
        char *out = NULL;
        fs_status st = i % 2 ? fs_hub_query(h, q, &out) : fs_hub_audit_query(h, q, &out);
        if (st != FS_OK) fs_test_fail(__FILE__, __LINE__, "%s: %s (%s)", q, fs_status_name(st), fs_last_error());
        fs_free(out);
        free(q);
        if (st != FS_OK) break;
    }
    check_growth(__FILE__, __LINE__, "hub query shapes and audit limits", before);
    fs_store_close(s);
    fs_hub_close(h);
}
