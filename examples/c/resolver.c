/*
 * resolver.c — a custom merge written in C. The `lines` field of an order is
 * "merge": "custom": when two tablets edit the same order's lines offline,
 * the hub cannot pick a winner by itself, so it calls the host's resolver
 * (registered with fs_hub_set_resolver under the schema's resolver name)
 * with the base, the hub's value and the incoming value. This one keeps
 * every line either side has: the union of the two JSON arrays.
 *
 *   make -C examples/c run        (or: ./resolver [directory])
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fieldsync.h"

static const char *SCHEMA =
    "{\"version\": 1, \"types\": {\"order\": {"
    "  \"fields\": {"
    "    \"status\": {\"type\": \"string\"},"
    "    \"lines\":  {\"type\": \"json\", \"merge\": \"custom\", \"resolver\": \"order_lines\"}"
    "  },"
    "  \"required\": [\"status\"]}}}";

/* What the host keeps for its resolver: passed back as `ctx` on each call. */
typedef struct {
    int calls;
} merge_stats;

/* Finds the array value of "key" in the conflict JSON. To stay free of a JSON
 * library this example assumes what it writes itself: order lines are arrays
 * of plain strings (no escapes). A real host would use its JSON parser. */
static const char *array_of(const char *json, const char *key) {
    char pattern[64];
    const char *p;
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    p = strstr(json, pattern);
    if (p == NULL) return NULL;
    p += strlen(pattern);
    while (*p == ' ') p++;
    return *p == '[' ? p : NULL;
}

/* Appends each string of `array` to `out` unless `out` already holds it. */
static void add_lines(char *out, size_t cap, const char *array) {
    const char *p = array + 1;
    while (*p && *p != ']') {
        const char *start = strchr(p, '"'), *end;
        char item[256];
        size_t n;
        if (start == NULL) break;
        end = strchr(start + 1, '"');
        if (end == NULL || (n = (size_t)(end - start + 1)) >= sizeof item) break;
        memcpy(item, start, n); /* the string with its quotes */
        item[n] = '\0';
        if (strstr(out, item) == NULL && strlen(out) + n + 2 < cap) {
            if (strlen(out) > 1) strcat(out, ",");
            strcat(out, item);
        }
        p = end + 1;
    }
}

/* The resolver. It runs inside fs_hub_handle(), on that thread, with the
 * hub locked: it must not call into the hub. It answers FS_OK and a malloc()ed
 * JSON text; the library checks it against the field's type and frees it.
 * Any other status (or no answer, or bad JSON) rejects the tablet's whole
 * action, which then shows up in its outbox as "resolver_failed". */
static fs_status merge_order_lines(void *ctx, const char *conflict_json, char **out_value_json) {
    merge_stats *stats = (merge_stats *)ctx;
    const char *server = array_of(conflict_json, "server");
    const char *incoming = array_of(conflict_json, "incoming");
    char merged[4096] = "[";
    stats->calls++;
    printf("resolver called with %s\n", conflict_json);
    if (server == NULL || incoming == NULL) return FS_ERR_ARG; /* not lines we know */
    add_lines(merged, sizeof merged, server);   /* the hub's lines first, */
    add_lines(merged, sizeof merged, incoming); /* then the tablet's new ones */
    strcat(merged, "]");
    *out_value_json = (char *)malloc(strlen(merged) + 1);
    if (*out_value_json == NULL) return FS_ERR_INTERNAL;
    strcpy(*out_value_json, merged);
    return FS_OK;
}

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

/* The sync loop of sync.c, without the printing: prepare -> hub -> receive. */
static int sync_device(fs_store *store, fs_hub *hub) {
    if (!check(fs_sync_connectivity(store, 1), "fs_sync_connectivity")) return 0; /* pull now */
    for (;;) {
        char *request = NULL, *response = NULL, *summary = NULL;
        int64_t wait = 0;
        fs_status st;
        if (!check(fs_sync_prepare(store, &request, &wait), "fs_sync_prepare")) return 0;
        if (request == NULL) return 1;
        st = fs_hub_handle(hub, request, &response);
        fs_free(request);
        if (!check(st, "fs_hub_handle")) return 0;
        st = fs_sync_receive(store, response, &summary);
        fs_free(response);
        fs_free(summary);
        if (!check(st, "fs_sync_receive")) return 0;
    }
}

/* Prints a tablet's view of the order's lines and returns a copy of them. */
static char *lines_of(fs_store *store, const char *name) {
    char *record = NULL, *copy = NULL;
    const char *lines;
    if (!check(fs_store_get(store, "order", "O-1", &record), "fs_store_get")) return NULL;
    printf("%s sees %s\n", name, record);
    lines = array_of(record, "lines");
    if (lines != NULL) {
        size_t n = (size_t)(strchr(lines, ']') - lines + 1);
        copy = (char *)malloc(n + 1);
        if (copy != NULL) {
            memcpy(copy, lines, n);
            copy[n] = '\0';
        }
    }
    fs_free(record);
    return copy;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    char hub_path[1024], a_path[1024], b_path[1024];
    fs_hub *hub = NULL;
    fs_store *a = NULL, *b = NULL;
    merge_stats stats = {0};
    char *seen_a = NULL, *seen_b = NULL;
    int ok = 1;

    snprintf(hub_path, sizeof hub_path, "%s/hub.db", dir);
    snprintf(a_path, sizeof a_path, "%s/tablet-1.db", dir);
    snprintf(b_path, sizeof b_path, "%s/tablet-2.db", dir);
    if (!check(fs_hub_open(hub_path, SCHEMA, NULL, &hub), "fs_hub_open") ||
        !check(fs_store_open(a_path, SCHEMA, "{\"device_id\": \"tablet-1\"}", &a), "fs_store_open") ||
        !check(fs_store_open(b_path, SCHEMA, "{\"device_id\": \"tablet-2\"}", &b), "fs_store_open") ||
        !enroll(hub, a, "tablet-1") || !enroll(hub, b, "tablet-2")) {
        ok = 0;
        goto done;
    }

    /* The host registers its resolver under the name the schema uses. */
    ok = check(fs_hub_set_resolver(hub, "order_lines", merge_order_lines, &stats), "fs_hub_set_resolver");

    /* tablet-1 opens the order with one line; both tablets sync. */
    ok = ok && apply(a, "{\"action\": \"open_order\", \"actor\": \"op-1\", \"type\": \"order\", \"id\": \"O-1\","
                        " \"set\": {\"status\": \"open\", \"lines\": [\"sku-100 x1\"]}}");
    ok = ok && sync_device(a, hub) && sync_device(b, hub);

    /* Offline, each tablet adds a different line to the same order. */
    ok = ok && apply(a, "{\"action\": \"add_line\", \"actor\": \"op-1\", \"type\": \"order\", \"id\": \"O-1\","
                        " \"set\": {\"lines\": [\"sku-100 x1\", \"sku-200 x2\"]}}");
    ok = ok && apply(b, "{\"action\": \"add_line\", \"actor\": \"op-2\", \"type\": \"order\", \"id\": \"O-1\","
                        " \"set\": {\"lines\": [\"sku-100 x1\", \"sku-300 x5\"]}}");

    /* tablet-1's write reaches the hub first and applies as is; tablet-2's
     * meets it, and the hub asks the resolver. Then tablet-1 pulls the result. */
    ok = ok && sync_device(a, hub) && sync_device(b, hub) && sync_device(a, hub);

    if (ok) {
        seen_a = lines_of(a, "tablet-1");
        seen_b = lines_of(b, "tablet-2");
        printf("the resolver was called %d time(s)\n", stats.calls);
        /* Both tablets hold all three lines. */
        ok = seen_a != NULL && seen_b != NULL && strcmp(seen_a, seen_b) == 0 && stats.calls == 1 &&
             strstr(seen_a, "sku-200") != NULL && strstr(seen_a, "sku-300") != NULL;
        if (!ok) fprintf(stderr, "the tablets did not converge on the merged lines\n");
    }
    free(seen_a);
    free(seen_b);

done:
    if (!check(fs_store_close(a), "fs_store_close")) ok = 0;
    if (!check(fs_store_close(b), "fs_store_close")) ok = 0;
    if (!check(fs_hub_close(hub), "fs_hub_close")) ok = 0;
    return ok ? 0 : 1;
}
