/* test_auth.c — issue 14's attacks through the C doors, with authentication
 * on: an impostor using another device's id, a modified, replayed or
 * reordered request, forged and replayed responses, reads and writes outside
 * the enrolled scope, a revoked and a rotated key, a second store holding an
 * enrolled key, a host signer that signs wrongly, a hub with auth off, and
 * the device-signed audit heads a hub operator cannot forge. Each attack is
 * refused with its own code, counted and logged at the hub, and changes
 * nothing; the genuine device's work is applied exactly once. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "testkey.h"

/* The code of a whole-request refusal in a response ("" if none; pooled). */
static const char *refusal_code(const char *response) {
    json_t *r = json_loads(response ? response : "", 0, NULL);
    const char *code = jstr(json_object_get(r, "error"), "code");
    const char *out = Q(code ? code : "");
    json_decref(r);
    return out;
}

/* The signature member that ends a signed text (an audit head inside a
 * request has one too). */
static char *final_signature(char *text) {
    char *at = NULL, *p = text;
    while ((p = strstr(p, ",\"signature\":")) != NULL) at = p++;
    return at;
}

/* The hub's answer to `request`, which must be a refusal with `code`. */
static void expect_refusal_at(const char *file, int line, fs_hub *h, const char *request, const char *code) {
    char *response = handle_ok_at(file, line, h, request);
    const char *got;
    if (response == NULL) return;
    got = refusal_code(response);
    if (strcmp(got, code) != 0)
        fs_test_fail(file, line, "the hub answered refusal \"%s\", expected \"%s\": %.300s", got, code, response);
    fs_free(response);
}
#define EXPECT_REFUSAL(h, request, code) expect_refusal_at(__FILE__, __LINE__, (h), (request), (code))

/* How many rows of fs_hub_devices "refusals" name `device` with `code`. */
static int refusals_logged(fs_hub *h, const char *device, const char *code) {
    char *text = NULL;
    json_t *v, *list;
    size_t i;
    int n = 0;
    if (fs_hub_devices(h, &text) != FS_OK) {
        fs_test_fail(__FILE__, __LINE__, "fs_hub_devices: %s", fs_last_error());
        return -1;
    }
    v = take_json(text);
    list = json_object_get(v, "refusals");
    for (i = 0; i < json_array_size(list); i++) {
        json_t *row = json_array_get(list, i);
        const char *d = jstr(row, "device_id"), *c = jstr(row, "code");
        if ((device == NULL || (d != NULL && strcmp(d, device) == 0)) && c != NULL && strcmp(c, code) == 0) n++;
    }
    json_decref(v);
    return n;
}

/* The registry's entry of `device` (json_decref it), or NULL. */
static json_t *device_entry(fs_hub *h, const char *device) {
    char *text = NULL;
    json_t *v, *list, *found = NULL;
    size_t i;
    if (fs_hub_devices(h, &text) != FS_OK) return NULL;
    v = take_json(text);
    list = json_object_get(v, "devices");
    for (i = 0; i < json_array_size(list); i++)
        if (strcmp(jstr(json_array_get(list, i), "device_id"), device) == 0) {
            found = json_array_get(list, i);
            json_incref(found);
        }
    json_decref(v);
    return found;
}

static long long hub_stat(fs_hub *h, const char *key) {
    json_t *st = hub_stats_ok(h);
    long long v = jint(st, key);
    json_decref(st);
    return v;
}

static long long hub_picked(fs_hub *h, const char *id) {
    json_t *rows = hub_query_ok(h, "{\"type\":\"task\"}");
    long long v = -1;
    size_t i;
    for (i = 0; i < json_array_size(rows); i++)
        if (strcmp(jstr(json_array_get(rows, i), "id"), id) == 0) v = jint(json_array_get(rows, i), "picked");
    json_decref(rows);
    return v;
}

static char *hub_audit_text(fs_hub *h) {
    json_t *rows = hub_audit_ok(h, NULL);
    char *text = jdump(rows);
    json_decref(rows);
    return text;
}

/* ---- impersonation ---- */

TEST(test_auth_an_impostor_using_an_enrolled_devices_id_is_refused_and_the_real_work_applies) {
    /* issue 14: "tablet-7-4" sending `inc picked -100` before the real
     * tablet syncs made the hub answer the tablet's own seqs "duplicate" */
    fs_hub *h = open_task_hub();
    fs_store *tablet = open_device("tablet-7-4", NULL);
    fs_store *impostor = open_store("impostor.db", TASK_SCHEMA, "{\"device_id\":\"tablet-7-4\"}");
    fs_store *ghost = open_store("ghost.db", TASK_SCHEMA, "{\"device_id\":\"tablet-9\"}");
    char *request, *response, *records, *audit, *out = SENTINEL;
    sync_totals t;
    int i;
    REQUIRE(h != NULL && tablet != NULL && impostor != NULL && ghost != NULL);
    REQUIRE(enroll(tablet, h, NULL) == 0);
    create_task(tablet, "T-1", "open");
    CHECK_INT_EQ(sync_now(tablet, h).applied, 1);
    /* the real work, offline: seqs 2 and 3 */
    json_decref(apply_ok(tablet, act("T-1", "'inc':{'picked':2}")));
    json_decref(apply_ok(tablet, act("T-1", "'inc':{'picked':3}")));

    /* the impostor's seqs 1 to 3 carry the tablet's keys */
    for (i = 0; i < 3; i++) json_decref(apply_ok(impostor, act("T-1", "'set':{'status':'open'},'inc':{'picked':-100}")));
    json_decref(apply_ok(ghost, act("T-1", "'set':{'status':'open'},'inc':{'picked':-100}")));
    records = hub_records(h);
    audit = hub_audit_text(h);
    request = prepare_ok(impostor);
    REQUIRE(request != NULL);
    response = handle_ok(h, request);
    fs_free(request);
    REQUIRE(response != NULL);
    CHECK_STR_EQ(refusal_code(response), "bad_signature");
    /* the impostor has no hub key pinned, and the refusal keeps its outbox */
    CHECK_STATUS(fs_sync_receive(impostor, response, &out), FS_ERR_AUTH);
    CHECK(out == NULL);
    fs_free(response);
    CHECK_INT_EQ(outbox_count(impostor), 3);
    request = prepare_ok(ghost);
    REQUIRE(request != NULL);
    EXPECT_REFUSAL(h, request, "unknown_device");
    fs_free(request);
    {
        char *now = hub_records(h), *now_audit = hub_audit_text(h);
        CHECK_STR_EQ(now, records);
        CHECK_STR_EQ(now_audit, audit);
        free(now);
        free(now_audit);
    }
    free(records);
    free(audit);
    CHECK_INT_EQ(hub_stat(h, "auth_refused_bad_signature"), 1);
    CHECK_INT_EQ(hub_stat(h, "auth_refused_unknown_device"), 1);
    CHECK_INT_EQ(hub_stat(h, "auth_refused"), 2);
    CHECK_INT_EQ(refusals_logged(h, "tablet-7-4", "bad_signature"), 1);
    CHECK_INT_EQ(refusals_logged(h, "tablet-9", "unknown_device"), 1);

    /* the real tablet's actions apply, once, none taken for a duplicate */
    t = sync_now(tablet, h);
    CHECK_INT_EQ(t.applied, 2);
    CHECK_INT_EQ(t.duplicate, 0);
    CHECK_INT_EQ(outbox_count(tablet), 0);
    CHECK_INT_EQ(hub_picked(h, "T-1"), 5);
    CHECK_SAME_RECORDS(tablet, h);
    fs_store_close(tablet);
    fs_store_close(impostor);
    fs_store_close(ghost);
    fs_hub_close(h);
}

/* ---- requests: modified, replayed, reordered ---- */

TEST(test_auth_a_signed_request_with_one_byte_changed_is_refused_and_changes_nothing) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *request, *edited, *digit, *records, *audit;
    size_t n;
    json_t *summary;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':2}")));
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    records = hub_records(h);
    audit = hub_audit_text(h);

    /* the increment 2 made 9 */
    edited = strf("%s", request);
    digit = strstr(edited, "\"picked\":2");
    REQUIRE(digit != NULL);
    digit[strlen("\"picked\":")] = '9';
    EXPECT_REFUSAL(h, edited, "bad_signature");
    /* one hex digit of the signature */
    strcpy(edited, request);
    n = strlen(edited);
    REQUIRE(n > 3);
    edited[n - 3] = edited[n - 3] == '0' ? '1' : '0';
    EXPECT_REFUSAL(h, edited, "bad_signature");
    /* the signature taken off */
    strcpy(edited, request);
    strcpy(final_signature(edited), "}");
    EXPECT_REFUSAL(h, edited, "unsigned");
    free(edited);
    {
        char *now = hub_records(h), *now_audit = hub_audit_text(h);
        CHECK_STR_EQ(now, records);
        CHECK_STR_EQ(now_audit, audit);
        free(now);
        free(now_audit);
    }
    free(records);
    free(audit);
    CHECK_INT_EQ(hub_stat(h, "entries_applied"), 0);
    CHECK_INT_EQ(hub_stat(h, "auth_refused_bad_signature"), 2);
    CHECK_INT_EQ(hub_stat(h, "auth_refused_unsigned"), 1);
    CHECK_INT_EQ(refusals_logged(h, "dev-1", "bad_signature"), 2);

    /* the request as signed is taken */
    {
        char *response = handle_ok(h, request);
        summary = receive_ok(s, response);
        fs_free(response);
        CHECK_INT_EQ(jint(summary, "applied"), 2);
        json_decref(summary);
    }
    fs_free(request);
    CHECK_INT_EQ(hub_picked(h, "T-1"), 2);
    fs_store_close(s);
    fs_hub_close(h);
}

/* Every result of a response has status `status`. */
static void all_results_are_at(const char *file, int line, const char *response, const char *status) {
    json_t *r = json_loads(response, 0, NULL);
    json_t *results = json_object_get(r, "results");
    size_t i;
    if (json_array_size(results) == 0) fs_test_fail(file, line, "no results in %.300s", response);
    for (i = 0; i < json_array_size(results); i++)
        if (jstr(json_array_get(results, i), "status") == NULL ||
            strcmp(jstr(json_array_get(results, i), "status"), status) != 0)
            fs_test_fail(file, line, "result %u is \"%s\", expected \"%s\"", (unsigned)i,
                         jstr(json_array_get(results, i), "status"), status);
    json_decref(r);
}
#define ALL_RESULTS(response, status) all_results_are_at(__FILE__, __LINE__, (response), (status))

TEST(test_auth_a_replayed_request_is_answered_duplicate_and_never_applied_twice) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *request, *response, *replay;
    sync_totals t;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':2}")));
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    response = handle_ok(h, request);
    json_decref(receive_ok(s, response));
    fs_free(response);

    /* an eavesdropper replays it: the signature verifies, nothing applies again */
    replay = handle_ok(h, request);
    REQUIRE(replay != NULL);
    ALL_RESULTS(replay, "duplicate");
    fs_free(replay);
    CHECK_INT_EQ(hub_picked(h, "T-1"), 2);

    /* the device's next action is not taken for that replay's duplicate */
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':3}")));
    replay = handle_ok(h, request);
    REQUIRE(replay != NULL);
    ALL_RESULTS(replay, "duplicate");
    fs_free(replay);
    t = sync_now(s, h);
    CHECK_INT_EQ(t.applied, 1);
    CHECK_INT_EQ(t.duplicate, 0);
    replay = handle_ok(h, request);
    fs_free(replay);
    fs_free(request);
    CHECK_INT_EQ(hub_picked(h, "T-1"), 5);
    CHECK_INT_EQ(hub_stat(h, "entries_applied"), 3);
    CHECK_INT_EQ(outbox_count(s), 0);
    CHECK_SAME_RECORDS(s, h);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_auth_requests_delivered_out_of_order_apply_each_action_once) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *first, *second, *answer_first, *answer_second, *out = NULL;
    fs_status st;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    first = prepare_ok(s);
    REQUIRE(first != NULL);
    CHECK_OK(fs_sync_fail(s, "timeout")); /* delayed, not lost: the attacker holds it */
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':2}")));
    CHECK_OK(fs_sync_connectivity(s, 1));
    second = prepare_ok(s);
    REQUIRE(second != NULL);
    /* the later request first, then the earlier one */
    answer_second = handle_ok(h, second);
    answer_first = handle_ok(h, first);
    REQUIRE(answer_second != NULL && answer_first != NULL);
    ALL_RESULTS(answer_first, "duplicate");
    json_decref(receive_ok(s, answer_second));
    /* the stale answer arriving last: harmless either way */
    st = fs_sync_receive(s, answer_first, &out);
    CHECK(st == FS_OK || st == FS_ERR_ARG);
    fs_free(out);
    fs_free(first);
    fs_free(second);
    fs_free(answer_first);
    fs_free(answer_second);
    (void)sync_now(s, h);
    CHECK_INT_EQ(outbox_count(s), 0);
    CHECK_INT_EQ(hub_picked(h, "T-1"), 3);
    CHECK_INT_EQ(hub_stat(h, "entries_applied"), 3);
    CHECK_SAME_RECORDS(s, h);
    fs_store_close(s);
    fs_hub_close(h);
}

/* ---- responses: forged and replayed ---- */

/* A response to `request` that says "applied" for every entry (free()). */
static char *applied_for_every_key(const char *request) {
    json_t *req = json_loads(request, 0, NULL);
    json_t *entries = json_object_get(req, "entries");
    json_t *results = json_array();
    json_t *resp;
    char *text;
    size_t i;
    for (i = 0; i < json_array_size(entries); i++)
        json_array_append_new(results, json_pack("{s:s,s:s,s:I}", "key", jstr(json_array_get(entries, i), "key"),
                                                 "status", "applied", "server_seq", (json_int_t)(i + 1)));
    resp = json_pack("{s:I,s:s,s:s,s:o,s:[],s:I,s:b,s:I}", "protocol", (json_int_t)jint(req, "protocol"),
                     "device_id", jstr(req, "device_id"), "batch", jstr(req, "batch"), "results", results,
                     "changes", "cursor", (json_int_t)json_array_size(entries), "more", 0, "server_time",
                     (json_int_t)1764075000000LL);
    text = json_dumps(resp, JSON_COMPACT);
    json_decref(resp);
    json_decref(req);
    return text;
}

TEST(test_auth_a_forged_response_is_refused_auth_and_the_outbox_is_kept) {
    fs_hub *h = open_task_hub();
    fs_hub *other = open_hub("other.db", TASK_SCHEMA, NULL);
    fs_store *s = open_device("dev-1", NULL);
    test_key *k = test_key_new();
    char *request, *genuine, *stripped, *from_other;
    json_t *stats;
    REQUIRE(h != NULL && other != NULL && s != NULL && k != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':2}")));
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    genuine = handle_ok(h, request);
    REQUIRE(genuine != NULL);

    /* "applied" for every key, unsigned and signed with a key not pinned */
    RECEIVE_REFUSED_FREE(s, applied_for_every_key(request), FS_ERR_AUTH);
    RECEIVE_REFUSED_FREE(s, resigned(k, applied_for_every_key(request)), FS_ERR_AUTH);
    /* the hub's own answer, its signature stripped or replaced */
    stripped = strf("%s", genuine);
    strcpy(final_signature(stripped), "}");
    RECEIVE_REFUSED(s, stripped, FS_ERR_AUTH);
    RECEIVE_REFUSED_FREE(s, resigned(k, stripped), FS_ERR_AUTH);
    /* a real hub, but not this device's */
    {
        json_t *st = stats_ok(s);
        char *enrollment = strf("{\"device_id\":\"dev-1\",\"public_key\":\"%s\"}", jstr(st, "public_key"));
        char *result = NULL;
        json_decref(st);
        REQUIRE_OK(fs_hub_enroll(other, enrollment, &result));
        free(enrollment);
        fs_free(result);
    }
    from_other = handle_ok(other, request);
    REQUIRE(from_other != NULL);
    RECEIVE_REFUSED(s, from_other, FS_ERR_AUTH);
    fs_free(from_other);
    CHECK_INT_EQ(outbox_count(s), 2);
    stats = stats_ok(s);
    CHECK_INT_EQ(jint(stats, "outbox_pending") + jint(stats, "outbox_inflight"), 2);
    json_decref(stats);

    /* the genuine answer is still taken */
    json_decref(receive_ok(s, genuine));
    CHECK_INT_EQ(outbox_count(s), 0);
    fs_free(genuine);
    fs_free(request);
    test_key_free(k);
    fs_store_close(s);
    fs_hub_close(h);
    fs_hub_close(other);
}

TEST(test_auth_a_replayed_old_response_changes_nothing) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    fs_store *b = open_device("dev-b", NULL);
    char *request, *old, *out = NULL;
    store_snap snap;
    json_t *rec;
    fs_status st;
    REQUIRE(h != NULL && s != NULL && b != NULL);
    REQUIRE(enroll(s, h, NULL) == 0 && enroll(b, h, NULL) == 0);
    create_task(s, "T-1", "open");
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    old = handle_ok(h, request);
    fs_free(request);
    REQUIRE(old != NULL);
    json_decref(receive_ok(s, old));
    /* the record moves on at the hub, and the device learns it */
    (void)sync_now(b, h);
    json_decref(apply_ok(b, act("T-1", "'set':{'status':'done'}")));
    (void)sync_now(b, h);
    (void)sync_now(s, h);
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    request = prepare_ok(s);
    REQUIRE(request != NULL);

    /* the old answer, still signed by the hub, played again */
    snap_take(s, &snap);
    st = fs_sync_receive(s, old, &out);
    CHECK(st == FS_OK || st == FS_ERR_ARG);
    fs_free(out);
    CHECK_UNCHANGED(s, &snap);
    fs_free(old);
    rec = get_ok(s, "task", "T-1");
    CHECK_STR_EQ(jstr(rec, "status"), "done");
    json_decref(rec);

    old = handle_ok(h, request);
    json_decref(receive_ok(s, old));
    fs_free(old);
    fs_free(request);
    CHECK_INT_EQ(outbox_count(s), 0);
    CHECK_INT_EQ(hub_picked(h, "T-1"), 1);
    CHECK_SAME_RECORDS(s, h);
    fs_store_close(s);
    fs_store_close(b);
    fs_hub_close(h);
}

/* ---- scope ---- */

/* A hub with T-1 at WH-3 and T-2 at WH-9, written by an unscoped device. */
static fs_hub *hub_with_two_sites(void) {
    fs_hub *h = open_task_hub();
    fs_store *w = open_device("dev-w", NULL);
    if (h == NULL || w == NULL) return h;
    json_decref(apply_ok(w, act("T-1", "'set':{'status':'open','site':'WH-3'}")));
    json_decref(apply_ok(w, act("T-2", "'set':{'status':'open','site':'WH-9'}")));
    CHECK_INT_EQ(sync_now(w, h).applied, 2);
    fs_store_close(w);
    return h;
}

TEST(test_auth_a_device_reads_only_its_enrolled_scope_through_pull_and_fetch) {
    fs_hub *h = hub_with_two_sites();
    /* dev-c asks for every record; dev-d asks for WH-9: the hub's scope wins */
    fs_store *c = open_device("dev-c", NULL);
    fs_store *d = open_device("dev-d", "\"scope\":{\"task\":{\"site\":\"WH-9\"}}");
    char *request = NULL, *response;
    json_t *rows, *r;
    size_t i;
    int t2_fetched = 0, t2_missing = 0, t1_fetched = 0;
    REQUIRE(h != NULL && c != NULL && d != NULL);
    REQUIRE(enroll(c, h, "\"scope\":{\"task\":{\"site\":\"WH-3\"}}") == 0);
    REQUIRE(enroll(d, h, "\"scope\":{\"task\":{\"site\":\"WH-3\"}}") == 0);
    CHECK_INT_EQ(sync_now(c, h).pulled, 1);
    rows = query_ok(c, "{\"type\":\"task\"}");
    CHECK_INT_EQ(json_array_size(rows), 1);
    CHECK_STR_EQ(jstr(json_array_get(rows, 0), "id"), "T-1");
    json_decref(rows);
    CHECK_INT_EQ(sync_now(d, h).pulled, 0);
    rows = query_ok(d, "{\"type\":\"task\"}");
    CHECK_INT_EQ(json_array_size(rows), 0);
    json_decref(rows);

    REQUIRE_OK(fs_fetch_request(c, Q("[{'type':'task','id':'T-2'},{'type':'task','id':'T-1'}]"), &request));
    response = handle_ok(h, request);
    fs_free(request);
    REQUIRE(response != NULL);
    r = json_loads(response, 0, NULL);
    for (i = 0; i < json_array_size(json_object_get(r, "fetched")); i++) {
        const char *id = jstr(json_array_get(json_object_get(r, "fetched"), i), "id");
        if (id && strcmp(id, "T-2") == 0) t2_fetched++;
        if (id && strcmp(id, "T-1") == 0) t1_fetched++;
    }
    for (i = 0; i < json_array_size(json_object_get(r, "missing")); i++) {
        const char *id = jstr(json_array_get(json_object_get(r, "missing"), i), "id");
        if (id && strcmp(id, "T-2") == 0) t2_missing++;
    }
    json_decref(r);
    CHECK_INT_EQ(t2_fetched, 0);
    CHECK_INT_EQ(t2_missing, 1);
    CHECK_INT_EQ(t1_fetched, 1);
    json_decref(receive_ok(c, response));
    fs_free(response);
    request = SENTINEL;
    CHECK_STATUS(fs_store_get(c, "task", "T-2", &request), FS_ERR_NOT_FOUND);
    CHECK(request == NULL);
    fs_store_close(c);
    fs_store_close(d);
    fs_hub_close(h);
}

/* The outbox entries of `s` rejected with `reason`. */
static long rejected_for(fs_store *s, const char *reason) {
    json_t *rows = outbox_ok(s, "{\"state\":\"rejected\"}");
    long n = 0;
    size_t i;
    for (i = 0; i < json_array_size(rows); i++)
        if (jstr(json_array_get(rows, i), "reason") && strcmp(jstr(json_array_get(rows, i), "reason"), reason) == 0)
            n++;
    json_decref(rows);
    return n;
}

TEST(test_auth_writes_outside_the_scope_and_of_a_read_only_device_are_rejected_out_of_scope) {
    fs_hub *h = hub_with_two_sites();
    fs_store *c = open_device("dev-c", NULL);
    fs_store *r = open_device("dev-r", NULL);
    char *records;
    sync_totals t;
    REQUIRE(h != NULL && c != NULL && r != NULL);
    REQUIRE(enroll(c, h, "\"scope\":{\"task\":{\"site\":\"WH-3\"}}") == 0);
    REQUIRE(enroll(r, h, "\"write\":false") == 0);
    (void)sync_now(c, h);
    (void)sync_now(r, h);
    records = hub_records(h);

    json_decref(apply_ok(c, act("T-1", "'set':{'site':'WH-9'}")));                    /* moves it out */
    json_decref(apply_ok(c, act("T-9", "'set':{'status':'open','site':'WH-9'}")));    /* a new one outside */
    json_decref(apply_ok(c, act("T-2", "'set':{'status':'closed','site':'WH-3'}"))); /* one it cannot see */
    t = sync_now(c, h);
    CHECK_INT_EQ(t.rejected, 3);
    CHECK_INT_EQ(rejected_for(c, "out_of_scope"), 3);
    json_decref(apply_ok(r, act("T-1", "'inc':{'picked':1}")));
    t = sync_now(r, h);
    CHECK_INT_EQ(t.rejected, 1);
    CHECK_INT_EQ(rejected_for(r, "out_of_scope"), 1);
    {
        char *now = hub_records(h);
        CHECK_STR_EQ(now, records);
        free(now);
    }
    free(records);
    CHECK_INT_EQ(hub_stat(h, "entries_out_of_scope"), 4);
    CHECK(refusals_logged(h, "dev-c", "out_of_scope") >= 1);
    CHECK(refusals_logged(h, "dev-r", "out_of_scope") >= 1);

    /* inside its scope dev-c still writes */
    json_decref(apply_ok(c, act("T-1", "'inc':{'picked':4}")));
    CHECK_INT_EQ(sync_now(c, h).applied, 1);
    CHECK_INT_EQ(hub_picked(h, "T-1"), 4);
    fs_store_close(c);
    fs_store_close(r);
    fs_hub_close(h);
}

/* ---- revoked and rotated keys ---- */

TEST(test_auth_a_revoked_device_is_refused_and_keeps_its_outbox) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *request, *response, *out = SENTINEL, *records, *audit_before;
    json_t *entry, *kept;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    (void)sync_now(s, h);
    CHECK_OK(fs_hub_revoke(h, "dev-1"));
    CHECK_STATUS(fs_hub_revoke(h, "dev-nobody"), FS_ERR_NOT_FOUND);
    CHECK_ERROR_MESSAGE();

    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    response = handle_ok(h, request);
    fs_free(request);
    REQUIRE(response != NULL);
    CHECK_STR_EQ(refusal_code(response), "revoked");
    records = store_records(s);
    {
        json_t *audit = audit_ok(s, NULL);
        audit_before = jdump(audit);
        json_decref(audit);
    }
    CHECK_STATUS(fs_sync_receive(s, response, &out), FS_ERR_AUTH);
    CHECK(out == NULL);
    if (strstr(fs_last_error(), "revoked") == NULL)
        fs_test_fail(__FILE__, __LINE__, "the device's message \"%s\" does not say revoked", fs_last_error());
    fs_free(response);
    /* kept, not counted as an attempt: back to pending for when it is enrolled again */
    kept = outbox_ok(s, NULL);
    REQUIRE(kept != NULL && json_array_size(kept) == 1);
    CHECK_STR_EQ(jstr(json_array_get(kept, 0), "key"), "dev-1-2");
    CHECK_STR_EQ(jstr(json_array_get(kept, 0), "state"), "pending");
    CHECK_INT_EQ(jint(json_array_get(kept, 0), "attempts"), 0);
    json_decref(kept);
    {
        char *now = store_records(s);
        json_t *audit = audit_ok(s, NULL);
        char *now_audit = jdump(audit);
        CHECK_STR_EQ(now, records);
        CHECK_STR_EQ(now_audit, audit_before);
        free(now);
        free(now_audit);
        free(records);
        free(audit_before);
        json_decref(audit);
    }
    CHECK_INT_EQ(hub_picked(h, "T-1"), 0);
    CHECK_INT_EQ(hub_stat(h, "auth_refused_revoked"), 1);
    CHECK_INT_EQ(hub_stat(h, "devices_revoked"), 1);
    CHECK_INT_EQ(refusals_logged(h, "dev-1", "revoked"), 1);
    entry = device_entry(h, "dev-1");
    CHECK_STR_EQ(jstr(entry, "state"), "revoked");
    json_decref(entry);

    /* enrolled again, it delivers what it kept */
    REQUIRE(enroll(s, h, NULL) == 0);
    CHECK_INT_EQ(sync_now(s, h).applied, 1);
    CHECK_INT_EQ(hub_picked(h, "T-1"), 1);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_auth_a_rotated_key_is_refused_until_enrolled_and_the_old_key_stays_refused) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *old_request, *request, *public_key = NULL, *out = SENTINEL, *response;
    json_t *stats, *entry;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    (void)sync_now(s, h);
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    old_request = prepare_ok(s);
    REQUIRE(old_request != NULL);
    CHECK_OK(fs_sync_fail(s, "timeout"));

    REQUIRE_OK(fs_store_rotate_key(s, &public_key));
    REQUIRE(public_key != NULL && strlen(public_key) == 64);
    stats = stats_ok(s);
    CHECK_STR_EQ(jstr(stats, "public_key"), public_key);
    json_decref(stats);
    CHECK_OK(fs_sync_connectivity(s, 1));
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    response = handle_ok(h, request);
    fs_free(request);
    CHECK_STR_EQ(refusal_code(response), "bad_signature");
    CHECK_STATUS(fs_sync_receive(s, response, &out), FS_ERR_AUTH);
    fs_free(response);
    CHECK_INT_EQ(outbox_count(s), 1);
    CHECK_INT_EQ(hub_picked(h, "T-1"), 0);

    /* the operator enrolls the new key: a rotation */
    REQUIRE(enroll(s, h, NULL) == 0);
    entry = device_entry(h, "dev-1");
    CHECK_STR_EQ(jstr(entry, "public_key"), public_key);
    CHECK_INT_EQ(json_array_size(json_object_get(entry, "keys")), 2);
    json_decref(entry);
    CHECK_OK(fs_sync_fail(s, "refused"));
    CHECK_INT_EQ(sync_now(s, h).applied, 1);
    CHECK_INT_EQ(hub_picked(h, "T-1"), 1);
    /* what the old key signed is refused from now on */
    EXPECT_REFUSAL(h, old_request, "bad_signature");
    CHECK_INT_EQ(hub_picked(h, "T-1"), 1);
    fs_free(old_request);
    fs_free(public_key);
    fs_store_close(s);
    fs_hub_close(h);
}

/* ---- a second store with an enrolled key ---- */

TEST(test_auth_a_second_store_with_the_enrolled_key_is_refused_instance_mismatch) {
    /* the key leaves the device (copied into another store through a host
     * signer): the signature verifies, the store instance does not */
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("dev-1", NULL);
    fs_store *copy = open_store("copy.db", TASK_SCHEMA, "{\"device_id\":\"dev-1\"}");
    test_key *k;
    char *request;
    REQUIRE(h != NULL && a != NULL && copy != NULL);
    k = own_device_key(a, h, NULL);
    REQUIRE(k != NULL);
    create_task(a, "T-1", "open");
    CHECK_INT_EQ(sync_now(a, h).applied, 1);

    REQUIRE_OK(fs_store_set_signer(copy, test_key_public(k), test_key_signer, k));
    json_decref(apply_ok(copy, act("T-1", "'set':{'status':'open'},'inc':{'picked':-100}")));
    json_decref(apply_ok(copy, act("T-1", "'inc':{'picked':-100}")));
    request = prepare_ok(copy);
    REQUIRE(request != NULL);
    EXPECT_REFUSAL(h, request, "instance_mismatch");
    fs_free(request);
    CHECK_INT_EQ(hub_stat(h, "auth_refused_instance_mismatch"), 1);
    CHECK_INT_EQ(refusals_logged(h, "dev-1", "instance_mismatch"), 1);

    json_decref(apply_ok(a, act("T-1", "'inc':{'picked':2}")));
    CHECK_INT_EQ(sync_now(a, h).applied, 1);
    CHECK_INT_EQ(hub_picked(h, "T-1"), 2);
    fs_store_close(a);
    fs_store_close(copy);
    fs_hub_close(h);
    test_key_free(k);
}

/* ---- a host signer ---- */

static fs_status wrong_signer(void *ctx, const uint8_t *message, size_t length, uint8_t signature[64]) {
    fs_status st = test_key_signer(ctx, message, length, signature);
    signature[10] ^= 0x40;
    return st;
}

static fs_status failing_signer(void *ctx, const uint8_t *message, size_t length, uint8_t signature[64]) {
    (void)ctx;
    (void)message;
    (void)length;
    memset(signature, 0, 64);
    return FS_ERR_IO;
}

TEST(test_auth_a_host_signer_that_signs_wrongly_fails_the_call_and_changes_nothing) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    test_key *k = test_key_new();
    char *request = SENTINEL;
    int64_t wait = -2;
    store_snap snap;
    json_t *stats;
    REQUIRE(h != NULL && s != NULL && k != NULL);
    CHECK_STATUS(fs_store_set_signer(s, "not hex", test_key_signer, k), FS_ERR_ARG);
    REQUIRE_OK(fs_store_set_signer(s, test_key_public(k), wrong_signer, k));
    stats = stats_ok(s);
    CHECK_STR_EQ(jstr(stats, "signer"), "host");
    CHECK_STR_EQ(jstr(stats, "public_key"), test_key_public(k));
    json_decref(stats);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");

    snap_take(s, &snap);
    CHECK_STATUS(fs_sync_prepare(s, &request, &wait), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    CHECK(request == NULL);
    CHECK_UNCHANGED(s, &snap);
    request = SENTINEL;
    CHECK_STATUS(fs_fetch_request(s, Q("[{'type':'task','id':'T-9'}]"), &request), FS_ERR_ARG);
    CHECK(request == NULL);
    REQUIRE_OK(fs_store_set_signer(s, test_key_public(k), failing_signer, k));
    snap_take(s, &snap);
    request = SENTINEL;
    CHECK_STATUS(fs_sync_prepare(s, &request, &wait), FS_ERR_ARG);
    CHECK(request == NULL);
    CHECK_UNCHANGED(s, &snap);
    CHECK_INT_EQ(hub_stat(h, "entries_applied"), 0);

    /* a signer that signs right: the device syncs */
    REQUIRE_OK(fs_store_set_signer(s, test_key_public(k), test_key_signer, k));
    CHECK_INT_EQ(sync_now(s, h).applied, 1);
    CHECK_SAME_RECORDS(s, h);
    fs_store_close(s);
    fs_hub_close(h);
    test_key_free(k);
}

/* ---- a hub with authentication off ---- */

TEST(test_auth_a_hub_with_auth_off_says_so_in_stats_and_logs_it_at_every_open) {
    fs_hub *h = open_hub("hub.db", TASK_SCHEMA, "{\"auth\":\"off\"}");
    fs_hub *on = open_hub("on.db", TASK_SCHEMA, NULL);
    fs_store *s = open_device("dev-1", "\"auth\":\"off\"");
    char *request, *response;
    json_t *stats, *summary;
    REQUIRE(h != NULL && on != NULL && s != NULL);
    stats = hub_stats_ok(h);
    CHECK_STR_EQ(jstr(stats, "auth"), "off");
    json_decref(stats);
    stats = hub_stats_ok(on);
    CHECK_STR_EQ(jstr(stats, "auth"), "on");
    json_decref(stats);
    CHECK_INT_EQ(refusals_logged(h, NULL, "auth_off"), 1);
    CHECK_INT_EQ(refusals_logged(on, NULL, "auth_off"), 0);
    stats = stats_ok(s);
    CHECK_STR_EQ(jstr(stats, "auth"), "off");
    json_decref(stats);

    /* it handles a device nobody enrolled */
    create_task(s, "T-1", "open");
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    response = handle_ok(h, request);
    fs_free(request);
    summary = receive_ok(s, response);
    fs_free(response);
    CHECK_INT_EQ(jint(summary, "applied"), 1);
    json_decref(summary);
    fs_hub_close(h);
    h = open_hub("hub.db", TASK_SCHEMA, "{\"auth\":\"off\"}");
    REQUIRE(h != NULL);
    CHECK_INT_EQ(refusals_logged(h, NULL, "auth_off"), 2);
    fs_store_close(s);
    fs_hub_close(h);
    fs_hub_close(on);
}

/* ---- the non-repudiable audit ---- */

TEST(test_auth_audit_heads_verify_with_the_device_key_and_a_tampered_row_is_caught) {
    /* docs/AUDIT.md: a verifier holding only the device's public key checks
     * the chain and the device-signed heads the hub stored */
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    json_t *stats, *rows;
    char public_key[65];
    int heads = 0;
    long long last_head = 0;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    (void)sync_now(s, h);
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':2}")));
    json_decref(apply_ok(s, act("T-1", "'set':{'status':'done'}")));
    (void)sync_now(s, h);
    stats = stats_ok(s);
    snprintf(public_key, sizeof public_key, "%s", jstr(stats, "public_key"));
    json_decref(stats);
    rows = hub_audit_ok(h, "{\"device_id\":\"dev-1\"}");
    REQUIRE(rows != NULL && json_array_size(rows) == 4);
    CHECK_INT_EQ(verify_audit_chain(rows), 0);

    /* what a verifier holding only the device's public key checks */
    REQUIRE(sqlite3_open_v2(test_path("hub.db"), &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_prepare_v2(db, "SELECT device, audit_id, hash, public_key, signature FROM fs_audit_heads "
                                   "ORDER BY audit_id", -1, &q, NULL) == SQLITE_OK);
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *device = (const char *)sqlite3_column_text(q, 0);
        long long audit_id = sqlite3_column_int64(q, 1);
        const char *hash = (const char *)sqlite3_column_text(q, 2);
        const char *key = (const char *)sqlite3_column_text(q, 3);
        const char *signature = (const char *)sqlite3_column_text(q, 4);
        char *message = strf("fieldsync audit head\n%s\n%lld\n%s", device, audit_id, hash);
        json_t *row = json_array_get(rows, (size_t)(audit_id - 1));
        heads++;
        last_head = audit_id;
        CHECK_STR_EQ(device, "dev-1");
        CHECK_STR_EQ(key, public_key);
        if (!ed25519_verifies(public_key, message, strlen(message), signature))
            fs_test_fail(__FILE__, __LINE__, "the head of audit row %lld does not verify", audit_id);
        /* a head vouches for the row the hub holds */
        CHECK_STR_EQ(jstr(row, "hash"), hash);
        /* and says nothing else */
        message[strlen(message) - 1] ^= 1;
        CHECK(!ed25519_verifies(public_key, message, strlen(message), signature));
        free(message);
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    CHECK_INT_EQ(heads, 2); /* one per request that carried audit rows */
    CHECK_INT_EQ(last_head, 4);
    CHECK_INT_EQ(hub_stat(h, "audit_heads"), 2);
    json_decref(rows);
    fs_hub_close(h);

    /* the operator edits one byte of a stored row: the chain breaks */
    REQUIRE(sqlite3_open(test_path("hub.db"), &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE fs_hub_audit SET actor = 'op-2' WHERE device = 'dev-1' AND audit_id = 2", NULL,
                       NULL, NULL) == SQLITE_OK);
    CHECK_INT_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
    h = open_task_hub();
    REQUIRE(h != NULL);
    rows = hub_audit_ok(h, "{\"device_id\":\"dev-1\"}");
    REQUIRE(rows != NULL);
    CHECK_STR_EQ(jstr(json_array_get(rows, 1), "actor"), "op-2");
    CHECK(audit_chain_problems(rows) > 0);
    fs_hub_close(h);

    /* the operator also recomputes the unkeyed chain after the edit: the rows
     * agree with each other again, but no longer with the heads the device
     * signed */
    REQUIRE(sqlite3_open(test_path("hub.db"), &db) == SQLITE_OK);
    {
        char prev[65];
        size_t i;
        snprintf(prev, sizeof prev, "%s", jstr(json_array_get(rows, 0), "hash"));
        for (i = 1; i < json_array_size(rows); i++) {
            json_t *row = json_array_get(rows, i);
            char digest[65];
            char *sql;
            audit_row_hash(row, prev, digest);
            sql = strf("UPDATE fs_hub_audit SET prev_hash = '%s', hash = '%s' WHERE device = 'dev-1' AND audit_id = %lld",
                       prev, digest, jint(row, "audit_id"));
            CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
            free(sql);
            memcpy(prev, digest, 65);
        }
    }
    json_decref(rows);
    REQUIRE(sqlite3_prepare_v2(db, "SELECT a.hash, h.signature FROM fs_audit_heads h JOIN fs_hub_audit a "
                                   "ON a.device = h.device AND a.audit_id = h.audit_id WHERE h.audit_id = 4",
                               -1, &q, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(q) == SQLITE_ROW);
    {
        char *message = strf("fieldsync audit head\ndev-1\n4\n%s", (const char *)sqlite3_column_text(q, 0));
        CHECK(!ed25519_verifies(public_key, message, strlen(message), (const char *)sqlite3_column_text(q, 1)));
        free(message);
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    h = open_task_hub();
    REQUIRE(h != NULL);
    rows = hub_audit_ok(h, "{\"device_id\":\"dev-1\"}");
    CHECK_INT_EQ(audit_chain_problems(rows), 0);
    json_decref(rows);
    fs_store_close(s);
    fs_hub_close(h);
}
