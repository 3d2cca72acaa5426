/* test_sync_bad_input.c — the sync steps and the hub refuse bad input: NULL
 * in every pointer position, closed handles, responses and requests that are
 * not JSON, of the wrong shape, for another device or batch, or naming
 * another device's entries. Each is refused with its code and changes
 * nothing on either side. Also the whole-request refusal of a client below
 * the hub's min_client_version. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"
#include "testkey.h"

/* One refused call: status, message, output NULL. */
#define REFUSED(call, out, expected)                                             \
    do {                                                                         \
        fs_status st_ = (call);                                                  \
        char msg_[FS_TEST_MSG_MAX];                                              \
        fs_test_copy_last_error(msg_);                                           \
        if (st_ != (expected))                                                   \
            fs_test_fail(__FILE__, __LINE__, "%s returned %s (\"%s\"), expected %s", #call, \
                         fs_status_name(st_), msg_, fs_status_name(expected));   \
        else if (msg_[0] == '\0')                                                \
            fs_test_fail(__FILE__, __LINE__, "%s: empty fs_last_error()", #call); \
        if ((out) != NULL) {                                                     \
            fs_test_fail(__FILE__, __LINE__, "%s: output not NULL after failure", #call); \
            free_out(out);                                                       \
        }                                                                        \
        out = SENTINEL;                                                          \
    } while (0)

static int64_t some_clock(void *ctx) {
    (void)ctx;
    return 1;
}

/* A device dev-1 with two actions on T-1 whose request the hub has handled;
 * the answer is not received yet, so both entries are in flight.
 * exchange_start: dev-1 is enrolled and signs with a key the test holds, so
 * a request the test edits is re-signed (HANDLE_REFUSED_SIGNED) and reaches
 * the hub's decoder as from a compromised enrolled device: the decoder must
 * refuse it on its own, not rely on the signature.
 * exchange_start_unverified: hub and store with {"auth":"off"}, for
 * responses the test crafts: it does not hold the hub's key, so only a store
 * that verifies nothing lets a crafted response reach its decoder, which
 * must hold for such a store (and for a hub whose key was stolen). */
typedef struct {
    fs_hub *h;
    fs_store *s;
    test_key *key;
    char *request;  /* fs_free */
    char *response; /* fs_free */
} exchange;

static int exchange_open(exchange *x, int verified) {
    x->h = open_hub("hub.db", TASK_SCHEMA, verified ? NULL : "{\"auth\":\"off\"}");
    x->s = open_device("dev-1", verified ? NULL : "\"auth\":\"off\"");
    x->key = NULL;
    x->request = NULL;
    x->response = NULL;
    if (x->h == NULL || x->s == NULL) return 0;
    if (verified && (x->key = own_device_key(x->s, x->h, NULL)) == NULL) return 0;
    create_task(x->s, "T-1", "open");
    json_decref(apply_ok(x->s, act("T-1", "'inc':{'picked':2}")));
    x->request = prepare_ok(x->s);
    if (x->request == NULL) return 0;
    x->response = handle_ok(x->h, x->request);
    return x->response != NULL;
}

static int exchange_start(exchange *x) { return exchange_open(x, 1); }
static int exchange_start_unverified(exchange *x) { return exchange_open(x, 0); }

/* The genuine answer is still taken after the refused ones: they left
 * nothing behind that would get in its way. */
static void exchange_finish(exchange *x) {
    if (x->s != NULL && x->response != NULL) {
        json_t *summary = receive_ok(x->s, x->response);
        CHECK_INT_EQ(jint(summary, "applied"), 2);
        json_decref(summary);
        CHECK_INT_EQ(outbox_count(x->s), 0);
        CHECK_SAME_RECORDS(x->s, x->h);
    }
    fs_free(x->request);
    fs_free(x->response);
    fs_store_close(x->s);
    fs_hub_close(x->h);
    test_key_free(x->key);
}

/* The first `n` bytes of `text` (free()). */
static char *truncated(const char *text, size_t n) {
    char *s = strf("%s", text);
    s[n] = '\0';
    return s;
}

/* ---- NULL and closed handles ---- */

TEST(test_sync_and_hub_calls_refuse_null_in_every_pointer_position) {
    exchange x;
    store_snap snap;
    hub_snap hsnap;
    fs_hub *ho = (fs_hub *)SENTINEL;
    char *out = SENTINEL;
    int64_t wait = 5;
    const char *q = "{\"type\":\"task\"}";
    REQUIRE(exchange_start(&x));
    snap_take(x.s, &snap);
    hub_snap_take(x.h, &hsnap);

    REFUSED(fs_sync_prepare(NULL, &out, &wait), out, FS_ERR_ARG);
    REFUSED(fs_sync_prepare(x.s, &out, NULL), out, FS_ERR_ARG);
    CHECK_STATUS(fs_sync_prepare(x.s, NULL, &wait), FS_ERR_ARG);

    REFUSED(fs_sync_receive(NULL, x.response, &out), out, FS_ERR_ARG);
    REFUSED(fs_sync_receive(x.s, NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_sync_receive(x.s, x.response, NULL), FS_ERR_ARG);

    CHECK_STATUS(fs_sync_fail(NULL, "timeout"), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_sync_connectivity(NULL, 1), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_sync_connectivity(NULL, 0), FS_ERR_ARG);

    CHECK_STATUS(fs_hub_open(NULL, TASK_SCHEMA, NULL, &ho), FS_ERR_ARG);
    CHECK(ho == NULL);
    ho = (fs_hub *)SENTINEL;
    CHECK_STATUS(fs_hub_open(test_path("x.db"), NULL, NULL, &ho), FS_ERR_ARG);
    CHECK(ho == NULL);
    CHECK_STATUS(fs_hub_open(test_path("x.db"), TASK_SCHEMA, NULL, NULL), FS_ERR_ARG);

    CHECK_STATUS(fs_hub_set_clock(NULL, some_clock, NULL), FS_ERR_ARG);
    CHECK_STATUS(fs_hub_set_clock(NULL, NULL, NULL), FS_ERR_ARG);

    REFUSED(fs_hub_handle(NULL, x.request, &out), out, FS_ERR_ARG);
    REFUSED(fs_hub_handle(x.h, NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_hub_handle(x.h, x.request, NULL), FS_ERR_ARG);

    REFUSED(fs_hub_query(NULL, q, &out), out, FS_ERR_ARG);
    REFUSED(fs_hub_query(x.h, NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_hub_query(x.h, q, NULL), FS_ERR_ARG);

    REFUSED(fs_hub_audit_query(NULL, NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_hub_audit_query(x.h, NULL, NULL), FS_ERR_ARG);

    REFUSED(fs_hub_stats(NULL, &out), out, FS_ERR_ARG);
    CHECK_STATUS(fs_hub_stats(x.h, NULL), FS_ERR_ARG);

    CHECK_UNCHANGED(x.s, &snap);
    CHECK_HUB_UNCHANGED(x.h, &hsnap);
    exchange_finish(&x);
}

TEST(test_sync_prepare_that_fails_sets_the_wait_to_zero) {
    /* header conventions: "On failure an output pointer is set to NULL (or 0)" */
    char *out = SENTINEL;
    int64_t wait = 5;
    CHECK_STATUS(fs_sync_prepare(NULL, &out, &wait), FS_ERR_ARG);
    CHECK(out == NULL);
    CHECK_INT_EQ(wait, 0);
}

TEST(test_sync_fail_accepts_a_null_reason) {
    fs_store *s = open_device("dev-1", NULL);
    json_t *stats;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    fs_free(prepare_ok(s));
    CHECK_OK(fs_sync_fail(s, NULL));
    CHECK_NO_ERROR_MESSAGE();
    CHECK_INT_EQ(outbox_count(s), 1);
    stats = stats_ok(s);
    CHECK_INT_EQ(jint(stats, "transport_failures"), 1);
    json_decref(stats);
    fs_store_close(s);
}

TEST(test_sync_calls_on_a_closed_store_return_closed) {
    fs_store *s = open_device("dev-1", NULL);
    char *out = SENTINEL;
    int64_t wait = 5;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    CHECK_OK(fs_store_close(s));
    REFUSED(fs_sync_prepare(s, &out, &wait), out, FS_ERR_CLOSED);
    REFUSED(fs_sync_receive(s, "{\"protocol\":1,\"device_id\":\"dev-1\",\"batch\":\"dev-1-b1\"}", &out),
            out, FS_ERR_CLOSED);
    CHECK_STATUS(fs_sync_fail(s, "timeout"), FS_ERR_CLOSED);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_sync_connectivity(s, 1), FS_ERR_CLOSED);
    CHECK_ERROR_MESSAGE();
    /* nothing was sent or changed */
    s = open_device("dev-1", NULL);
    REQUIRE(s != NULL);
    CHECK_INT_EQ(outbox_count(s), 1);
    fs_store_close(s);
}

TEST(test_hub_calls_on_a_closed_hub_return_closed) {
    fs_hub *h = open_task_hub();
    char *out = SENTINEL;
    const char *request = "{\"protocol\":1,\"device_id\":\"dev-1\",\"schema_version\":1,"
                          "\"batch\":\"dev-1-b1\",\"entries\":[],\"audit\":[]}";
    REQUIRE(h != NULL);
    CHECK_OK(fs_hub_close(h));
    CHECK_STATUS(fs_hub_set_clock(h, some_clock, NULL), FS_ERR_CLOSED);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_hub_set_clock(h, NULL, NULL), FS_ERR_CLOSED);
    REFUSED(fs_hub_handle(h, request, &out), out, FS_ERR_CLOSED);
    REFUSED(fs_hub_query(h, "{\"type\":\"task\"}", &out), out, FS_ERR_CLOSED);
    REFUSED(fs_hub_audit_query(h, NULL, &out), out, FS_ERR_CLOSED);
    REFUSED(fs_hub_stats(h, &out), out, FS_ERR_CLOSED);
    CHECK_STATUS(fs_hub_close(h), FS_ERR_CLOSED);
}

/* ---- fs_sync_receive ---- */

TEST(test_sync_receive_of_invalid_json_is_json_error_and_changes_nothing) {
    exchange x;
    static const char *const broken[] = {
        "", "{", "{\"protocol\":1,", "not json", "{'protocol':1}", "[1 2]",
        "{\"protocol\":1,\"device_id\":\"dev-1\xff\",\"batch\":\"dev-1-b1\"}",
    };
    size_t i;
    REQUIRE(exchange_start_unverified(&x));
    for (i = 0; i < sizeof broken / sizeof broken[0]; i++) RECEIVE_REFUSED(x.s, broken[i], FS_ERR_JSON);
    exchange_finish(&x);
}

TEST(test_sync_receive_of_a_truncated_response_is_json_error_and_changes_nothing) {
    exchange x;
    size_t n;
    REQUIRE(exchange_start_unverified(&x));
    n = strlen(x.response);
    RECEIVE_REFUSED_FREE(x.s, truncated(x.response, n - 1), FS_ERR_JSON);
    RECEIVE_REFUSED_FREE(x.s, truncated(x.response, n / 2), FS_ERR_JSON);
    RECEIVE_REFUSED_FREE(x.s, truncated(x.response, 1), FS_ERR_JSON);
    exchange_finish(&x);
}

TEST(test_sync_receive_of_the_wrong_shape_is_arg_and_changes_nothing) {
    exchange x;
    static const char *const shapes[] = {"[]", "null", "42", "\"dev-1\"", "true", "{}",
                                         "{\"protocol\":1}"};
    size_t i;
    REQUIRE(exchange_start_unverified(&x));
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) RECEIVE_REFUSED(x.s, shapes[i], FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "protocol", NULL), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "protocol", json_string("1")), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "protocol", json_integer(0)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "protocol", json_integer(99)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "device_id", NULL), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "device_id", json_integer(1)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "batch", NULL), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "batch", json_integer(1)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "results", json_pack("[i]", 5)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "results", 0, "status", json_string("maybe")),
                         FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "results", 0, "status", json_null()),
                         FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "results", 1, "key", json_integer(2)),
                         FS_ERR_ARG);
    /* The device's own records come back as "own", not as changes: a pulled
     * change of the wrong shape is made up here. */
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "changes",
                                          json_pack("[{s:s,s:s,s:i,s:s}]", "type", "task", "id", "T-9", "seq", 1,
                                                    "state", "x")),
                         FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "changes",
                                          json_pack("[{s:s,s:s,s:s,s:{}}]", "type", "task", "id", "T-9", "seq", "1",
                                                    "state")),
                         FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "own", json_pack("[{s:s,s:s}]", "type", "task", "id", "T-1")),
                         FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "own", json_pack("{s:i}", "seq", 1)), FS_ERR_ARG);
    exchange_finish(&x);
}

TEST(test_sync_receive_with_results_or_changes_that_are_not_arrays_is_arg) {
    /* "results": {} is not "no results": a response of the wrong shape is
     * refused whole and nothing changes (the in-flight entries stay so) */
    exchange x;
    REQUIRE(exchange_start_unverified(&x));
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "results", json_object()), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "results", json_string("applied")), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "changes", json_integer(5)), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "audit_acks", json_object()), FS_ERR_ARG);
    exchange_finish(&x);
}

TEST(test_sync_receive_of_a_response_for_another_device_is_arg) {
    exchange x;
    REQUIRE(exchange_start_unverified(&x));
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "device_id", json_string("dev-2")), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "device_id", json_string("dev-10")), FS_ERR_ARG);
    RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "device_id", json_string("DEV-1")), FS_ERR_ARG);
    exchange_finish(&x);
}

TEST(test_sync_receive_of_a_response_for_a_batch_never_sent_is_arg) {
    exchange x;
    static const char *const batches[] = {"dev-1-b999", "dev-1-b2", "dev-1-b0", "dev-1-b",
                                          "dev-1-bx",   "dev-2-b1", "b1",       ""};
    size_t i;
    REQUIRE(exchange_start_unverified(&x));
    for (i = 0; i < sizeof batches / sizeof batches[0]; i++)
        RECEIVE_REFUSED_FREE(x.s, with_member(x.response, "batch", json_string(batches[i])), FS_ERR_ARG);
    exchange_finish(&x);
}

TEST(test_sync_receive_of_a_result_naming_another_devices_key_is_arg) {
    exchange x;
    static const char *const keys[] = {"dev-2-1", "dev-10-1", "dev-1-1-1", "dev-1", "1", "dev-1-0",
                                       "dev-1--1"};
    size_t i;
    REQUIRE(exchange_start_unverified(&x));
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        RECEIVE_REFUSED_FREE(x.s, with_item_member(x.response, "results", 1, "key", json_string(keys[i])),
                             FS_ERR_ARG);
    exchange_finish(&x);
}

TEST(test_sync_receive_of_an_oversized_response_is_too_big) {
    exchange x;
    char *pad = repeat_char(' ', FS_MAX_MESSAGE_BYTES);
    char *big = strf("%s%s", pad, "{}");
    free(pad);
    REQUIRE(exchange_start_unverified(&x));
    RECEIVE_REFUSED(x.s, big, FS_ERR_TOO_BIG);
    free(big);
    exchange_finish(&x);
}

TEST(test_sync_receive_of_a_whole_request_refusal_is_conflict_and_keeps_the_outbox) {
    exchange x;
    char *out = SENTINEL;
    char *refusal;
    json_t *entries;
    size_t i;
    long audit;
    REQUIRE(exchange_start_unverified(&x));
    audit = audit_count(x.s);
    refusal = with_member(x.response, "error",
                          json_pack("{s:s,s:s}", "code", "maintenance", "message", "hub is read-only"));
    CHECK_STATUS(fs_sync_receive(x.s, refusal, &out), FS_ERR_CONFLICT);
    if (strstr(fs_last_error(), "read-only") == NULL)
        fs_test_fail(__FILE__, __LINE__, "message \"%s\" does not carry the hub's reason", fs_last_error());
    CHECK(out == NULL);
    free(refusal);
    CHECK_INT_EQ(outbox_count(x.s), 2);
    CHECK_INT_EQ(audit_count(x.s), audit);
    entries = outbox_ok(x.s, NULL);
    for (i = 0; i < json_array_size(entries); i++)
        CHECK_INT_EQ(jint(json_array_get(entries, i), "attempts"), 0);
    json_decref(entries);
    exchange_finish(&x);
}

/* ---- fs_hub_handle ---- */

TEST(test_hub_handle_of_malformed_json_is_json_error_and_changes_nothing) {
    exchange x;
    static const char *const broken[] = {
        "", "{", "[1,", "{'protocol':1}", "nul",
        "{\"protocol\":1,\"device_id\":\"dev-1\xff\",\"batch\":\"dev-1-b1\",\"schema_version\":1}",
    };
    size_t i;
    REQUIRE(exchange_start(&x));
    for (i = 0; i < sizeof broken / sizeof broken[0]; i++) HANDLE_REFUSED(x.h, broken[i], FS_ERR_JSON);
    HANDLE_REFUSED_SIGNED(x.h, x.key, truncated(x.request, strlen(x.request) / 2), FS_ERR_JSON);
    HANDLE_REFUSED_SIGNED(x.h, x.key, truncated(x.request, strlen(x.request) - 1), FS_ERR_JSON);
    exchange_finish(&x);
}

TEST(test_hub_handle_of_the_wrong_shape_is_arg_and_changes_nothing) {
    exchange x;
    static const char *const shapes[] = {"[]", "null", "7", "\"req\"", "{}"};
    size_t i;
    REQUIRE(exchange_start(&x));
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) HANDLE_REFUSED(x.h, shapes[i], FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "protocol", NULL), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "protocol", json_string("1")), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "protocol", json_integer(0)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "device_id", NULL), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "device_id", json_integer(1)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "device_id", json_string("bad id")), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "device_id", json_string("")), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "batch", NULL), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "batch", json_integer(1)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "schema_version", NULL), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "schema_version", json_string("1")), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "entries", json_pack("[i]", 5)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "entries", 0, "key", json_null()), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "entries", 0, "seq", json_string("1")),
                        FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "audit", json_pack("[i]", 5)), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "audit", 0, "audit_id", json_string("1")),
                        FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "audit", 1, "hash", json_null()), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "scope", json_pack("[s]", "task")), FS_ERR_ARG);
    exchange_finish(&x);
}

TEST(test_hub_handle_with_entries_or_audit_that_are_not_arrays_is_arg) {
    /* "entries": "x" is not "no entries": the request is refused, not
     * answered as a bare pull */
    exchange x;
    REQUIRE(exchange_start(&x));
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "entries", json_string("x")), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "entries", json_object()), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "audit", json_integer(5)), FS_ERR_ARG);
    exchange_finish(&x);
}

/* `request` as if device `device` sent it: its device_id and the signature
 * of its audit head (which names the device) made with `k` (free()). */
static char *sent_as(const test_key *k, const char *request, const char *device) {
    json_t *r = json_loads(request, 0, NULL);
    json_t *head = json_object_get(json_object_get(r, "auth"), "audit_head");
    char *text;
    if (head != NULL) {
        char *message = strf("fieldsync audit head\n%s\n%lld\n%s", device, jint(head, "audit_id"), jstr(head, "hash"));
        uint8_t sig[64];
        char hex[129];
        size_t i;
        CHECK(test_key_sign(k, message, strlen(message), sig) == 0);
        for (i = 0; i < 64; i++) snprintf(hex + 2 * i, 3, "%02x", sig[i]);
        json_object_set_new(head, "signature", json_string(hex));
        free(message);
    }
    json_object_set_new(r, "device_id", json_string(device));
    text = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    return text;
}

TEST(test_hub_handle_of_entries_of_another_device_is_arg_and_applies_nothing) {
    exchange x;
    json_t *stats;
    REQUIRE(exchange_start(&x));
    /* the exchange's own request was applied; a fresh hub sees only forgeries */
    fs_hub_close(x.h);
    x.h = open_hub("hub2.db", TASK_SCHEMA, NULL);
    REQUIRE(x.h != NULL);
    /* the attacker holds dev-1's key and has it enrolled as dev-2 as well:
     * the signature verifies, the decoder must still see the keys are not
     * dev-2's */
    REQUIRE(enroll(x.s, x.h, NULL) == 0);
    {
        char *enrollment = strf("{\"device_id\":\"dev-2\",\"public_key\":\"%s\"}", test_key_public(x.key));
        char *result = NULL;
        CHECK_OK(fs_hub_enroll(x.h, enrollment, &result));
        free(enrollment);
        fs_free(result);
    }
    HANDLE_REFUSED_SIGNED(x.h, x.key, sent_as(x.key, x.request, "dev-2"), FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "entries", 1, "key", json_string("dev-2-2")),
                        FS_ERR_ARG);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "entries", 1, "key", json_string("dev-10-2")),
                        FS_ERR_ARG);
    /* key and seq must agree */
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_item_member(x.request, "entries", 1, "seq", json_integer(7)),
                        FS_ERR_ARG);
    stats = hub_stats_ok(x.h);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 0);
    CHECK_INT_EQ(jint(stats, "audit_rows"), 0);
    CHECK_INT_EQ(jint(stats, "devices"), 0);
    json_decref(stats);
    /* the genuine request is still taken whole */
    fs_free(x.response);
    x.response = handle_ok(x.h, x.request);
    exchange_finish(&x);
}

TEST(test_hub_handle_of_a_scope_naming_unknown_types_or_fields_is_schema_error) {
    exchange x;
    REQUIRE(exchange_start(&x));
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "scope", json_pack("{s:{s:s}}", "order", "site", "A")),
                        FS_ERR_SCHEMA);
    HANDLE_REFUSED_SIGNED(x.h, x.key, with_member(x.request, "scope", json_pack("{s:{s:s}}", "task", "aisle", "A")),
                        FS_ERR_SCHEMA);
    exchange_finish(&x);
}

TEST(test_hub_handle_of_an_oversized_request_is_too_big) {
    exchange x;
    char *pad = repeat_char(' ', FS_MAX_MESSAGE_BYTES);
    char *big = strf("%s%s", pad, "{}");
    free(pad);
    REQUIRE(exchange_start(&x));
    HANDLE_REFUSED(x.h, big, FS_ERR_TOO_BIG);
    free(big);
    exchange_finish(&x);
}

/* ---- whole-request refusals ---- */

/* TASK_SCHEMA as version 2 that refuses clients below version 2. */
static char *task_schema_v2_min2(void) {
    const char *rest = TASK_SCHEMA + strlen("{\"version\":1,");
    return strf("{\"version\":2,\"min_client_version\":2,%s", rest);
}

TEST(test_sync_below_min_client_version_is_upgrade_required_and_keeps_the_outbox) {
    char *schema = task_schema_v2_min2();
    fs_hub *h = open_hub("hub.db", schema, NULL);
    fs_store *s = open_device("dev-1", NULL);
    store_snap snap;
    char *request, *response, *out = SENTINEL;
    json_t *r, *stats;
    int64_t wait = 5;
    free(schema);
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':2}")));
    snap_take(s, &snap);

    request = prepare_ok(s);
    REQUIRE(request != NULL);
    response = handle_ok(h, request); /* a refusal is still an answer: FS_OK */
    fs_free(request);
    REQUIRE(response != NULL);
    r = json_loads(response, 0, NULL);
    CHECK_STR_EQ(jstr(json_object_get(r, "error"), "code"), "upgrade_required");
    json_decref(r);

    CHECK_STATUS(fs_sync_receive(s, response, &out), FS_ERR_UPGRADE_REQUIRED);
    CHECK_ERROR_MESSAGE();
    CHECK(out == NULL);
    fs_free(response);
    CHECK_UNCHANGED(s, &snap);
    CHECK_INT_EQ(outbox_count(s), 2);
    stats = stats_ok(s);
    CHECK_STR_EQ(jstr(stats, "sync_state"), "upgrade_required");
    json_decref(stats);

    /* nothing more is sent, whatever the network does */
    out = SENTINEL;
    CHECK_OK(fs_sync_prepare(s, &out, &wait));
    CHECK(out == NULL);
    CHECK_INT_EQ(wait, -1);
    CHECK_OK(fs_sync_connectivity(s, 1));
    out = SENTINEL;
    wait = 5;
    CHECK_OK(fs_sync_prepare(s, &out, &wait));
    CHECK(out == NULL);
    CHECK_INT_EQ(wait, -1);
    /* not even after a restart with the same (old) schema */
    fs_store_close(s);
    s = open_device("dev-1", NULL);
    REQUIRE(s != NULL);
    out = SENTINEL;
    wait = 5;
    CHECK_OK(fs_sync_prepare(s, &out, &wait));
    CHECK(out == NULL);
    CHECK_INT_EQ(wait, -1);
    CHECK_INT_EQ(outbox_count(s), 2);

    stats = hub_stats_ok(h);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 0);
    CHECK_INT_EQ(jint(stats, "audit_rows"), 0);
    json_decref(stats);
    free_out(out);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_hub_refuses_a_newer_protocol_whole_and_the_device_keeps_its_outbox) {
    /* docs/PROTOCOL.md: a request with a newer protocol gets an
     * "error": {"code": "protocol_unsupported"} answer (FS_OK); the device
     * treats any refusal but upgrade_required as FS_ERR_CONFLICT */
    exchange x, y;
    hub_snap snap;
    char *request, *response = NULL, *out = SENTINEL;
    json_t *r;
    REQUIRE(exchange_start(&x));
    hub_snap_take(x.h, &snap);
    request = resigned(x.key, with_member(x.request, "protocol", json_integer(99)));
    CHECK_OK(fs_hub_handle(x.h, request, &response));
    free(request);
    REQUIRE(response != NULL);
    r = json_loads(response, 0, NULL);
    CHECK_STR_EQ(jstr(json_object_get(r, "error"), "code"), "protocol_unsupported");
    CHECK(json_object_get(r, "results") == NULL);
    json_decref(r);
    CHECK_HUB_UNCHANGED(x.h, &snap);
    /* The answer names the text it answers (request_hash): a store that
     * verifies believes it only for a request it sent, and the edited one it
     * did not send. */
    CHECK_STATUS(fs_sync_receive(x.s, response, &out), FS_ERR_AUTH);
    CHECK(out == NULL);
    fs_free(response);
    response = NULL;
    CHECK_INT_EQ(outbox_count(x.s), 2);
    exchange_finish(&x);
    /* A store that verifies nothing reads the refusal itself: any refusal but
     * upgrade_required is FS_ERR_CONFLICT, and the outbox is kept. */
    REQUIRE(exchange_start_unverified(&y));
    request = with_member(y.request, "protocol", json_integer(99));
    CHECK_OK(fs_hub_handle(y.h, request, &response));
    free(request);
    REQUIRE(response != NULL);
    out = SENTINEL;
    CHECK_STATUS(fs_sync_receive(y.s, response, &out), FS_ERR_CONFLICT);
    CHECK_ERROR_MESSAGE();
    CHECK(out == NULL);
    fs_free(response);
    CHECK_INT_EQ(outbox_count(y.s), 2);
    exchange_finish(&y);
}
