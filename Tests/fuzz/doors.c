/* doors.c — libFuzzer over the C text doors: the exported fs_* functions of
 * include/fieldsync.h, called as a host program calls them, with the fuzz
 * input as a C string (see `make fuzz`). The first byte picks the door, the
 * rest is the text. A store and a hub are set up once; after each input the
 * store syncs with the hub so that responses can refer to real batches.
 *
 * Findings: any crash or Swift trap (the process dies), an AddressSanitizer
 * report, a status outside the header's list, an output that is set on
 * failure, missing on success or not valid JSON, and fs_last_error() NULL. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fieldsync.h"

#define SCHEMA                                                                    \
    "{\"version\":1,\"types\":{\"task\":{\"fields\":{"                            \
    "\"status\":{\"type\":\"string\"},\"site\":{\"type\":\"string\"},"            \
    "\"picked\":{\"type\":\"int\",\"merge\":\"counter\"},"                        \
    "\"tags\":{\"type\":\"set\"},\"on_hand\":{\"type\":\"int\",\"merge\":\"server\"}," \
    "\"w\":{\"type\":\"float\"},\"ok\":{\"type\":\"bool\"},"                      \
    "\"lines\":{\"type\":\"json\",\"merge\":\"custom\",\"resolver\":\"r\"}"       \
    "},\"required\":[\"status\"]}}}"

static fs_store *store;
static fs_hub *hub;
static char dir[64];
static unsigned long opened;

static void die(const char *what, const char *detail) {
    fprintf(stderr, "doors: %s: %s\n", what, detail ? detail : "(null)");
    abort();
}

/* The resolver takes the incoming value: conflicts resolve, nothing more. */
static fs_status take_incoming(void *ctx, const char *conflict, char **out) {
    json_t *c = json_loads(conflict, 0, NULL), *incoming;
    (void)ctx;
    if (c == NULL) die("resolver got invalid JSON", conflict);
    incoming = json_object_get(c, "incoming");
    *out = incoming ? json_dumps(incoming, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(c);
    return FS_OK;
}

/* Every call's contract, whatever the input: a listed status, a message, and
 * an output that is valid JSON exactly when the call succeeded. */
static void check(const char *door, fs_status st, char *out) {
    if (st < FS_OK || st > FS_ERR_MISUSE) die(door, "status outside the header's list");
    if (fs_last_error() == NULL) die(door, "fs_last_error() is NULL");
    if (st != FS_OK && out != NULL) die(door, "an output on failure");
    if (st == FS_OK && out != NULL) {
        json_error_t e;
        json_t *v = json_loads(out, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        if (v == NULL) die(door, out);
        json_decref(v);
    }
    fs_free(out);
}

/* The store and hub files go when the run ends (libFuzzer exits with exit()). */
static void remove_files(void) {
    static const char *const names[] = {"device.db", "device.db-wal", "device.db-shm",
                                        "hub.db", "hub.db-wal", "hub.db-shm"};
    char path[128];
    size_t i;
    fs_store_close(store);
    fs_hub_close(hub);
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void setup(void) {
    char path[128];
    snprintf(dir, sizeof dir, "/tmp/fieldsync-doors-%d", (int)getpid());
    mkdir(dir, 0700);
    /* Authentication off on both sides: a signature check in front would stop
     * nearly every input before the decoders, which are what hostile bytes
     * reach once a device is enrolled (or compromised). The signed path is
     * fuzzed in FuzzTargets.swift (Wire.Signature.split, the credentials). */
    snprintf(path, sizeof path, "%s/device.db", dir);
    if (fs_store_open(path, SCHEMA, "{\"durability\":\"normal\",\"device_id\":\"fz\",\"auth\":\"off\"}", &store) != FS_OK)
        die("fs_store_open", fs_last_error());
    snprintf(path, sizeof path, "%s/hub.db", dir);
    if (fs_hub_open(path, SCHEMA, "{\"durability\":\"normal\",\"auth\":\"off\"}", &hub) != FS_OK)
        die("fs_hub_open", fs_last_error());
    fs_hub_set_resolver(hub, "r", take_incoming, NULL);
    atexit(remove_files);
}

/* A store opened (then closed and removed) with the input as its options
 * (schema == NULL) or as its schema. */
static void open_with(const char *schema, const char *options) {
    char path[128];
    fs_store *s = NULL;
    fs_status st;
    snprintf(path, sizeof path, "%s/open-%lu.db", dir, opened++);
    st = fs_store_open(path, schema ? schema : SCHEMA, options, &s);
    if ((st == FS_OK) != (s != NULL)) die("fs_store_open", "handle and status disagree");
    if (s != NULL) {
        char *out = NULL;
        check("fs_store_stats", fs_store_stats(s, &out), out);
        fs_store_close(s);
    }
    unlink(path);
    snprintf(path + strlen(path), sizeof path - strlen(path), "-wal");
    unlink(path);
    path[strlen(path) - 4] = '\0';
    snprintf(path + strlen(path), sizeof path - strlen(path), "-shm");
    unlink(path);
}

/* One sync round between the store and the hub. */
static void sync_round(void) {
    char *request = NULL, *response = NULL, *summary = NULL;
    int64_t wait = 0;
    fs_status st = fs_sync_prepare(store, &request, &wait);
    check("fs_sync_prepare", st, NULL);
    if (st != FS_OK || request == NULL) return;
    st = fs_hub_handle(hub, request, &response);
    if (st == FS_OK) {
        check("fs_sync_receive", fs_sync_receive(store, response, &summary), summary);
    } else {
        fs_sync_fail(store, "the hub refused the request");
    }
    fs_free(response);
    fs_free(request);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    char *text, *out = NULL;
    if (store == NULL) setup();
    if (size == 0) return 0;
    /* A C string ends at its first NUL: what follows one is not seen. */
    text = (char *)malloc(size);
    if (text == NULL) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    switch (data[0] % 12) {
    /* 0-3 as in FuzzTargets.swift, so the two targets share one corpus. */
    case 0: check("fs_store_apply", fs_store_apply(store, text, &out), out); break;
    case 1: check("fs_hub_handle", fs_hub_handle(hub, text, &out), out); break;
    case 2: check("fs_sync_receive", fs_sync_receive(store, text, &out), out); break;
    case 3: check("fs_store_query", fs_store_query(store, text, &out), out); break;
    case 4: check("fs_audit_query", fs_audit_query(store, text, &out), out); break;
    case 5: check("fs_outbox_list", fs_outbox_list(store, text, &out), out); break;
    case 6: check("fs_fetch_request", fs_fetch_request(store, text, &out), out); break;
    case 7: check("fs_hub_query", fs_hub_query(hub, text, &out), out); break;
    case 8: check("fs_hub_audit_query", fs_hub_audit_query(hub, text, &out), out); break;
    case 9: open_with(NULL, text); break;
    case 10: open_with(text, NULL); break;
    default: {
        /* type NUL id: fs_store_get, and discarding by a key of that text. */
        const char *id = memchr(text, '\0', size - 1) ? text + strlen(text) + 1 : "";
        if (id > text + size - 1) id = "";
        check("fs_store_get", fs_store_get(store, text, id, &out), out);
        check("fs_outbox_discard", fs_outbox_discard(store, text), NULL);
        break;
    }
    }
    free(text);
    sync_round();
    return 0;
}
