/*
 * sync.c — two devices and a hub in one process: the sans-I/O sync loop.
 * The library never opens a socket; the host asks fs_sync_prepare() what to
 * send, carries it to the hub (here a direct fs_hub_handle() call; in the
 * field HTTP, MQTT, BLE...), and hands the answer to fs_sync_receive().
 * Both devices count the same stock from the same base, so the second count
 * is refused as a conflict; the host sees it and discards it.
 *
 *   make -C examples/c run        (or: ./sync [directory])
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fieldsync.h"

/* on_hand is a `server` field: the hub's value is authoritative, and a write
 * based on a value the hub has since changed is refused (compare-and-set). */
static const char *SCHEMA =
    "{\"version\": 1, \"types\": {\"task\": {"
    "  \"fields\": {"
    "    \"status\":  {\"type\": \"string\"},"
    "    \"picked\":  {\"type\": \"int\", \"merge\": \"counter\"},"
    "    \"on_hand\": {\"type\": \"int\", \"merge\": \"server\"}"
    "  },"
    "  \"required\": [\"status\"]}}}";

static int check(fs_status st, const char *what) {
    if (st != FS_OK) {
        fprintf(stderr, "%s failed: %s: %s\n", what, fs_status_name(st), fs_last_error());
        return 0;
    }
    return 1;
}

/* Copies the `digits` hex digits of member `name` out of the JSON text
 * `json` (the library's output: compact, no spaces) into `out`. */
static int hex_member(const char *json, const char *name, size_t digits, char *out) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\":\"", name);
    const char *at = strstr(json, key);
    if (!at || strlen(at + strlen(key)) < digits) return 0;
    memcpy(out, at + strlen(key), digits);
    out[digits] = '\0';
    return 1;
}

/* Provisioning: the hub enrolls the device's public key and store instance
 * (fs_store_stats), the device pins the hub's key. With authentication on
 * (the default) a hub serves only enrolled devices. */
static int enroll(fs_hub *hub, fs_store *store, const char *device_id) {
    char *stats = NULL, *result = NULL, key[65], instance[33], hub_key[65], enrollment[256];
    int ok = check(fs_store_stats(store, &stats), "fs_store_stats") &&
             hex_member(stats, "public_key", 64, key) && hex_member(stats, "instance_id", 32, instance);
    fs_free(stats);
    if (!ok) return 0;
    snprintf(enrollment, sizeof enrollment,
             "{\"device_id\": \"%s\", \"public_key\": \"%s\", \"instance\": \"%s\"}", device_id, key, instance);
    ok = check(fs_hub_enroll(hub, enrollment, &result), "fs_hub_enroll") && hex_member(result, "hub_key", 64, hub_key);
    fs_free(result);
    return ok && check(fs_store_pin_hub(store, hub_key), "fs_store_pin_hub");
}

static int apply(fs_store *store, const char *action_json) {
    char *result = NULL;
    if (!check(fs_store_apply(store, action_json, &result), "fs_store_apply")) return 0;
    fs_free(result);
    return 1;
}

/* The host's sync loop: send what prepare asks for until nothing is due.
 * A real host would sleep `wait` ms (or until fs_sync_connectivity(store, 1))
 * and call prepare again; on a transport error it calls fs_sync_fail(). */
static int sync_device(fs_store *store, fs_hub *hub, const char *name) {
    for (;;) {
        char *request = NULL, *response = NULL, *summary = NULL;
        int64_t wait = 0;
        fs_status st;
        if (!check(fs_sync_prepare(store, &request, &wait), "fs_sync_prepare")) return 0;
        if (request == NULL) {
            printf("%s: idle, next sync due in %lld ms\n", name, (long long)wait);
            return 1;
        }
        /* the "transport" */
        st = fs_hub_handle(hub, request, &response);
        fs_free(request);
        if (st != FS_OK) {
            /* a transport would report this as a failure and back off */
            fs_sync_fail(store, fs_last_error());
            return check(st, "fs_hub_handle");
        }
        st = fs_sync_receive(store, response, &summary);
        fs_free(response);
        if (!check(st, "fs_sync_receive")) return 0;
        printf("%s: %s\n", name, summary);
        fs_free(summary);
    }
}

static void show(fs_store *store, const char *name) {
    char *record = NULL;
    if (fs_store_get(store, "task", "T-1", &record) == FS_OK) printf("%s sees %s\n", name, record);
    fs_free(record);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    char hub_path[1024], a_path[1024], b_path[1024];
    fs_hub *hub = NULL;
    fs_store *a = NULL, *b = NULL;
    char *json = NULL;
    int ok = 1;

    snprintf(hub_path, sizeof hub_path, "%s/hub.db", dir);
    snprintf(a_path, sizeof a_path, "%s/tablet-1.db", dir);
    snprintf(b_path, sizeof b_path, "%s/tablet-2.db", dir);

    /* The hub and both devices use the same schema. */
    if (!check(fs_hub_open(hub_path, SCHEMA, NULL, &hub), "fs_hub_open") ||
        !check(fs_store_open(a_path, SCHEMA, "{\"device_id\": \"tablet-1\"}", &a), "fs_store_open") ||
        !check(fs_store_open(b_path, SCHEMA, "{\"device_id\": \"tablet-2\"}", &b), "fs_store_open") ||
        !enroll(hub, a, "tablet-1") || !enroll(hub, b, "tablet-2")) {
        ok = 0;
        goto done;
    }

    /* tablet-1 creates the task with 10 in stock; both tablets sync. */
    ok = ok && apply(a, "{\"action\": \"create\", \"actor\": \"op-1\", \"type\": \"task\","
                        " \"id\": \"T-1\", \"set\": {\"status\": \"open\", \"on_hand\": 10}}");
    ok = ok && sync_device(a, hub, "tablet-1") && sync_device(b, hub, "tablet-2");

    /* Offline, both pick items (counters: both count) and both recount the
     * stock from the same base of 10 (server field: only one can win). */
    ok = ok && apply(a, "{\"action\": \"pick\", \"actor\": \"op-1\", \"type\": \"task\","
                        " \"id\": \"T-1\", \"inc\": {\"picked\": 2}}");
    ok = ok && apply(a, "{\"action\": \"recount\", \"actor\": \"op-1\", \"type\": \"task\","
                        " \"id\": \"T-1\", \"set\": {\"on_hand\": 8}}");
    ok = ok && apply(b, "{\"action\": \"pick\", \"actor\": \"op-2\", \"type\": \"task\","
                        " \"id\": \"T-1\", \"inc\": {\"picked\": 3}}");
    ok = ok && apply(b, "{\"action\": \"recount\", \"actor\": \"op-2\", \"type\": \"task\","
                        " \"id\": \"T-1\", \"set\": {\"on_hand\": 7}}");

    /* tablet-1 syncs first and wins; tablet-2's recount comes back "rejected". */
    ok = ok && sync_device(a, hub, "tablet-1") && sync_device(b, hub, "tablet-2");

    /* The refused recount stays in the outbox, with its reason, until the host
     * decides; the view already shows the hub's value again. */
    if (ok && (ok = check(fs_outbox_list(b, "{\"state\": \"rejected\"}", &json), "fs_outbox_list"))) {
        printf("tablet-2 rejected entries: %s\n", json);
        fs_free(json);
        json = NULL;
    }
    if (ok) show(b, "tablet-2");
    /* Here an app would ask the operator to recount; this one discards. */
    ok = ok && check(fs_outbox_discard(b, "tablet-2-2"), "fs_outbox_discard");

    /* Connectivity up makes a pull due: tablet-1 learns tablet-2's picks. */
    ok = ok && check(fs_sync_connectivity(a, 1), "fs_sync_connectivity") &&
         sync_device(a, hub, "tablet-1");
    if (ok) {
        show(a, "tablet-1");
        show(b, "tablet-2");
    }

    /* The hub's view: records, and the audit trail of both devices. */
    if (ok && (ok = check(fs_hub_query(hub, "{\"type\": \"task\"}", &json), "fs_hub_query"))) {
        printf("hub records: %s\n", json);
        fs_free(json);
        json = NULL;
    }
    if (ok && (ok = check(fs_hub_stats(hub, &json), "fs_hub_stats"))) {
        printf("hub stats: %s\n", json);
        fs_free(json);
        json = NULL;
    }

done:
    if (!check(fs_store_close(a), "fs_store_close")) ok = 0;
    if (!check(fs_store_close(b), "fs_store_close")) ok = 0;
    if (!check(fs_hub_close(hub), "fs_hub_close")) ok = 0;
    return ok ? 0 : 1;
}
