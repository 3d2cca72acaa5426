/*
 * http_sync.c — a device's firmware loop that syncs its store with a hub over
 * HTTP (`python -m fieldsync serve`), with libcurl as the transport.
 *
 * The library never opens a socket: fs_sync_prepare() says what to send (or
 * how long to wait), the host POSTs it to the hub's /sync endpoint and hands
 * the answer to fs_sync_receive(). A transport failure (no route, refused,
 * timeout, HTTP 5xx or 408) is reported with fs_sync_fail(): the entries stay
 * in the outbox and the next prepare waits a jittered exponential backoff.
 * The loop ends when the outbox holds nothing more to send and the last
 * exchange asked for no further page.
 *
 * The store is provisioned once by the operator (README, "Over HTTP"): its
 * device id, public key and instance enrolled at the hub, the hub's key
 * pinned on the device; from then on every exchange is signed.
 *
 *   ./http_sync SCHEMA_JSON_FILE STORE_DB URL [READINGS [MAX_SECONDS]]
 *   e.g. ./http_sync examples/schema.json device.db http://127.0.0.1:8080/sync 5
 *
 * Exit status: 0 drained, 1 gave up after MAX_SECONDS (default 60), 2 usage,
 * 4 a library error or the hub refused the request (HTTP 4xx).
 */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fieldsync.h"

/* Short backoffs, so that a demo recovers from a hub that is not up yet in
 * about a second; a device in the field keeps the defaults (500 ms doubling
 * up to a minute). */
static const char *OPTIONS = "{\"backoff_base_ms\": 100, \"backoff_cap_ms\": 1000}";

/* A response is at most FS_MAX_MESSAGE_BYTES; anything longer is refused
 * before it is all in memory. */
struct body {
    char *bytes;
    size_t size;
    int too_big;
};

static size_t collect(char *data, size_t size, size_t count, void *context) {
    struct body *body = (struct body *)context;
    size_t n = size * count;
    char *grown;
    if (n > (size_t)FS_MAX_MESSAGE_BYTES - body->size) {
        body->too_big = 1;
        return 0; /* curl reports CURLE_WRITE_ERROR */
    }
    grown = (char *)realloc(body->bytes, body->size + n + 1);
    if (grown == NULL) return 0;
    memcpy(grown + body->size, data, n);
    body->size += n;
    grown[body->size] = '\0';
    body->bytes = grown;
    return n;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long size;
    if (f == NULL) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (text = (char *)malloc((size_t)size + 1)) != NULL) {
        if (fread(text, 1, (size_t)size, f) != (size_t)size) {
            free(text);
            text = NULL;
        } else {
            text[size] = '\0';
        }
    }
    fclose(f);
    return text;
}

/* The integer value of `key` in the flat JSON object fs_store_stats writes
 * (compact, no spaces); 0 when absent. A host with a JSON parser uses it. */
static long long number(const char *json, const char *key) {
    char pattern[64];
    const char *p;
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    p = strstr(json, pattern);
    return p == NULL ? 0 : strtoll(p + strlen(pattern), NULL, 10);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(long long ms) {
    struct timespec t;
    t.tv_sec = (time_t)(ms / 1000);
    t.tv_nsec = (long)(ms % 1000) * 1000000L;
    nanosleep(&t, NULL);
}

static int failed(fs_status st, const char *what) {
    if (st == FS_OK) return 0;
    fprintf(stderr, "%s: %s: %s\n", what, fs_status_name(st), fs_last_error());
    return 1;
}

/* Entries that can still be sent (pending or in flight). */
static long long open_work(fs_store *store) {
    char *stats = NULL;
    long long work;
    if (failed(fs_store_stats(store, &stats), "fs_store_stats")) return -1;
    work = number(stats, "outbox_pending") + number(stats, "outbox_inflight");
    fs_free(stats);
    return work;
}

/* POSTs `request` and returns the HTTP status (0: no answer at all), the
 * answer's body in `body`, and curl's description of a failure in `error`. */
static long post(CURL *curl, const char *url, const char *request, struct body *body, char *error) {
    long code = 0;
    CURLcode rc;
    body->size = 0;
    body->too_big = 0;
    error[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(request));
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
    rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) {
        if (body->too_big) snprintf(error, CURL_ERROR_SIZE, "the response is over FS_MAX_MESSAGE_BYTES");
        else if (error[0] == '\0') snprintf(error, CURL_ERROR_SIZE, "%s", curl_easy_strerror(rc));
        return 0;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

int main(int argc, char **argv) {
    fs_store *store = NULL;
    char *schema, error[CURL_ERROR_SIZE], reason[CURL_ERROR_SIZE + 600];
    struct body body = {NULL, 0, 0};
    struct curl_slist *headers = NULL;
    CURL *curl;
    int readings, pull_pending = 1, rc = 4, i;
    double deadline;

    if (argc < 4) {
        fprintf(stderr, "usage: %s SCHEMA_JSON_FILE STORE_DB URL [READINGS [MAX_SECONDS]]\n", argv[0]);
        return 2;
    }
    readings = argc > 4 ? atoi(argv[4]) : 3;
    deadline = now_s() + (argc > 5 ? atof(argv[5]) : 60.0);
    if ((schema = read_file(argv[1])) == NULL) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    if (failed(fs_store_open(argv[2], schema, OPTIONS, &store), "fs_store_open")) {
        free(schema);
        return 4;
    }
    free(schema);

    /* The device's work, offline: each action is in the outbox as it returns. */
    for (i = 0; i < readings; i++) {
        char action[256], *result = NULL;
        snprintf(action, sizeof action,
                 "{\"action\": \"pick_item\", \"actor\": \"op-17\", \"type\": \"task\", \"id\": \"H-%d\","
                 " \"set\": {\"status\": \"picked\"}, \"inc\": {\"picked\": 1}}", i % 2);
        if (failed(fs_store_apply(store, action, &result), "fs_store_apply")) goto done;
        fs_free(result);
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (curl = curl_easy_init()) == NULL) {
        fprintf(stderr, "libcurl failed to start\n");
        goto done;
    }
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM in a threaded host */

    /* The network is up (a firmware calls this when its link comes up). */
    if (failed(fs_sync_connectivity(store, 1), "fs_sync_connectivity")) goto cleanup;
    for (;;) {
        char *request = NULL, *summary = NULL;
        int64_t wait_ms = 0;
        long status;
        fs_status st;

        if (now_s() >= deadline) {
            printf("gave up: outbox %lld left\n", open_work(store));
            rc = 1;
            break;
        }
        if (failed(fs_sync_prepare(store, &request, &wait_ms), "fs_sync_prepare")) break;
        if (request == NULL) {
            long long work = open_work(store);
            if (work < 0) break;
            if (work == 0 && !pull_pending) {
                printf("drained: outbox 0 left\n");
                rc = 0;
                break;
            }
            if (wait_ms < 0) {
                printf("nothing can be sent: outbox %lld left\n", work);
                break;
            }
            sleep_ms(wait_ms < 1000 ? wait_ms : 1000);
            continue;
        }
        status = post(curl, argv[3], request, &body, error);
        fs_free(request);
        if (status == 0 || status >= 500 || status == 408) {
            /* Not delivered or not answered: back off and send it again. */
            if (status == 0) snprintf(reason, sizeof reason, "transport: %s", error);
            else snprintf(reason, sizeof reason, "HTTP %ld: %.500s", status, body.size ? body.bytes : "");
            printf("%s; backing off\n", reason);
            if (failed(fs_sync_fail(store, reason), "fs_sync_fail")) break;
            pull_pending = 1;
            continue;
        }
        if (status != 200) {
            /* The hub refused the request itself (bad shape, too big): sending
             * it again would not help, the operator must look. */
            snprintf(reason, sizeof reason, "HTTP %ld: %.500s", status, body.size ? body.bytes : "");
            fprintf(stderr, "the hub refused the request: %s\n", reason);
            fs_sync_fail(store, reason);
            break;
        }
        /* The signed response, byte for byte as the hub wrote it. */
        st = fs_sync_receive(store, body.size ? body.bytes : "", &summary);
        if (failed(st, "fs_sync_receive")) break;
        pull_pending = strstr(summary, "\"more\":true") != NULL;
        printf("%s\n", summary);
        fs_free(summary);
    }
cleanup:
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    curl_global_cleanup();
done:
    free(body.bytes);
    fs_store_close(store);
    return rc;
}
