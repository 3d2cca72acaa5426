/* test_hub_trust.c — the hub's trust boundary, driven through the C doors
 * with the extremes that broke it: every integer of a request and of a
 * response range-checked where it is read (a request or response out of
 * range is FS_ERR_ARG and changes nothing, never a trap); stamps beyond the
 * maximum clock skew refused per entry ("clock_skew") so they cannot win
 * later writes; a key or audit id reused for other content refused
 * ("key_reused", "audit_refused") instead of acknowledged; scopes checked at
 * fs_store_open as the hub checks them; pull pages sized by bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <sqlite3.h>
#include <unistd.h>

#include "fixture.h"
#include "testkey.h"

#define I64_MAX INT64_MAX
#define I64_MIN (-INT64_MAX - 1)

static int64_t fixed_clock(void *ctx) { return *(const int64_t *)ctx; }

/* 2026-11-25, the hub's and the devices' wall time in these tests. */
static int64_t now_ms = 1764075000000LL;


/* A hub and device dev-1 on the fixed clock, with T-1 created and picked.
 * exchange_start: dev-1 is enrolled and signs with a key the test holds, so
 * the requests the test edits are re-signed and reach the hub's decoder as
 * from a compromised enrolled device, which the decoder must withstand on
 * its own. exchange_start_unverified: hub and store with {"auth":"off"},
 * for the responses the test crafts: the test does not hold the hub's key,
 * so only a store that verifies nothing lets them reach its decoder (which
 * must hold for such a store, and for a hub whose key was stolen). */
typedef struct {
    fs_hub *h;
    fs_store *s;
    test_key *key;
    char *request;  /* fs_free */
    char *response; /* fs_free */
} exchange;

static int exchange_open(exchange *x, const char *hub_options, int verified) {
    x->h = open_hub("hub.db", TASK_SCHEMA, verified ? hub_options : "{\"auth\":\"off\"}");
    x->s = open_device("dev-1", verified ? NULL : "\"auth\":\"off\"");
    x->key = NULL;
    x->request = x->response = NULL;
    if (x->h == NULL || x->s == NULL) return 0;
    if (verified && (x->key = own_device_key(x->s, x->h, NULL)) == NULL) return 0;
    fs_hub_set_clock(x->h, fixed_clock, &now_ms);
    fs_store_set_clock(x->s, fixed_clock, &now_ms);
    create_task(x->s, "T-1", "open");
    json_decref(apply_ok(x->s, act("T-1", "'inc':{'picked':2}")));
    x->request = prepare_ok(x->s);
    return x->request != NULL;
}

static int exchange_start(exchange *x, const char *hub_options) { return exchange_open(x, hub_options, 1); }
static int exchange_start_unverified(exchange *x) { return exchange_open(x, NULL, 0); }

static void exchange_finish(exchange *x) {
    fs_free(x->request);
    fs_free(x->response);
    fs_store_close(x->s);
    fs_hub_close(x->h);
    test_key_free(x->key);
}

/* The stamp of wall time `ms` (docs/AUDIT.md: physical ms << 16). */
static int64_t stamp_at(int64_t ms) { return ms * 65536; }

/* ---- requests: every integer range-checked where it is read ---- */

/* Audit rows a response acknowledges: protocol 2 names a run of consecutive
 * rows in one object ("through"), protocol 1 one row an object. */
static long long acked_rows(json_t *response) {
    json_t *acks = json_object_get(response, "audit_acks"), *ack;
    size_t i;
    long long n = 0;
    json_array_foreach(acks, i, ack) {
        json_t *through = json_object_get(ack, "through");
        n += through ? json_integer_value(through) - jint(ack, "audit_id") + 1 : 1;
    }
    return n;
}

TEST(test_hub_refuses_a_request_with_an_integer_out_of_range_whole) {
    exchange x;
    static const long long audit_ids[] = {I64_MIN, -1, 0, I64_MAX};
    static const long long seqs[] = {I64_MIN, -1, 0, I64_MAX};
    char *long_text = repeat_char('a', 257);
    size_t i;
    json_t *stats;
    REQUIRE(exchange_start(&x, NULL));
    /* the audit id that took the hub down (HubStorage computed audit_id - 1) */
    for (i = 0; i < 4; i++)
        HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "audit", 0, "audit_id", json_integer(audit_ids[i])),
                       FS_ERR_ARG);
    for (i = 0; i < 4; i++) {
        char key[64];
        char *r1;
        snprintf(key, sizeof key, "dev-1-%lld", seqs[i]);
        r1 = with_item_member(x.request, "entries", 0, "seq", json_integer(seqs[i]));
        HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(r1, "entries", 0, "key", json_string(key)), FS_ERR_ARG);
        free(r1);
    }
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "cursor", json_integer(-1)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "cursor", json_integer(I64_MIN)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "limit", json_integer(0)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "limit", json_integer(I64_MIN)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "schema_version", json_integer(0)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "schema_version", json_integer(I64_MIN)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "protocol", json_integer(I64_MIN)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "pull", json_integer(1)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "entries", 0, "cursor", json_integer(-1)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "entries", 0, "shadow_seq", json_integer(I64_MIN)),
                   FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "entries", 0, "schema_version", json_integer(-1)),
                   FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "entries", 0, "hlc", json_string("1")), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "entries", 0, "ops", json_integer(1)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "entries", 0, "id", json_string(long_text)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "entries", 0, "actor", json_string(long_text)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "audit", 0, "actor", json_string(long_text)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "audit", 0, "action", json_string(long_text)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "audit", 0, "outbox_keys", json_pack("[i]", 1)),
                   FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "fetch", json_pack("[{s:i}]", "type", 1)), FS_ERR_ARG);
    free(long_text);

    /* the genuine request is still taken whole */
    x.response = handle_ok(x.h, x.request);
    stats = hub_stats_ok(x.h);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 2);
    CHECK_INT_EQ(jint(stats, "audit_rows"), 2);
    json_decref(stats);
    json_decref(receive_ok(x.s, x.response));
    CHECK_INT_EQ(outbox_count(x.s), 0);
    exchange_finish(&x);
}

TEST(test_hub_clock_at_the_extremes_gives_times_a_device_accepts) {
    /* a hub clock callback may return anything: the hub brings it into the
     * range stamps hold, so its times are ones a device reads; an entry is
     * then applied, or rejected "clock_skew" by a hub whose clock says 1970 */
    static int64_t extremes[] = {I64_MIN, -1, I64_MAX};
    size_t i;
    for (i = 0; i < 3; i++) {
        char hub_name[32], device[32];
        fs_hub *h;
        fs_store *s;
        char *request, *response;
        json_t *r, *summary;
        snprintf(hub_name, sizeof hub_name, "hub-%d.db", (int)i);
        snprintf(device, sizeof device, "dev-%d", (int)i);
        h = open_hub(hub_name, TASK_SCHEMA, NULL);
        s = open_device(device, NULL);
        REQUIRE(h != NULL && s != NULL);
        REQUIRE(enroll(s, h, NULL) == 0);
        fs_hub_set_clock(h, fixed_clock, &extremes[i]);
        create_task(s, "T-1", "open");
        request = prepare_ok(s);
        REQUIRE(request != NULL);
        response = handle_ok(h, request);
        fs_free(request);
        REQUIRE(response != NULL);
        r = json_loads(response, 0, NULL);
        CHECK(json_integer_value(json_object_get(r, "server_time")) >= 0);
        CHECK(json_integer_value(json_object_get(r, "server_time")) < (I64_MAX >> 16));
        json_decref(r);
        summary = receive_ok(s, response);
        fs_free(response);
        CHECK_INT_EQ(jint(summary, "applied") + jint(summary, "rejected"), 1);
        if (extremes[i] < 0) CHECK_INT_EQ(jint(summary, "rejected"), 1);
        json_decref(summary);
        fs_store_close(s);
        fs_hub_close(h);
    }
}

/* ---- responses: the device checks what it reads ---- */

TEST(test_device_refuses_a_response_with_an_integer_out_of_range) {
    exchange x;
    json_t *summary;
    REQUIRE(exchange_start_unverified(&x));
    x.response = handle_ok(x.h, x.request);
    REQUIRE(x.response != NULL);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "cursor", json_integer(-1)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "cursor", json_integer(I64_MIN)), FS_ERR_ARG);
    /* a cursor no hub reaches would stop this device from pulling for good */
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "cursor", json_integer(I64_MAX)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "results", 0, "server_seq", json_integer(I64_MAX)),
                    FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "more", json_integer(1)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "results", 0, "server_seq", json_integer(-1)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "results", 0, "server_seq", json_integer(I64_MIN)),
                    FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "audit_acks", 0, "audit_id", json_integer(I64_MIN)),
                    FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "audit_acks", 0, "audit_id", json_integer(0)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "audit_acks", 0, "server_received_at",
                                          json_integer(I64_MIN)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "audit_acks", 0, "server_received_at",
                                          json_integer(I64_MAX)), FS_ERR_ARG);
    /* protocol 2's runs: "through" before "audit_id", past 2^53-1, or naming
     * more rows than a response could name one object a row */
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "audit_acks", 0, "through", json_integer(0)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "audit_acks", 0, "through", json_integer(I64_MAX)),
                    FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "audit_acks", 0, "through",
                                          json_integer((1LL << 53) - 1)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "changes",
                                     json_pack("[{s:s,s:s,s:I,s:{}}]", "type", "task", "id", "T-9", "seq",
                                               (json_int_t)0, "state")), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "fetched",
                                     json_pack("[{s:s,s:s,s:I,s:{}}]", "type", "task", "id", "T-9", "seq",
                                               (json_int_t)I64_MIN, "state")), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "own",
                                     json_pack("[{s:s,s:s,s:I,s:I}]", "type", "task", "id", "T-1", "seq",
                                               (json_int_t)5, "prior", (json_int_t)-1)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "own",
                                     json_pack("[{s:s,s:s,s:I,s:I}]", "type", "task", "id", "T-1", "seq",
                                               (json_int_t)5, "prior", (json_int_t)7)), FS_ERR_ARG);
    /* the genuine answer is still taken */
    summary = receive_ok(x.s, x.response);
    CHECK_INT_EQ(jint(summary, "applied"), 2);
    json_decref(summary);
    exchange_finish(&x);
}

/* ---- stamps beyond the maximum clock skew ---- */

/* A request of device `device` with one entry per (id, hlc, status), signed
 * by `key`, which the hub has enrolled for `device`: a compromised device
 * stamps what it likes. */
static char *forged_request(const test_key *key, const char *device, int n, const char *const ids[],
                            const int64_t hlcs[], const char *const statuses[]) {
    char batch[96];
    json_t *r, *entries = json_array();
    char *out;
    int i;
    snprintf(batch, sizeof batch, "%s-b1", device);
    r = json_pack("{s:i,s:s,s:s,s:i,s:b}", "protocol", 1, "device_id", device, "batch", batch, "schema_version", 1,
                  "pull", 0);
    for (i = 0; i < n; i++) {
        char key[96];
        snprintf(key, sizeof key, "%s-%d", device, i + 1);
        json_array_append_new(entries, json_pack("{s:s,s:i,s:s,s:s,s:I,s:i,s:{s:{s:s}}}", "key", key, "seq", i + 1,
                                                 "type", "task", "id", ids[i], "hlc", (json_int_t)hlcs[i],
                                                 "schema_version", 1, "ops", "set", "status", statuses[i]));
    }
    json_object_set_new(r, "entries", entries);
    json_object_set_new(r, "auth", json_pack("{s:s}", "instance", "0123456789abcdef0123456789abcdef"));
    out = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    return resigned(key, out);
}

TEST(test_hub_rejects_a_stamp_beyond_the_skew_per_entry_and_later_writes_win) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    const char *ids[] = {"T-1", "T-2", "T-3", "T-4"};
    const int64_t hlcs[] = {I64_MAX, stamp_at(now_ms), stamp_at(now_ms + 25LL * 3600 * 1000), -5};
    const char *statuses[] = {"forged", "fine", "ahead", "negative"};
    char *request, *response;
    json_t *r, *results, *stats, *t1;
    test_key *key = test_key_new();
    REQUIRE(h != NULL && s != NULL && key != NULL);
    REQUIRE(enroll_key(h, "dev-x", key) == 0);
    fs_hub_set_clock(h, fixed_clock, &now_ms);
    fs_store_set_clock(s, fixed_clock, &now_ms);
    create_task(s, "T-1", "open");
    sync_until_idle(s, h);

    request = forged_request(key, "dev-x", 4, ids, hlcs, statuses);
    response = handle_ok(h, request);
    free(request);
    REQUIRE(response != NULL);
    r = json_loads(response, 0, NULL);
    fs_free(response);
    results = json_object_get(r, "results");
    CHECK_STR_EQ(jstr(json_array_get(results, 0), "status"), "rejected");
    CHECK_STR_EQ(jstr(json_array_get(results, 0), "reason"), "clock_skew");
    CHECK(json_object_get(json_object_get(json_array_get(results, 0), "detail"), "max_clock_skew_ms") != NULL);
    CHECK_STR_EQ(jstr(json_array_get(results, 1), "status"), "applied");
    CHECK_STR_EQ(jstr(json_array_get(results, 2), "reason"), "clock_skew");
    CHECK_STR_EQ(jstr(json_array_get(results, 3), "reason"), "clock_skew");
    json_decref(r);
    stats = hub_stats_ok(h);
    CHECK_INT_EQ(jint(stats, "entries_clock_skew"), 3);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 2);
    json_decref(stats);

    /* the device's later write of T-1 is not beaten by the forged stamp */
    now_ms += 1000;
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'done'}")));
    sync_now(s, h);
    t1 = get_ok(s, "task", "T-1");
    CHECK_STR_EQ(jstr(t1, "status"), "done");
    json_decref(t1);
    CHECK_SAME_RECORDS(s, h);
    {
        json_t *st = stats_ok(s);
        CHECK(jint(st, "hlc") < stamp_at(now_ms + 24LL * 3600 * 1000));
        json_decref(st);
    }
    fs_store_close(s);
    fs_hub_close(h);
    test_key_free(key);
}

TEST(test_hub_option_max_clock_skew_ms_bounds_stamps_and_is_range_checked) {
    fs_hub *h = open_hub("hub.db", TASK_SCHEMA, "{\"max_clock_skew_ms\":0}");
    fs_hub *bad = (fs_hub *)SENTINEL;
    fs_store *st = (fs_store *)SENTINEL;
    const char *ids[] = {"T-1", "T-2"};
    const int64_t hlcs[] = {stamp_at(now_ms + 1000), stamp_at(now_ms)};
    const char *statuses[] = {"ahead", "now"};
    static const char *const refused[] = {
        "{\"max_clock_skew_ms\":-1}", "{\"max_clock_skew_ms\":\"1\"}",
        "{\"max_clock_skew_ms\":9223372036854775807}", "{\"max_clock_skew_ms\":316224000001}",
    };
    char *request, *response;
    json_t *r;
    size_t i;
    test_key *key = test_key_new();
    REQUIRE(h != NULL && key != NULL);
    REQUIRE(enroll_key(h, "dev-x", key) == 0);
    fs_hub_set_clock(h, fixed_clock, &now_ms);
    request = forged_request(key, "dev-x", 2, ids, hlcs, statuses);
    test_key_free(key);
    response = handle_ok(h, request);
    free(request);
    REQUIRE(response != NULL);
    r = json_loads(response, 0, NULL);
    fs_free(response);
    CHECK_STR_EQ(jstr(json_array_get(json_object_get(r, "results"), 0), "reason"), "clock_skew");
    CHECK_STR_EQ(jstr(json_array_get(json_object_get(r, "results"), 1), "status"), "applied");
    json_decref(r);
    fs_hub_close(h);
    for (i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        bad = (fs_hub *)SENTINEL;
        CHECK_STATUS(fs_hub_open(test_path("hub2.db"), TASK_SCHEMA, refused[i], &bad), FS_ERR_ARG);
        CHECK(bad == NULL);
        st = (fs_store *)SENTINEL;
        CHECK_STATUS(fs_store_open(test_path("store2.db"), TASK_SCHEMA, refused[i], &st), FS_ERR_ARG);
        CHECK(st == NULL);
    }
    CHECK(access(test_path("store2.db"), F_OK) != 0);
    st = NULL;
    CHECK_OK(fs_store_open(test_path("store3.db"), TASK_SCHEMA, "{\"max_clock_skew_ms\":316224000000}", &st));
    fs_store_close(st);
}

/* ---- a key or an audit id reused for other content ---- */

TEST(test_two_stores_with_one_device_id_the_second_is_refused_key_reused_not_lost) {
    /* a hub that authenticates nobody ({"auth":"off"}): its ledger alone
     * must keep the second store's actions from vanishing as duplicates
     * (with auth on that store is refused before, test_auth.c) */
    fs_hub *h = open_hub("hub.db", TASK_SCHEMA, "{\"auth\":\"off\"}");
    fs_store *a = open_store("a.db", TASK_SCHEMA, "{\"device_id\":\"dev-1\"}");
    fs_store *b = open_store("b.db", TASK_SCHEMA, "{\"device_id\":\"dev-1\"}");
    char *first_request, *first_response, *again;
    json_t *outbox, *stats, *audit, *r;
    size_t i;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    REQUIRE(enroll(a, h, NULL) == 0);
    create_task(a, "T-1", "open");
    create_task(a, "T-2", "open");
    first_request = prepare_ok(a);
    REQUIRE(first_request != NULL);
    first_response = handle_ok(h, first_request);
    REQUIRE(first_response != NULL);
    json_decref(receive_ok(a, first_response));
    fs_free(first_response);
    CHECK_INT_EQ(outbox_count(a), 0);

    create_task(b, "T-3", "open");
    create_task(b, "T-4", "open");
    sync_until_idle(b, h);
    /* not lost: both stay in b's outbox, rejected with their reason */
    CHECK_INT_EQ(outbox_count(b), 2);
    outbox = outbox_ok(b, NULL);
    for (i = 0; i < json_array_size(outbox); i++) {
        CHECK_STR_EQ(jstr(json_array_get(outbox, i), "state"), "rejected");
        CHECK_STR_EQ(jstr(json_array_get(outbox, i), "reason"), "key_reused");
    }
    json_decref(outbox);
    /* b's audit rows hold ids the hub has for a's rows: refused, not acknowledged */
    audit = audit_ok(b, NULL);
    for (i = 0; i < json_array_size(audit); i++) {
        CHECK(json_is_null(json_object_get(json_array_get(audit, i), "server_received_at")));
        CHECK_STR_EQ(jstr(json_array_get(audit, i), "reason"), "audit_id_reused");
    }
    json_decref(audit);
    stats = stats_ok(b);
    CHECK_INT_EQ(jint(stats, "audit_refused"), 2);
    CHECK_INT_EQ(jint(stats, "audit_unacked"), 2);
    json_decref(stats);
    /* refused rows are not sent again: every resend would be refused too, and
     * a batch of them would crowd out the rows that can still be taken */
    CHECK_OK(fs_sync_connectivity(b, 1));
    {
        char *next = prepare_ok(b);
        REQUIRE(next != NULL);
        r = json_loads(next, 0, NULL);
        fs_free(next);
        CHECK_INT_EQ(json_array_size(json_object_get(r, "audit")), 0);
        json_decref(r);
    }

    stats = hub_stats_ok(h);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 2);
    CHECK_INT_EQ(jint(stats, "entries_key_reused"), 2);
    CHECK_INT_EQ(jint(stats, "audit_reused"), 2);
    CHECK_INT_EQ(jint(stats, "records"), 2);
    json_decref(stats);
    /* a's own resend is still a duplicate of what was applied */
    again = handle_ok(h, first_request);
    REQUIRE(again != NULL);
    r = json_loads(again, 0, NULL);
    fs_free(again);
    CHECK_STR_EQ(jstr(json_array_get(json_object_get(r, "results"), 0), "status"), "duplicate");
    CHECK_STR_EQ(jstr(json_array_get(json_object_get(r, "results"), 0), "outcome"), "applied");
    CHECK_INT_EQ(acked_rows(r), 2);
    CHECK(json_object_get(r, "audit_refused") == NULL);
    json_decref(r);
    fs_free(first_request);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

TEST(test_hub_refuses_an_audit_row_whose_id_it_holds_with_other_content) {
    exchange x;
    char *forged, *response;
    json_t *r, *before, *after, *stats;
    REQUIRE(exchange_start(&x, NULL));
    x.response = handle_ok(x.h, x.request);
    REQUIRE(x.response != NULL);
    before = hub_audit_ok(x.h, NULL);
    forged = resigned(x.key, with_item_member(x.request, "audit", 0, "actor", json_string("op-666")));
    response = handle_ok(x.h, forged);
    free(forged);
    REQUIRE(response != NULL);
    r = json_loads(response, 0, NULL);
    fs_free(response);
    CHECK_INT_EQ(acked_rows(r), 1);
    CHECK_INT_EQ(jint(json_array_get(json_object_get(r, "audit_refused"), 0), "audit_id"), 1);
    CHECK_STR_EQ(jstr(json_array_get(json_object_get(r, "audit_refused"), 0), "reason"), "audit_id_reused");
    json_decref(r);
    after = hub_audit_ok(x.h, NULL);
    {
        char *b = jdump(before), *a = jdump(after);
        CHECK_STR_EQ(a, b);
        free(a);
        free(b);
    }
    json_decref(before);
    json_decref(after);
    stats = hub_stats_ok(x.h);
    CHECK_INT_EQ(jint(stats, "audit_reused"), 1);
    CHECK_INT_EQ(jint(stats, "audit_rows"), 2);
    json_decref(stats);
    json_decref(receive_ok(x.s, x.response));
    exchange_finish(&x);
}

TEST(test_hub_takes_one_of_two_audit_rows_with_one_id_in_a_request) {
    exchange x;
    json_t *req, *audit, *r;
    char *text, *response;
    REQUIRE(exchange_start(&x, NULL));
    req = json_loads(x.request, 0, NULL);
    audit = json_object_get(req, "audit");
    json_object_set_new(json_array_get(audit, 1), "audit_id", json_integer(1));
    text = resigned(x.key, json_dumps(req, JSON_COMPACT));
    json_decref(req);
    response = handle_ok(x.h, text);
    free(text);
    REQUIRE(response != NULL);
    r = json_loads(response, 0, NULL);
    fs_free(response);
    CHECK_INT_EQ(acked_rows(r), 1);
    CHECK_INT_EQ(json_array_size(json_object_get(r, "audit_refused")), 1);
    json_decref(r);
    exchange_finish(&x);
}

/* ---- scopes checked at open as the hub checks them ---- */

TEST(test_store_open_refuses_a_scope_the_hub_would_refuse_and_creates_nothing) {
    static const struct {
        const char *options;
        fs_status expected;
    } cases[] = {
        {"{'scope':{'task':{'sitee':'WH-3'}}}", FS_ERR_SCHEMA},
        {"{'scope':{'order':{'site':'WH-3'}}}", FS_ERR_SCHEMA},
        {"{'scope':'task'}", FS_ERR_ARG},
        {"{'scope':['task']}", FS_ERR_ARG},
        {"{'scope':{'task':'WH-3'}}", FS_ERR_ARG},
        {"{'scope':{'task':{'site':3}}}", FS_ERR_SCHEMA},
        {"{'scope':{'task':{'site':['WH-3']}}}", FS_ERR_SCHEMA},
        {"{'scope':{'task':{'picked':'3'}}}", FS_ERR_SCHEMA},
        {"{'scope':{'task':{'tags':['x']}}}", FS_ERR_SCHEMA},
        {"{'scope':{'task':{'lines':{}}}}", FS_ERR_SCHEMA},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fs_store *s = (fs_store *)SENTINEL;
        char msg[FS_TEST_MSG_MAX];
        fs_status st = fs_store_open(test_path("scoped.db"), TASK_SCHEMA, Q(cases[i].options), &s);
        fs_test_copy_last_error(msg);
        if (st != cases[i].expected)
            fs_test_fail(__FILE__, __LINE__, "options %s: %s (\"%s\"), expected %s", cases[i].options,
                         fs_status_name(st), msg, fs_status_name(cases[i].expected));
        CHECK(s == NULL);
        if (s != NULL && s != (fs_store *)SENTINEL) fs_store_close(s);
        CHECK(access(test_path("scoped.db"), F_OK) != 0);
    }
}

TEST(test_a_valid_scope_opens_and_pulls_what_it_names) {
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("dev-a", NULL);
    fs_store *b = open_device("dev-b", "\"scope\":{\"task\":{\"site\":\"WH-3\",\"weight\":1}}");
    json_t *rows;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    json_decref(apply_ok(a, act("T-1", "'set':{'status':'open','site':'WH-3','weight':1.0}")));
    json_decref(apply_ok(a, act("T-2", "'set':{'status':'open','site':'WH-1','weight':1.0}")));
    json_decref(apply_ok(a, act("T-3", "'set':{'status':'open','site':'WH-3','weight':2.5}")));
    sync_until_idle(a, h);
    sync_now(b, h);
    rows = query_ok(b, "{\"type\":\"task\"}");
    {
        char *ids = ids_of(rows);
        CHECK_STR_EQ(ids, "T-1");
        free(ids);
    }
    json_decref(rows);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

TEST(test_hub_refuses_a_scope_value_of_the_wrong_type) {
    exchange x;
    REQUIRE(exchange_start(&x, NULL));
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "scope", json_pack("{s:{s:i}}", "task", "site", 3)), FS_ERR_SCHEMA);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "scope", json_pack("{s:{s:[s]}}", "task", "tags", "x")),
                   FS_ERR_SCHEMA);
    exchange_finish(&x);
}

/* ---- pull pages sized by bytes ---- */

TEST(test_a_pull_of_many_large_records_is_paged_under_the_byte_budget) {
    enum { RECORDS = 24 };
    const size_t budget = (size_t)16 * 1024 * 1024;
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("dev-a", "\"batch_size\":6");
    fs_store *b = open_device("dev-b", NULL);
    char *big = repeat_char('x', 1000 * 1000);
    int i, rounds = 0, pages_with_more = 0;
    json_t *stats;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    REQUIRE(enroll(b, h, NULL) == 0);
    for (i = 0; i < RECORDS; i++) {
        char *action = strf("{\"action\":\"edit\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"T-%d\","
                            "\"set\":{\"status\":\"%s\"}}", i, big);
        json_decref(apply_ok(a, action));
        free(action);
    }
    free(big);
    sync_until_idle(a, h);
    CHECK_INT_EQ(outbox_count(a), 0);

    for (;;) {
        char *request = NULL, *response = NULL, *summary = NULL;
        int64_t wait = 0;
        json_t *sj;
        REQUIRE_OK(fs_sync_prepare(b, &request, &wait));
        if (request == NULL) break;
        REQUIRE(++rounds < 20);
        REQUIRE_OK(fs_hub_handle(h, request, &response));
        fs_free(request);
        if (strlen(response) > budget + (size_t)2 * 1024 * 1024)
            fs_test_fail(__FILE__, __LINE__, "a response of %zu bytes, over the 16 MiB budget and a record",
                         strlen(response));
        REQUIRE_OK(fs_sync_receive(b, response, &summary));
        fs_free(response);
        sj = take_json(summary);
        if (json_is_true(json_object_get(sj, "more"))) pages_with_more++;
        json_decref(sj);
    }
    CHECK(pages_with_more >= 1);
    stats = stats_ok(b);
    CHECK_INT_EQ(jint(stats, "records"), RECORDS);
    json_decref(stats);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

TEST(test_a_hub_made_before_digests_gets_the_column_and_trusts_its_old_rows) {
    exchange x;
    sqlite3 *db = NULL;
    char *again;
    json_t *r;
    int columns = -1;
    sqlite3_stmt *st = NULL;
    REQUIRE(exchange_start(&x, NULL));
    x.response = handle_ok(x.h, x.request);
    REQUIRE(x.response != NULL);
    fs_hub_close(x.h);
    /* the ledger as hubs before this version wrote it */
    REQUIRE(sqlite3_open(test_path("hub.db"), &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "ALTER TABLE fs_hub_applied DROP COLUMN digest", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);

    x.h = open_task_hub();
    REQUIRE(x.h != NULL);
    REQUIRE(sqlite3_open(test_path("hub.db"), &db) == SQLITE_OK);
    REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM pragma_table_info('fs_hub_applied') WHERE name = 'digest'",
                               -1, &st, NULL) == SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) columns = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK_INT_EQ(columns, 1);
    /* rows without a digest are trusted: a resend is a duplicate */
    again = handle_ok(x.h, x.request);
    REQUIRE(again != NULL);
    r = json_loads(again, 0, NULL);
    fs_free(again);
    CHECK_STR_EQ(jstr(json_array_get(json_object_get(r, "results"), 0), "status"), "duplicate");
    CHECK_STR_EQ(jstr(json_array_get(json_object_get(r, "results"), 1), "status"), "duplicate");
    json_decref(r);
    json_decref(receive_ok(x.s, x.response));
    CHECK_INT_EQ(outbox_count(x.s), 0);
    exchange_finish(&x);
}

TEST(test_a_fetch_of_many_large_records_is_answered_under_the_byte_budget) {
    enum { RECORDS = 20 };
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("dev-a", "\"batch_size\":6");
    fs_store *b = open_device("dev-b", "\"scope\":{\"task\":{\"site\":\"none\"}}");
    char *big = repeat_char('x', 1000 * 1000);
    char *request = NULL, *response = NULL;
    json_t *refs = json_array(), *r;
    char *refs_text;
    int i;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    REQUIRE(enroll(b, h, NULL) == 0);
    for (i = 0; i < RECORDS; i++) {
        char id[16];
        char *action = strf("{\"action\":\"edit\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"T-%d\","
                            "\"set\":{\"status\":\"%s\"}}", i, big);
        json_decref(apply_ok(a, action));
        free(action);
        snprintf(id, sizeof id, "T-%d", i);
        json_array_append_new(refs, json_pack("{s:s,s:s}", "type", "task", "id", id));
    }
    free(big);
    sync_until_idle(a, h);
    refs_text = json_dumps(refs, JSON_COMPACT);
    json_decref(refs);
    REQUIRE_OK(fs_fetch_request(b, refs_text, &request));
    free(refs_text);
    REQUIRE_OK(fs_hub_handle(h, request, &response));
    fs_free(request);
    CHECK(strlen(response) < (size_t)18 * 1024 * 1024);
    r = json_loads(response, 0, NULL);
    CHECK(json_array_size(json_object_get(r, "fetched")) >= 1);
    CHECK_INT_EQ(json_array_size(json_object_get(r, "fetched")) + json_array_size(json_object_get(r, "deferred")),
                 RECORDS);
    json_decref(r);
    json_decref(receive_ok(b, response));
    fs_free(response);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

/* The exchange's response with one more pulled change: T-9 whose status
 * carries stamp `hlc` (free()). */
static char *with_pulled_stamp(const char *response, int64_t hlc) {
    json_t *change = json_pack("{s:s,s:s,s:I,s:{s:{s:s},s:{s:[I,s]},s:{s:I},s:b}}", "type", "task", "id", "T-9", "seq",
                               (json_int_t)1000, "state", "fields", "status", "far", "stamps", "status",
                               (json_int_t)hlc, "dev-x", "versions", "status", (json_int_t)1000, "deleted", 0);
    return with_member(response, "changes", json_pack("[o]", change));
}

TEST(test_a_device_never_adopts_a_pulled_stamp_beyond_its_skew_option) {
    /* default skew: INT64_MAX and a stamp 25 h ahead are kept in the record,
     * not adopted by the clock; with max_clock_skew_ms 0 not even one 1 s ahead.
     * The test crafts the hub's response without the hub's key: hub and store
     * run {"auth":"off"}, the store's decoder must hold for them (and for a
     * hub whose key was stolen). */
    static const struct {
        const char *options;
        int64_t ahead_ms; /* INT64_MAX: the stamp INT64_MAX */
        int adopted;
    } cases[] = {
        {"\"auth\":\"off\"", I64_MAX, 0},
        {"\"auth\":\"off\"", 25LL * 3600 * 1000, 0},
        {"\"auth\":\"off\"", 1000, 1},
        {"\"auth\":\"off\",\"max_clock_skew_ms\":0", 1000, 0},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char device[32], hub_name[32];
        fs_hub *h;
        fs_store *s;
        char *request, *response, *forged;
        int64_t stamp;
        json_t *stats;
        snprintf(device, sizeof device, "dev-%d", (int)i);
        snprintf(hub_name, sizeof hub_name, "hub-%d.db", (int)i);
        h = open_hub(hub_name, TASK_SCHEMA, "{\"auth\":\"off\"}");
        s = open_device(device, cases[i].options);
        REQUIRE(h != NULL && s != NULL);
        fs_hub_set_clock(h, fixed_clock, &now_ms);
        fs_store_set_clock(s, fixed_clock, &now_ms);
        create_task(s, "T-1", "open");
        request = prepare_ok(s);
        REQUIRE(request != NULL);
        response = handle_ok(h, request);
        fs_free(request);
        REQUIRE(response != NULL);
        stamp = cases[i].ahead_ms == I64_MAX ? I64_MAX : stamp_at(now_ms + cases[i].ahead_ms);
        forged = with_pulled_stamp(response, stamp);
        fs_free(response);
        json_decref(receive_ok(s, forged));
        free(forged);
        stats = stats_ok(s);
        if (cases[i].adopted)
            CHECK_INT_EQ(jint(stats, "hlc"), stamp);
        else
            CHECK(jint(stats, "hlc") < stamp_at(now_ms + 1));
        json_decref(stats);
        /* the clock goes on: the next action gets a stamp */
        json_decref(apply_ok(s, act("T-1", "'set':{'status':'done'}")));
        fs_store_close(s);
        fs_hub_close(h);
    }
}
