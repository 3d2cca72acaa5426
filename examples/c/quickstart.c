/*
 * quickstart.c — the smallest complete fieldsync program: open a device
 * store, apply operator actions, read them back, and look at the outbox and
 * the audit trail. Copy it and change the schema to yours.
 *
 *   make -C examples/c run        (or: ./quickstart [path/to/store.db])
 */
#include <stdio.h>
#include <stdlib.h>

#include "fieldsync.h"

/* The application's schema: one record type, one merge policy per field. */
static const char *SCHEMA =
    "{\"version\": 1, \"types\": {\"task\": {"
    "  \"fields\": {"
    "    \"status\": {\"type\": \"string\"},"
    "    \"site\":   {\"type\": \"string\", \"merge\": \"lww\"},"
    "    \"picked\": {\"type\": \"int\",    \"merge\": \"counter\"},"
    "    \"tags\":   {\"type\": \"set\"}"
    "  },"
    "  \"required\": [\"status\"]}}}";

/* Every fs_* call returns a status; on failure fs_last_error() says why (it
 * is per thread and valid until the next fs_* call on this thread). */
static int check(fs_status st, const char *what) {
    if (st != FS_OK) {
        fprintf(stderr, "%s failed: %s: %s\n", what, fs_status_name(st), fs_last_error());
        return 0;
    }
    return 1;
}

/* Applies one action and prints the result (the new record, the outbox key,
 * the audit id and the clock stamp). Strings the library returns are ours to
 * release with fs_free(). */
static int apply(fs_store *store, const char *action_json) {
    char *result = NULL;
    if (!check(fs_store_apply(store, action_json, &result), "fs_store_apply")) return 0;
    printf("applied: %s\n", result);
    fs_free(result);
    return 1;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "quickstart.db";
    fs_store *store = NULL;
    char *json = NULL;
    int64_t pending = 0;
    int ok = 1;

    printf("fieldsync %s (header %s)\n", fs_version(), FS_VERSION);

    /* Open (or create) the store. Options may be NULL; here we name the
     * device so outbox keys read "tablet-7-1", "tablet-7-2", ... */
    if (!check(fs_store_open(path, SCHEMA, "{\"device_id\": \"tablet-7\", \"durability\": \"full\"}",
                             &store),
               "fs_store_open"))
        return 1;

    /* Each action is one transaction: record + outbox entry + audit row. */
    ok = ok && apply(store, "{\"action\": \"create_task\", \"actor\": \"op-17\","
                            " \"type\": \"task\", \"id\": \"T-1\","
                            " \"set\": {\"status\": \"open\", \"site\": \"dock-3\"}}");
    ok = ok && apply(store, "{\"action\": \"pick_item\", \"actor\": \"op-17\","
                            " \"type\": \"task\", \"id\": \"T-1\","
                            " \"inc\": {\"picked\": 2}, \"input\": {\"scanned\": \"SKU-991\"}}");
    ok = ok && apply(store, "{\"action\": \"flag\", \"actor\": \"op-17\","
                            " \"type\": \"task\", \"id\": \"T-1\","
                            " \"add\": {\"tags\": [\"urgent\"]}}");

    /* A refused action changes nothing and tells why. */
    if (ok) {
        char *result = NULL;
        fs_status st = fs_store_apply(store,
                                      "{\"action\": \"oops\", \"actor\": \"op-17\", \"type\": \"task\","
                                      " \"id\": \"T-1\", \"set\": {\"picked\": 5}}",
                                      &result);
        printf("refused as expected: %s: %s\n", fs_status_name(st), fs_last_error());
        fs_free(result); /* NULL after a failure; fs_free(NULL) is fine */
    }

    /* Read the record back: the local view, with pending sync state in "_fs". */
    if (ok && (ok = check(fs_store_get(store, "task", "T-1", &json), "fs_store_get"))) {
        printf("record: %s\n", json);
        fs_free(json);
    }

    /* Query: open tasks, most picked first. */
    if (ok && (ok = check(fs_store_query(store,
                                         "{\"type\": \"task\", \"where\": {\"status\": \"open\"},"
                                         " \"order_by\": \"picked\", \"desc\": true, \"limit\": 10}",
                                         &json),
                          "fs_store_query"))) {
        printf("query: %s\n", json);
        fs_free(json);
    }

    /* The outbox: what will be sent to the hub when the network allows. */
    if (ok && (ok = check(fs_outbox_count(store, &pending), "fs_outbox_count")))
        printf("outbox: %lld entries pending\n", (long long)pending);
    if (ok && (ok = check(fs_outbox_list(store, "{\"state\": \"pending\"}", &json), "fs_outbox_list"))) {
        printf("outbox entries: %s\n", json);
        fs_free(json);
    }

    /* The audit trail: one hash-chained row per action. */
    if (ok && (ok = check(fs_audit_query(store, "{\"id\": \"T-1\"}", &json), "fs_audit_query"))) {
        printf("audit rows: %s\n", json);
        fs_free(json);
    }

    if (ok && (ok = check(fs_store_stats(store, &json), "fs_store_stats"))) {
        printf("stats: %s\n", json);
        fs_free(json);
    }

    /* Close releases the handle; later calls with it return FS_ERR_CLOSED. */
    if (!check(fs_store_close(store), "fs_store_close")) ok = 0;
    return ok ? 0 : 1;
}
