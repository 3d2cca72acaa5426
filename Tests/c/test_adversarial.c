/* test_adversarial.c — every integer a door reads, at 0, -1, INT64_MIN and
 * INT64_MAX (issue 12): store and hub options at open, the members of a hub
 * request (fs_hub_handle) and of a sync response (fs_sync_receive), and the
 * clocks of a store and a hub around each step. One TEST per door, one table
 * row per value, each row in its own forked child so that a crash names the
 * row and the table goes on. The contract of every row: the process
 * survives; the call returns FS_OK or an FS_ERR_* other than FS_ERR_INTERNAL
 * with a message; a refused call changes nothing; after an accepted value
 * the outbox still settles through a hub (applied, or rejected with a
 * reason). bindings/python/tests/test_adversarial.py goes further. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "testkey.h"

static const int64_t EXTREMES[] = {0, -1, INT64_MIN, INT64_MAX};
#define N_EXTREMES 4

/* The default skew bound (24 h): a stamp further ahead is refused. */
#define MAX_SKEW_MS (24LL * 3600000LL)

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + (int64_t)(ts.tv_nsec / 1000000);
}

/* ---- one row, one process ---- */

typedef void (*row_fn)(int row);

/* Rows share the test's temp dir (the runner removes it); each starts empty. */
static void empty_test_dir(void) {
    DIR *dir = opendir(fs_test_dir());
    struct dirent *e;
    if (dir == NULL) return;
    while ((e = readdir(dir)) != NULL) {
        char *path;
        if (e->d_name[0] == '.') continue;
        path = strf("%s/%s", fs_test_dir(), e->d_name);
        unlink(path);
        free(path);
    }
    closedir(dir);
}

/* Runs fn(row) in a child; a crash, a hang or a failure is reported with
 * `label`. The test's temp dir is made first so every row shares it. */
static void run_row(const char *label, row_fn fn, int row) {
    pid_t pid;
    int status = 0;
    (void)fs_test_dir();
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        fs_test_fail(__FILE__, __LINE__, "%s: fork failed", label);
        return;
    }
    if (pid == 0) {
        int before = fs_test_failures();
        alarm(60);
        empty_test_dir();
        fn(row);
        fflush(NULL);
        _exit(fs_test_failures() > before ? 1 : 0);
    }
    while (waitpid(pid, &status, 0) < 0) {
    }
    if (WIFSIGNALED(status))
        fs_test_fail(__FILE__, __LINE__, "%s: the process %s (signal %d)", label,
                     WTERMSIG(status) == SIGALRM ? "hung" : "crashed", WTERMSIG(status));
    else if (WEXITSTATUS(status) != 0)
        fs_test_fail(__FILE__, __LINE__, "%s: failed (above)", label);
}

/* FS_OK, or a clean refusal; returns whether it was FS_OK. */
static int accepted_at(const char *file, int line, const char *what, fs_status st) {
    const char *msg = fs_last_error();
    if (st == FS_OK) return 1;
    if (st == FS_ERR_INTERNAL)
        fs_test_fail(file, line, "%s: FS_ERR_INTERNAL: \"%s\"", what, msg);
    else if (strcmp(fs_status_name(st), "FS_ERR_UNKNOWN") == 0)
        fs_test_fail(file, line, "%s: unknown status %d", what, (int)st);
    else if (msg == NULL || msg[0] == '\0')
        fs_test_fail(file, line, "%s: %s without a message", what, fs_status_name(st));
    return 0;
}
#define ACCEPTED(what, st) accepted_at(__FILE__, __LINE__, (what), (st))

/* ---- the outbox settles ---- */

static long entries_in(fs_store *s, const char *state) {
    char *filter = strf("{\"state\":\"%s\"}", state);
    json_t *rows = outbox_ok(s, filter);
    long n = rows ? (long)json_array_size(rows) : -1;
    free(filter);
    json_decref(rows);
    return n;
}

static long unsettled(fs_store *s) {
    return entries_in(s, "pending") + entries_in(s, "inflight") + entries_in(s, "stuck");
}

/* prepare -> handle -> receive until every entry is decided by the hub; the
 * hub refusing the device's own request, or the device its answer, is a
 * stall. Rejected entries must carry a reason. */
static void settle_at(const char *file, int line, fs_store *s, fs_hub *h) {
    int round;
    json_t *rejected;
    size_t i;
    if (fs_sync_connectivity(s, 1) != FS_OK) fs_test_fail(file, line, "connectivity: %s", fs_last_error());
    for (round = 0; round < 40; round++) {
        char *request = NULL, *response = NULL, *summary = NULL;
        int64_t wait = -2;
        fs_status st = fs_sync_prepare(s, &request, &wait);
        if (st != FS_OK) {
            fs_test_fail(file, line, "fs_sync_prepare: %s \"%s\"", fs_status_name(st), fs_last_error());
            return;
        }
        if (request == NULL) {
            if (unsettled(s) == 0) break;
            fs_sync_connectivity(s, 1);
            continue;
        }
        st = fs_hub_handle(h, request, &response);
        fs_free(request);
        if (st != FS_OK) {
            fs_test_fail(file, line, "the hub refused the device's request: %s \"%s\"", fs_status_name(st),
                         fs_last_error());
            return;
        }
        st = fs_sync_receive(s, response, &summary);
        fs_free(response);
        fs_free(summary);
        if (st != FS_OK) {
            fs_test_fail(file, line, "the device refused the hub's answer: %s \"%s\"", fs_status_name(st),
                         fs_last_error());
            return;
        }
    }
    if (round == 40) fs_test_fail(file, line, "the outbox did not settle in 40 rounds (%ld left)", unsettled(s));
    rejected = outbox_ok(s, "{\"state\":\"rejected\"}");
    for (i = 0; rejected != NULL && i < json_array_size(rejected); i++) {
        const char *reason = jstr(json_array_get(rejected, i), "reason");
        if (reason == NULL || reason[0] == '\0')
            fs_test_fail(file, line, "rejected entry %s has no reason", jstr(json_array_get(rejected, i), "key"));
    }
    json_decref(rejected);
}
#define SETTLE(s, h) settle_at(__FILE__, __LINE__, (s), (h))

/* A device's day: actions, sync, a lost request, a lost response, hygiene,
 * a fetch, later prepares; the outbox settles after each. */
static void workout(fs_store *s, fs_hub *h) {
    char *out = NULL, *request = NULL, *response = NULL;
    int64_t wait = -2;
    json_decref(apply_ok(s, act("W-1", "'set':{'status':'open'},'add':{'tags':['a',7]}")));
    /* Each action sets the required status: if the hub rejected the record's
     * creation (a clock beyond the skew bound), the next one creates it again. */
    json_decref(apply_ok(s, act("W-1", "'set':{'status':'open'},'inc':{'picked':3}")));
    SETTLE(s, h);

    json_decref(apply_ok(s, act("W-1", "'set':{'status':'open'},'inc':{'picked':1}")));
    if (fs_sync_prepare(s, &request, &wait) == FS_OK && request != NULL) {
        CHECK_OK(fs_sync_fail(s, "timeout"));
        fs_free(request);
        request = NULL;
        CHECK_OK(fs_sync_prepare(s, &request, &wait)); /* during the backoff */
        if (request != NULL) CHECK_OK(fs_sync_fail(s, "timeout"));
        fs_free(request);
        request = NULL;
    }
    SETTLE(s, h);

    json_decref(apply_ok(s, act("W-1", "'set':{'status':'picked'}")));
    fs_sync_connectivity(s, 1);
    if (fs_sync_prepare(s, &request, &wait) == FS_OK && request != NULL) {
        CHECK_OK(fs_hub_handle(h, request, &response));
        fs_free(response);
        response = NULL;
        CHECK_OK(fs_sync_fail(s, "response lost"));
    }
    fs_free(request);
    request = NULL;
    SETTLE(s, h);

    ACCEPTED("fs_store_hygiene", fs_store_hygiene(s, &out));
    fs_free(out);
    out = NULL;
    if (ACCEPTED("fs_fetch_request", fs_fetch_request(s, Q("[{'type':'task','id':'W-1'}]"), &request))) {
        if (ACCEPTED("fs_hub_handle(fetch)", fs_hub_handle(h, request, &response)))
            ACCEPTED("fs_sync_receive(fetch)", fs_sync_receive(s, response, &out));
        fs_free(out);
        out = NULL;
    }
    fs_free(request);
    fs_free(response);
    ACCEPTED("fs_store_hygiene", fs_store_hygiene(s, &out));
    fs_free(out);
    SETTLE(s, h);
    SETTLE(s, h);
}

/* ---- options ---- */

/* Issue 12: busy_timeout_ms = INT64_MAX was refused with "must be >= 0". */
static int refused_as_negative(const char *msg) {
    size_t n = strlen(msg);
    return n >= 4 && strcmp(msg + n - 4, ">= 0") == 0;
}

typedef struct {
    const char *key;
    int64_t least; /* the least value the header and docs/ABI.md allow */
} int_option;

static const int_option STORE_OPTIONS[] = {
    {"busy_timeout_ms", 0}, {"batch_size", 1},       {"pull_limit", 1},       {"backoff_base_ms", 1},
    {"backoff_cap_ms", 1},  {"max_attempts", 1},     {"pull_interval_ms", 0}, {"fetch_ttl_ms", 1},
    {"audit_keep_days", 1}, {"hygiene_every", 0},    {"max_clock_skew_ms", 0}, {"batch_bytes", 1},
};
#define N_STORE_OPTIONS ((int)(sizeof STORE_OPTIONS / sizeof STORE_OPTIONS[0]))

static void store_option_row(int row) {
    const int_option *o = &STORE_OPTIONS[row / (N_EXTREMES + 1)];
    int k = row % (N_EXTREMES + 1);
    /* the fifth value of each option: one hour, which max_clock_skew_ms must take */
    int64_t v = k < N_EXTREMES ? EXTREMES[k] : 3600000;
    char *options = strf("{\"device_id\":\"dev-A\",\"durability\":\"normal\",\"%s\":%lld}", o->key, (long long)v);
    fs_store *s = NULL;
    fs_hub *h;
    fs_status st = fs_store_open(test_path("store.db"), TASK_SCHEMA, options, &s);
    int ok = ACCEPTED(options, st);
    if (v < o->least && ok) fs_test_fail(__FILE__, __LINE__, "%s was accepted, below the least value", options);
    if (k == N_EXTREMES && strcmp(o->key, "max_clock_skew_ms") == 0 && !ok)
        fs_test_fail(__FILE__, __LINE__, "%s was refused: \"%s\"", options, fs_last_error());
    if (!ok && v > 0 && refused_as_negative(fs_last_error()))
        fs_test_fail(__FILE__, __LINE__, "%s refused as if negative: \"%s\"", options, fs_last_error());
    free(options);
    if (!ok) return;
    h = open_hub("hub.db", TASK_SCHEMA, NULL);
    if (h == NULL || enroll(s, h, NULL) != 0) return;
    workout(s, h); /* the row's process ends here: no close, no checkpoint to wait for */
}

TEST(adversarial_store_options_at_the_extremes) {
    int row;
    for (row = 0; row < N_STORE_OPTIONS * (N_EXTREMES + 1); row++) {
        char label[128];
        int k = row % (N_EXTREMES + 1);
        snprintf(label, sizeof label, "store option %s = %lld", STORE_OPTIONS[row / (N_EXTREMES + 1)].key,
                 (long long)(k < N_EXTREMES ? EXTREMES[k] : 3600000));
        if (k == N_EXTREMES && strcmp(STORE_OPTIONS[row / (N_EXTREMES + 1)].key, "max_clock_skew_ms") != 0)
            continue; /* one hour is in range for every other option: nothing new */
        run_row(label, store_option_row, row);
    }
}

static const char *const HUB_OPTIONS[] = {"busy_timeout_ms", "max_clock_skew_ms"};

static void hub_option_row(int row) {
    const char *key = HUB_OPTIONS[row / (N_EXTREMES + 1)];
    int k = row % (N_EXTREMES + 1);
    int64_t v = k < N_EXTREMES ? EXTREMES[k] : 3600000;
    char *options = strf("{\"durability\":\"normal\",\"%s\":%lld}", key, (long long)v);
    fs_hub *h = NULL;
    fs_store *s;
    int ok = ACCEPTED(options, fs_hub_open(test_path("hub.db"), TASK_SCHEMA, options, &h));
    if (v < 0 && ok) fs_test_fail(__FILE__, __LINE__, "%s was accepted", options);
    if (k == N_EXTREMES && !ok) fs_test_fail(__FILE__, __LINE__, "%s was refused: \"%s\"", options, fs_last_error());
    if (!ok && v > 0 && refused_as_negative(fs_last_error()))
        fs_test_fail(__FILE__, __LINE__, "%s refused as if negative: \"%s\"", options, fs_last_error());
    free(options);
    if (!ok) return;
    s = open_device("dev-A", "\"durability\":\"normal\"");
    if (s == NULL || enroll(s, h, NULL) != 0) return;
    workout(s, h); /* the row's process ends here: no close, no checkpoint to wait for */
}

TEST(adversarial_hub_options_at_the_extremes) {
    int row;
    for (row = 0; row < 2 * (N_EXTREMES + 1); row++) {
        char label[128];
        int k = row % (N_EXTREMES + 1);
        snprintf(label, sizeof label, "hub option %s = %lld", HUB_OPTIONS[row / (N_EXTREMES + 1)],
                 (long long)(k < N_EXTREMES ? EXTREMES[k] : 3600000));
        run_row(label, hub_option_row, row);
    }
}

/* ---- the wire ---- */

/* A hub, dev-A and dev-B such that dev-A's next request carries an entry the
 * hub applies and answers "own" (T-1: counter and lww), one it rejects with
 * the record's state (T-2: a stale `server` write), and the answer pulls
 * dev-B's change to T-2 and its new T-3.
 * Verified (wire_open_speaking, wire_open): both devices enrolled, dev-A
 * signing with a key the test holds, so an altered request is re-signed and
 * reaches the hub's decoder as from a compromised enrolled device.
 * Unverified (wire_open_unverified): hub and devices with {"auth":"off"}, for
 * responses the test alters: it does not hold the hub's key, and the
 * device's decoder must hold for a store that verifies nothing (or a hub
 * whose key was stolen). */
typedef struct {
    fs_hub *h;
    fs_store *a, *b;
    test_key *key; /* dev-A's, when verified */
} wire;

static int wire_open_as(wire *w, const char *a_options, int verified) {
    int before = fs_test_failures();
    char *a_opts = strf("%s%s", a_options, verified ? "" : ",\"auth\":\"off\"");
    w->h = open_hub("hub.db", TASK_SCHEMA, verified ? "{\"durability\":\"normal\"}"
                                                    : "{\"durability\":\"normal\",\"auth\":\"off\"}");
    w->a = open_device("dev-A", a_opts);
    free(a_opts);
    w->b = open_device("dev-B", verified ? "\"durability\":\"normal\"" : "\"durability\":\"normal\",\"auth\":\"off\"");
    w->key = NULL;
    if (w->h == NULL || w->a == NULL || w->b == NULL) return 0;
    if (verified && ((w->key = own_device_key(w->a, w->h, NULL)) == NULL || enroll(w->b, w->h, NULL) != 0))
        return 0;
    json_decref(apply_ok(w->b, act("T-2", "'set':{'status':'open','on_hand':5}")));
    SETTLE(w->b, w->h);
    json_decref(apply_ok(w->a, act("T-1", "'set':{'status':'open'}")));
    SETTLE(w->a, w->h);
    json_decref(apply_ok(w->b, act("T-2", "'set':{'on_hand':6}")));
    json_decref(apply_ok(w->b, act("T-3", "'set':{'status':'new'}")));
    SETTLE(w->b, w->h);
    json_decref(apply_ok(w->a, act("T-1", "'set':{'status':'picking'},'inc':{'picked':2}")));
    json_decref(apply_ok(w->a, act("T-2", "'set':{'on_hand':7}")));
    fs_sync_connectivity(w->a, 1);
    return fs_test_failures() == before;
}

static int wire_open_speaking(wire *w, const char *a_options) { return wire_open_as(w, a_options, 1); }
static int wire_open(wire *w) { return wire_open_speaking(w, "\"durability\":\"normal\""); }
static int wire_open_unverified(wire *w) { return wire_open_as(w, "\"durability\":\"normal\"", 0); }

/* Each row's process ends after it: closing (and its checkpoint's fsync) is
 * left to the library's tests of close. */
static void wire_close(wire *w) { (void)w; }

/* Sets `member` of the object `o` to v where present; returns how many. */
static int set_in(json_t *o, const char *member, int64_t v) {
    if (!json_is_object(o) || json_object_get(o, member) == NULL) return 0;
    json_object_set_new(o, member, json_integer((json_int_t)v));
    return 1;
}

/* "entries.seq": member seq of each element of array entries;
 * "entries.base.on_hand": member on_hand of each element's object base;
 * "cursor": the top-level member. Returns how many were set. */
static int set_path(json_t *msg, const char *path, int64_t v) {
    char head[64];
    const char *dot = strchr(path, '.');
    json_t *list;
    size_t i;
    int n = 0;
    if (dot == NULL) return set_in(msg, path, v);
    snprintf(head, sizeof head, "%.*s", (int)(dot - path), path);
    list = json_object_get(msg, head);
    for (i = 0; json_is_array(list) && i < json_array_size(list); i++) {
        json_t *item = json_array_get(list, i);
        const char *rest = dot + 1;
        const char *dot2 = strchr(rest, '.');
        if (dot2 == NULL) {
            n += set_in(item, rest, v);
        } else {
            char sub[64];
            snprintf(sub, sizeof sub, "%.*s", (int)(dot2 - rest), rest);
            n += set_in(json_object_get(item, sub), dot2 + 1, v);
        }
    }
    return n;
}

static const char *const REQUEST_MEMBERS[] = {
    "protocol",        "cursor",          "limit",         "schema_version",     "entries.seq",
    "entries.hlc",     "entries.schema_version", "entries.shadow_seq", "entries.cursor",
    "entries.base.on_hand", "audit.audit_id", "audit.device_time", "audit.hlc",
};
#define N_REQUEST_MEMBERS ((int)(sizeof REQUEST_MEMBERS / sizeof REQUEST_MEMBERS[0]))

/* A device's later lww write is what the hub holds: no clock was poisoned. */
static void later_write_wins(fs_store *s, fs_hub *h, const char *id, const char *value) {
    char *changes = strf("'set':{'status':'%s'}", value);
    json_t *rows;
    size_t i;
    json_decref(apply_ok(s, act(id, changes)));
    free(changes);
    SETTLE(s, h);
    rows = hub_query_ok(h, "{\"type\":\"task\"}");
    for (i = 0; rows != NULL && i < json_array_size(rows); i++) {
        json_t *r = json_array_get(rows, i);
        if (strcmp(jstr(r, "id"), id) == 0 && strcmp(jstr(r, "status") ? jstr(r, "status") : "", value) != 0)
            fs_test_fail(__FILE__, __LINE__, "%s: the later write '%s' lost at the hub to '%s'", id, value,
                         jstr(r, "status") ? jstr(r, "status") : "(null)");
    }
    json_decref(rows);
}

static void request_row(int row) {
    const char *member = REQUEST_MEMBERS[row / N_EXTREMES];
    int64_t v = EXTREMES[row % N_EXTREMES];
    wire w;
    char *request, *text, *response = NULL;
    json_t *req;
    hub_snap before;
    fs_status st;
    /* Protocol 2 sends an audit row's hlc only in its entry ("entries.hlc");
     * protocol 1, which the hub still serves, sends it in the row. */
    if (!wire_open_speaking(&w, strcmp(member, "audit.hlc") == 0 ? "\"durability\":\"normal\",\"protocol\":1"
                                                                  : "\"durability\":\"normal\"")) return;
    request = prepare_ok(w.a);
    if (request == NULL) return;
    req = json_loads(request, 0, NULL);
    fs_free(request);
    if (set_path(req, member, v) == 0) fs_test_fail(__FILE__, __LINE__, "the request has no %s", member);
    text = resigned(w.key, jdump(req));
    json_decref(req);
    hub_snap_take(w.h, &before);
    st = fs_hub_handle(w.h, text, &response);
    if (ACCEPTED("fs_hub_handle", st)) {
        json_t *resp = json_loads(response, 0, NULL);
        json_t *results = json_object_get(resp, "results");
        size_t i;
        /* A stamp beyond the skew bound (or negative) is refused, per entry. */
        if (strcmp(member, "entries.hlc") == 0 && v != 0 && json_object_get(resp, "error") == NULL) {
            for (i = 0; i < json_array_size(results); i++) {
                json_t *r = json_array_get(results, i);
                const char *status = jstr(r, "status") ? jstr(r, "status") : "(none)";
                if (strcmp(status, "rejected") != 0 || jstr(r, "reason") == NULL)
                    fs_test_fail(__FILE__, __LINE__, "an entry stamped %lld was answered %s", (long long)v,
                                 status);
            }
        }
        json_decref(resp);
        json_decref(hub_stats_ok(w.h));
        free_out(response);
        free(before.stats);
        free(before.records);
        free(before.audit);
    } else {
        CHECK_HUB_UNCHANGED(w.h, &before);
    }
    free(text);
    /* The answer to the altered request never reaches dev-A: it resends its own. */
    CHECK_OK(fs_sync_fail(w.a, "lost"));
    SETTLE(w.a, w.h);
    later_write_wins(w.a, w.h, "T-1", "later-A");
    later_write_wins(w.b, w.h, "T-1", "later-B");
    wire_close(&w);
}

TEST(adversarial_hub_request_integers_at_the_extremes) {
    int row;
    for (row = 0; row < N_REQUEST_MEMBERS * N_EXTREMES; row++) {
        char label[128];
        snprintf(label, sizeof label, "request %s = %lld", REQUEST_MEMBERS[row / N_EXTREMES],
                 (long long)EXTREMES[row % N_EXTREMES]);
        run_row(label, request_row, row);
    }
}

static const char *const RESPONSE_MEMBERS[] = {
    "protocol",      "cursor",   "server_time",         "results.server_seq",
    "results.record_seq", "own.seq", "own.prior", "changes.seq", "audit_acks.audit_id",
    "audit_acks.server_received_at",
};
#define N_RESPONSE_MEMBERS ((int)(sizeof RESPONSE_MEMBERS / sizeof RESPONSE_MEMBERS[0]))

static void response_row(int row) {
    const char *member = RESPONSE_MEMBERS[row / N_EXTREMES];
    int64_t v = EXTREMES[row % N_EXTREMES];
    wire w;
    char *request, *response, *text, *summary = NULL;
    json_t *resp, *stats;
    store_snap before;
    if (!wire_open_unverified(&w)) return;
    request = prepare_ok(w.a);
    if (request == NULL) return;
    response = handle_ok(w.h, request);
    fs_free(request);
    if (response == NULL) return;
    resp = json_loads(response, 0, NULL);
    fs_free(response);
    if (set_path(resp, member, v) == 0) fs_test_fail(__FILE__, __LINE__, "the response has no %s", member);
    text = jdump(resp);
    json_decref(resp);
    snap_take(w.a, &before);
    if (ACCEPTED("fs_sync_receive", fs_sync_receive(w.a, text, &summary))) {
        free_out(summary);
        free(before.records);
        free(before.outbox_list);
        free(before.audit_list);
    } else {
        CHECK_UNCHANGED(w.a, &before);
        CHECK_OK(fs_sync_fail(w.a, "refused"));
    }
    free(text);
    SETTLE(w.a, w.h);
    SETTLE(w.b, w.h);
    stats = stats_ok(w.a);
    if (stats != NULL && (jint(stats, "hlc") < 0 || (jint(stats, "hlc") >> 16) > wall_ms() + MAX_SKEW_MS))
        fs_test_fail(__FILE__, __LINE__, "dev-A's clock is at %lld", jint(stats, "hlc"));
    json_decref(stats);
    later_write_wins(w.a, w.h, "T-1", "later-A");
    later_write_wins(w.b, w.h, "T-1", "later-B");
    wire_close(&w);
}

TEST(adversarial_sync_response_integers_at_the_extremes) {
    int row;
    for (row = 0; row < N_RESPONSE_MEMBERS * N_EXTREMES; row++) {
        char label[128];
        snprintf(label, sizeof label, "response %s = %lld", RESPONSE_MEMBERS[row / N_EXTREMES],
                 (long long)EXTREMES[row % N_EXTREMES]);
        run_row(label, response_row, row);
    }
}

/* ---- clocks ---- */

/* The clock: `value` while `extreme` is set, the real time otherwise. */
typedef struct {
    int64_t value;
    int extreme;
} test_clock;

static int64_t read_test_clock(void *ctx) {
    const test_clock *c = (const test_clock *)ctx;
    return c->extreme ? c->value : wall_ms();
}

enum { DOOR_ALWAYS, DOOR_APPLY, DOOR_PREPARE, DOOR_RECEIVE, DOOR_FAIL, DOOR_HYGIENE, DOOR_FETCH, N_DOORS };
static const char *const DOORS[] = {"always", "apply", "prepare", "receive", "fail", "hygiene", "fetch"};

static void store_clock_row(int row) {
    int door = row / N_EXTREMES;
    test_clock c;
    wire w;
    char *request = NULL, *response = NULL, *out = NULL;
    int64_t wait = -2;
    c.value = EXTREMES[row % N_EXTREMES];
    c.extreme = door == DOOR_ALWAYS;
    if (!wire_open(&w)) return;
    REQUIRE_OK(fs_store_set_clock(w.a, read_test_clock, &c));
    SETTLE(w.a, w.h);
    json_decref(apply_ok(w.a, act("T-1", "'set':{'status':'at-door'}")));
    fs_sync_connectivity(w.a, 1);
    switch (door) {
    case DOOR_APPLY:
        c.extreme = 1;
        ACCEPTED("fs_store_apply", apply_status(w.a, act("T-1", "'inc':{'picked':1}")));
        break;
    case DOOR_PREPARE:
        c.extreme = 1;
        ACCEPTED("fs_sync_prepare", fs_sync_prepare(w.a, &request, &wait));
        break;
    case DOOR_RECEIVE:
    case DOOR_FAIL:
        request = prepare_ok(w.a);
        if (request == NULL) break;
        c.extreme = 1;
        if (door == DOOR_FAIL) {
            if (ACCEPTED("fs_sync_fail", fs_sync_fail(w.a, "timeout"))) {
                fs_free(request);
                request = NULL;
                ACCEPTED("fs_sync_prepare", fs_sync_prepare(w.a, &request, &wait)); /* the backoff */
            }
            break;
        }
        response = handle_ok(w.h, request);
        if (response != NULL) ACCEPTED("fs_sync_receive", fs_sync_receive(w.a, response, &out));
        break;
    case DOOR_HYGIENE:
        SETTLE(w.a, w.h);
        c.extreme = 1;
        ACCEPTED("fs_store_hygiene", fs_store_hygiene(w.a, &out));
        break;
    case DOOR_FETCH:
        if (fs_fetch_request(w.a, Q("[{'type':'task','id':'T-3'}]"), &request) != FS_OK) break;
        response = handle_ok(w.h, request);
        c.extreme = 1;
        if (response != NULL) ACCEPTED("fs_sync_receive(fetch)", fs_sync_receive(w.a, response, &out));
        fs_free(out);
        out = NULL;
        ACCEPTED("fs_store_hygiene", fs_store_hygiene(w.a, &out));
        break;
    default:
        break;
    }
    fs_free(request);
    fs_free(response);
    fs_free(out);
    if (door != DOOR_ALWAYS) c.extreme = 0;
    SETTLE(w.a, w.h);
    workout(w.a, w.h);
    wire_close(&w);
}

TEST(adversarial_store_clock_at_the_extremes) {
    int row;
    for (row = 0; row < N_DOORS * N_EXTREMES; row++) {
        char label[128];
        snprintf(label, sizeof label, "store clock at %lld, %s", (long long)EXTREMES[row % N_EXTREMES],
                 DOORS[row / N_EXTREMES]);
        run_row(label, store_clock_row, row);
    }
}

static void hub_clock_row(int row) {
    int always = row / N_EXTREMES == 0;
    test_clock c;
    wire w;
    char *request, *response, *out = NULL;
    c.value = EXTREMES[row % N_EXTREMES];
    c.extreme = 1;
    if (!wire_open(&w)) return;
    REQUIRE_OK(fs_hub_set_clock(w.h, read_test_clock, &c));
    request = prepare_ok(w.a);
    if (request == NULL) return;
    if (ACCEPTED("fs_hub_handle", fs_hub_handle(w.h, request, &response))) {
        ACCEPTED("fs_sync_receive", fs_sync_receive(w.a, response, &out));
        fs_free(response);
        fs_free(out);
    }
    fs_free(request);
    if (!always) c.extreme = 0;
    SETTLE(w.a, w.h);
    SETTLE(w.b, w.h);
    workout(w.a, w.h);
    if (!always) {
        later_write_wins(w.a, w.h, "T-1", "later-A");
        later_write_wins(w.b, w.h, "T-1", "later-B");
    }
    wire_close(&w);
}

TEST(adversarial_hub_clock_at_the_extremes) {
    int row;
    for (row = 0; row < 2 * N_EXTREMES; row++) {
        char label[128];
        snprintf(label, sizeof label, "hub clock at %lld, %s", (long long)EXTREMES[row % N_EXTREMES],
                 row / N_EXTREMES == 0 ? "always" : "for one request");
        run_row(label, hub_clock_row, row);
    }
}
