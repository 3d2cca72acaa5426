/* test_sync.c — the sync steps against an in-process hub: prepare -> hub
 * handle -> receive, convergence of two devices, exactly-once delivery,
 * backoff and connectivity, paged and scoped pulls, and a `server` field
 * compare-and-set conflict from refusal to discard. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

/* A store clock the test moves by hand. */
static int64_t fixed_clock(void *ctx) { return *(const int64_t *)ctx; }

/* One task row of the hub (NULL + a failure if absent). */
static json_t *hub_task(fs_hub *h, const char *id) {
    char *q = strf("{\"type\":\"task\",\"where\":{\"id\":\"%s\"}}", id);
    json_t *rows = hub_query_ok(h, q);
    json_t *row = NULL;
    free(q);
    if (rows != NULL && json_array_size(rows) == 1) {
        row = json_array_get(rows, 0);
        json_incref(row);
    } else {
        fs_test_fail(__FILE__, __LINE__, "hub has no task %s", id);
    }
    json_decref(rows);
    return row;
}

/* A value's compact JSON, for comparing sets and json fields. */
static int field_is(json_t *record, const char *field, const char *expected_json) {
    char *got = jdump(json_object_get(record, field));
    int same = strcmp(got, expected_json) == 0;
    if (!same) printf("    %s is %s, expected %s\n", field, got, expected_json);
    free(got);
    return same;
}

/* Every audit row of the store is acknowledged with `outcome`. */
static void expect_audit_synced(const char *file, int line, fs_store *s, const char *outcome) {
    json_t *rows = audit_ok_at(file, line, s, NULL);
    size_t i;
    for (i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        if (jstr(row, "outcome") == NULL || strcmp(jstr(row, "outcome"), outcome) != 0)
            fs_test_fail(file, line, "audit row %lld: outcome %s, expected %s", jint(row, "audit_id"),
                         jstr(row, "outcome") ? jstr(row, "outcome") : "(missing)", outcome);
        if (!json_is_integer(json_object_get(row, "server_received_at")) ||
            jint(row, "server_received_at") <= 0)
            fs_test_fail(file, line, "audit row %lld: server_received_at is not set",
                         jint(row, "audit_id"));
    }
    json_decref(rows);
}
#define EXPECT_AUDIT_SYNCED(s, outcome) expect_audit_synced(__FILE__, __LINE__, (s), (outcome))

TEST(test_sync_of_an_empty_store_pulls_once_then_waits_for_the_pull_interval) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    sync_totals t;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    t = sync_until_idle(s, h);
    CHECK_INT_EQ(t.rounds, 1);
    CHECK_INT_EQ(t.pulled, 0);
    /* nothing pending: the next thing due is the periodic pull (60000 ms) */
    CHECK(t.last_wait > 0 && t.last_wait <= 60000);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_sync_with_pull_interval_zero_waits_forever_once_idle) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", "\"pull_interval_ms\":0");
    sync_totals t;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    t = sync_until_idle(s, h);
    CHECK_INT_EQ(t.applied, 1);
    CHECK_INT_EQ(t.last_wait, -1);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_sync_prepare_sends_pending_entries_with_their_audit_rows_and_marks_them_inflight) {
    fs_store *s = open_device("dev-1", NULL);
    json_t *req, *entries, *audit, *listed;
    size_t i;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':2}")));
    req = take_json(prepare_ok(s));
    REQUIRE(req != NULL);
    CHECK_INT_EQ(jint(req, "protocol"), 2);
    CHECK_STR_EQ(jstr(req, "device_id"), "dev-1");
    CHECK_INT_EQ(jint(req, "schema_version"), 1);
    CHECK_STR_EQ(jstr(req, "batch"), "dev-1-b1");
    entries = json_object_get(req, "entries");
    audit = json_object_get(req, "audit");
    CHECK_INT_EQ(json_array_size(entries), 2);
    CHECK_STR_EQ(jstr(json_array_get(entries, 0), "key"), "dev-1-1");
    CHECK_STR_EQ(jstr(json_array_get(entries, 1), "key"), "dev-1-2");
    CHECK_INT_EQ(json_array_size(audit), 2);
    CHECK_INT_EQ(jint(json_array_get(audit, 0), "audit_id"), 1);
    CHECK_INT_EQ(jint(json_array_get(audit, 1), "audit_id"), 2);
    /* protocol 2: a row travelling with its entry leaves out what the entry
     * says, and a row following its predecessor that row's hash */
    for (i = 0; i < json_array_size(audit); i++) {
        json_t *row = json_array_get(audit, i);
        CHECK(json_object_get(row, "type") == NULL && json_object_get(row, "id") == NULL);
        CHECK(json_object_get(row, "hlc") == NULL && json_object_get(row, "actor") == NULL);
        CHECK(json_object_get(row, "outbox_keys") == NULL);
        CHECK(jstr(row, "hash") != NULL && jstr(row, "action") != NULL);
        if (i == 0) CHECK(jstr(row, "prev_hash") != NULL);
        else CHECK(json_object_get(row, "prev_hash") == NULL);
    }
    json_decref(req);
    listed = outbox_ok(s, NULL);
    REQUIRE(listed != NULL);
    CHECK_INT_EQ(json_array_size(listed), 2);
    for (i = 0; i < json_array_size(listed); i++)
        CHECK_STR_EQ(jstr(json_array_get(listed, i), "state"), "inflight");
    json_decref(listed);
    CHECK_INT_EQ(outbox_count(s), 2);
    fs_store_close(s);
}

TEST(test_sync_prepare_again_resends_an_unanswered_batch_under_a_new_batch_id) {
    fs_store *s = open_device("dev-1", NULL);
    json_t *first, *second;
    char *k1, *k2;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    first = take_json(prepare_ok(s));
    second = take_json(prepare_ok(s));
    REQUIRE(first != NULL && second != NULL);
    CHECK_STR_EQ(jstr(first, "batch"), "dev-1-b1");
    CHECK_STR_EQ(jstr(second, "batch"), "dev-1-b2");
    k1 = jdump(json_object_get(first, "entries"));
    k2 = jdump(json_object_get(second, "entries"));
    CHECK_STR_EQ(k2, k1);
    free(k1);
    free(k2);
    json_decref(first);
    json_decref(second);
    fs_store_close(s);
}

TEST(test_sync_acks_entries_marks_audit_rows_applied_and_summarises) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *request, *response;
    json_t *summary, *rec;
    static const char *const keys[] = {"applied", "duplicate", "rejected", "retry", "stuck",
                                       "pulled",  "cursor",    "more",     "outbox"};
    size_t i;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':2},'add':{'tags':['x']}")));
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    response = handle_ok(h, request);
    fs_free(request);
    REQUIRE(response != NULL);
    summary = receive_ok(s, response);
    fs_free(response);
    REQUIRE(summary != NULL);
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (json_object_get(summary, keys[i]) == NULL)
            fs_test_fail(__FILE__, __LINE__, "summary lacks \"%s\"", keys[i]);
    CHECK_INT_EQ(jint(summary, "applied"), 2);
    CHECK_INT_EQ(jint(summary, "rejected"), 0);
    CHECK_INT_EQ(jint(summary, "outbox"), 0);
    CHECK(jint(summary, "cursor") > 0);
    CHECK(json_is_false(json_object_get(summary, "more")));
    json_decref(summary);

    CHECK_INT_EQ(outbox_count(s), 0);
    EXPECT_AUDIT_SYNCED(s, "applied");
    rec = get_ok(s, "task", "T-1");
    CHECK(json_is_integer(json_object_get(json_object_get(rec, "_fs"), "server_version")));
    CHECK_INT_EQ(jint(json_object_get(rec, "_fs"), "pending"), 0);
    json_decref(rec);
    CHECK_SAME_RECORDS(s, h);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_sync_two_devices_converge_with_the_hub) {
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("dev-a", NULL);
    fs_store *b = open_device("dev-b", NULL);
    fs_store *both[2];
    json_t *t1, *t2, *stats, *rows;
    int i;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    both[0] = a;
    both[1] = b;

    /* dev-a creates three tasks (one with every kind of field) and syncs */
    json_decref(apply_ok(a, act("T-1", "'set':{'status':'open','site':'WH-1'},"
                                       "'inc':{'picked':2},'add':{'tags':['a','b']}")));
    json_decref(apply_ok(a, act("T-2", "'set':{'status':'open','on_hand':10,"
                                       "'lines':[{'sku':'X','qty':1}]}")));
    create_task(a, "T-3", "open");
    CHECK_INT_EQ(sync_until_idle(a, h).applied, 3);
    /* dev-b pulls them */
    CHECK_INT_EQ(sync_until_idle(b, h).pulled, 3);
    CHECK_SAME_RECORDS(b, h);

    /* both write offline, to the same records */
    json_decref(apply_ok(b, act("T-1", "'inc':{'picked':3}")));
    json_decref(apply_ok(b, act("T-1", "'remove':{'tags':['a']},'add':{'tags':['c']}")));
    json_decref(apply_ok(b, act("T-1", "'set':{'site':'WH-3'}")));
    json_decref(apply_ok(b, act("T-2", "'set':{'weight':2.5}")));
    json_decref(apply_ok(b, act("T-3", "'delete':true")));
    json_decref(apply_ok(a, act("T-1", "'inc':{'picked':4}")));
    json_decref(apply_ok(a, act("T-1", "'add':{'tags':['d']}")));
    json_decref(apply_ok(a, act("T-2", "'set':{'urgent':true}")));

    CHECK_INT_EQ(sync_until_idle(a, h).applied, 3);
    CHECK_INT_EQ(sync_until_idle(b, h).applied, 5);
    /* a second pass (pull made due) brings each the other's writes */
    for (i = 0; i < 2; i++) {
        CHECK(sync_now(a, h).rounds >= 1);
        CHECK(sync_now(b, h).rounds >= 1);
    }

    t1 = hub_task(h, "T-1");
    t2 = hub_task(h, "T-2");
    REQUIRE(t1 != NULL && t2 != NULL);
    CHECK_INT_EQ(jint(t1, "picked"), 2 + 3 + 4); /* counters add up across devices */
    CHECK(field_is(t1, "tags", "[\"b\",\"c\",\"d\"]"));
    CHECK_STR_EQ(jstr(t1, "site"), "WH-3");
    CHECK_INT_EQ(jint(t2, "on_hand"), 10);
    CHECK(json_real_value(json_object_get(t2, "weight")) == 2.5);
    CHECK(json_is_true(json_object_get(t2, "urgent")));
    CHECK(field_is(t2, "lines", "[{\"qty\":1,\"sku\":\"X\"}]"));
    json_decref(t1);
    json_decref(t2);
    rows = hub_query_ok(h, "{\"type\":\"task\"}");
    CHECK_INT_EQ(json_array_size(rows), 2); /* T-3 was deleted */
    json_decref(rows);

    for (i = 0; i < 2; i++) {
        CHECK_INT_EQ(outbox_count(both[i]), 0);
        EXPECT_AUDIT_SYNCED(both[i], "applied");
        CHECK_SAME_RECORDS(both[i], h);
    }

    stats = hub_stats_ok(h);
    REQUIRE(stats != NULL);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 11);
    CHECK_INT_EQ(jint(stats, "entries_rejected"), 0);
    CHECK_INT_EQ(jint(stats, "audit_rows"), 11);
    CHECK_INT_EQ(jint(stats, "audit_chain_breaks"), 0);
    CHECK_INT_EQ(jint(stats, "audit_hash_failures"), 0);
    CHECK_INT_EQ(jint(stats, "devices"), 2);
    CHECK_INT_EQ(jint(stats, "records"), 2);
    json_decref(stats);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

/* The hub handles one request twice (a retried HTTP POST whose first answer
 * was slow): the second answer says "duplicate". The device then receives
 * both answers, in either order. The counter must count once. */
static void same_request_twice(int duplicate_answer_first) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *request, *first, *again;
    json_t *r1, *r2, *stats, *rec;
    size_t i;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':5}")));
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    first = handle_ok(h, request);
    again = handle_ok(h, request);
    fs_free(request);
    REQUIRE(first != NULL && again != NULL);

    r1 = json_loads(first, 0, NULL);
    r2 = json_loads(again, 0, NULL);
    REQUIRE(r1 != NULL && r2 != NULL);
    CHECK_INT_EQ(json_array_size(json_object_get(r2, "results")), 2);
    for (i = 0; i < json_array_size(json_object_get(r1, "results")); i++)
        CHECK_STR_EQ(jstr(json_array_get(json_object_get(r1, "results"), i), "status"), "applied");
    for (i = 0; i < json_array_size(json_object_get(r2, "results")); i++) {
        json_t *res = json_array_get(json_object_get(r2, "results"), i);
        CHECK_STR_EQ(jstr(res, "status"), "duplicate");
        CHECK_STR_EQ(jstr(res, "outcome"), "applied");
    }
    json_decref(r1);
    json_decref(r2);

    json_decref(receive_ok(s, duplicate_answer_first ? again : first));
    CHECK_INT_EQ(outbox_count(s), 0);
    json_decref(receive_ok(s, duplicate_answer_first ? first : again));
    fs_free(first);
    fs_free(again);

    CHECK_INT_EQ(outbox_count(s), 0);
    EXPECT_AUDIT_SYNCED(s, "applied");
    rec = hub_task(h, "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 5);
    json_decref(rec);
    rec = get_ok(s, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 5);
    json_decref(rec);
    CHECK_SAME_RECORDS(s, h);
    stats = hub_stats_ok(h);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 2);
    CHECK_INT_EQ(jint(stats, "audit_rows"), 2);
    json_decref(stats);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_sync_same_request_handled_twice_counts_once_original_answer_first) {
    same_request_twice(0);
}

TEST(test_sync_same_request_handled_twice_counts_once_duplicate_answer_first) {
    same_request_twice(1);
}

TEST(test_sync_resend_after_a_lost_answer_applies_once) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *request, *lost, *response;
    json_t *summary, *rec, *stats;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':5}")));
    /* the hub applies the batch but its answer never arrives */
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    lost = handle_ok(h, request);
    fs_free(request);
    /* the device sends the same entries again */
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    response = handle_ok(h, request);
    fs_free(request);
    summary = receive_ok(s, response);
    fs_free(response);
    CHECK_INT_EQ(jint(summary, "duplicate"), 2);
    CHECK_INT_EQ(jint(summary, "outbox"), 0);
    json_decref(summary);
    /* the lost answer turns up late: harmless */
    json_decref(receive_ok(s, lost));
    fs_free(lost);

    CHECK_INT_EQ(outbox_count(s), 0);
    EXPECT_AUDIT_SYNCED(s, "applied");
    rec = hub_task(h, "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 5);
    json_decref(rec);
    CHECK_SAME_RECORDS(s, h);
    stats = hub_stats_ok(h);
    CHECK_INT_EQ(jint(stats, "entries_applied"), 2);
    json_decref(stats);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_sync_restart_between_send_and_answer_applies_once) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *request, *lost;
    json_t *rec;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':5}")));
    request = prepare_ok(s);
    REQUIRE(request != NULL);
    lost = handle_ok(h, request);
    fs_free(request);
    fs_free(lost);
    /* the app is killed before the answer is stored, and restarts */
    fs_store_close(s);
    s = open_device("dev-1", NULL);
    REQUIRE(s != NULL);
    CHECK_INT_EQ(outbox_count(s), 2);
    CHECK_INT_EQ(sync_until_idle(s, h).duplicate, 2);
    CHECK_INT_EQ(outbox_count(s), 0);
    rec = hub_task(h, "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 5);
    json_decref(rec);
    CHECK_SAME_RECORDS(s, h);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_sync_fail_backs_off_for_at_most_the_cap_and_counts_no_attempt) {
    int64_t now = 1700000000000LL;
    fs_store *s = open_device("dev-1", "\"backoff_base_ms\":20000,\"backoff_cap_ms\":30000");
    char *request = SENTINEL;
    int64_t wait = -2;
    json_t *listed, *stats;
    int i;
    REQUIRE(s != NULL);
    CHECK_OK(fs_store_set_clock(s, fixed_clock, &now));
    create_task(s, "T-1", "open");
    request = prepare_ok(s);
    fs_free(request);
    CHECK_OK(fs_sync_fail(s, "timeout"));

    request = SENTINEL;
    CHECK_OK(fs_sync_prepare(s, &request, &wait));
    CHECK(request == NULL);
    CHECK(wait > 0 && wait <= 30000);
    listed = outbox_ok(s, NULL);
    REQUIRE(listed != NULL && json_array_size(listed) == 1);
    CHECK_STR_EQ(jstr(json_array_get(listed, 0), "state"), "pending");
    CHECK_INT_EQ(jint(json_array_get(listed, 0), "attempts"), 0);
    json_decref(listed);
    stats = stats_ok(s);
    CHECK_STR_EQ(jstr(stats, "last_failure"), "timeout");
    CHECK_STR_EQ(jstr(stats, "sync_state"), "backoff");
    json_decref(stats);

    /* more failures grow the backoff, never past the cap */
    for (i = 0; i < 6; i++) {
        CHECK_OK(fs_sync_fail(s, NULL));
        request = SENTINEL;
        wait = -2;
        CHECK_OK(fs_sync_prepare(s, &request, &wait));
        CHECK(request == NULL);
        if (!(wait > 0 && wait <= 30000))
            fs_test_fail(__FILE__, __LINE__, "after failure %d: wait %lld, expected 0 < wait <= 30000",
                         i + 2, (long long)wait);
    }
    /* once the wait has passed, the entry goes again */
    now += wait;
    request = prepare_ok(s);
    fs_free(request);
    fs_store_close(s);
}

TEST(test_sync_connectivity_up_ends_the_backoff_and_sends_at_once) {
    int64_t now = 1700000000000LL;
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", NULL);
    char *request = SENTINEL;
    json_t *req;
    int64_t wait = -2;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    CHECK_OK(fs_store_set_clock(s, fixed_clock, &now));
    create_task(s, "T-1", "open");
    fs_free(prepare_ok(s));
    CHECK_OK(fs_sync_fail(s, "network down"));
    CHECK_OK(fs_sync_fail(s, "network down"));
    CHECK_OK(fs_sync_prepare(s, &request, &wait));
    CHECK(request == NULL);
    CHECK(wait > 0);

    CHECK_OK(fs_sync_connectivity(s, 1));
    wait = -2;
    CHECK_OK(fs_sync_prepare(s, &request, &wait));
    CHECK_INT_EQ(wait, 0);
    REQUIRE(request != NULL);
    req = take_json(request);
    CHECK_INT_EQ(json_array_size(json_object_get(req, "entries")), 1);
    json_decref(req);

    /* with nothing pending and the last pull just done, up makes a pull due */
    CHECK_OK(fs_sync_connectivity(s, 1));
    CHECK_INT_EQ(sync_until_idle(s, h).applied, 1);
    request = SENTINEL;
    CHECK_OK(fs_sync_prepare(s, &request, &wait));
    CHECK(request == NULL);
    CHECK_OK(fs_sync_connectivity(s, 1));
    request = prepare_ok(s);
    fs_free(request);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_sync_connectivity_down_sends_nothing_and_waits_the_cap) {
    fs_store *s = open_device("dev-1", NULL);
    char *request = SENTINEL;
    int64_t wait = -2;
    json_t *stats, *listed;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    CHECK_OK(fs_sync_connectivity(s, 0));
    CHECK_OK(fs_sync_prepare(s, &request, &wait));
    CHECK(request == NULL);
    CHECK_INT_EQ(wait, 60000);
    stats = stats_ok(s);
    CHECK_STR_EQ(jstr(stats, "sync_state"), "offline");
    json_decref(stats);
    listed = outbox_ok(s, NULL);
    REQUIRE(listed != NULL && json_array_size(listed) == 1);
    CHECK_STR_EQ(jstr(json_array_get(listed, 0), "state"), "pending");
    json_decref(listed);
    /* back up: the request goes at once */
    CHECK_OK(fs_sync_connectivity(s, 1));
    fs_free(prepare_ok(s));
    fs_store_close(s);
}

TEST(test_sync_batch_size_limits_the_entries_per_request) {
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", "\"batch_size\":2");
    json_t *req;
    sync_totals t;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    create_task(s, "T-1", "open");
    create_task(s, "T-2", "open");
    create_task(s, "T-3", "open");
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    json_decref(apply_ok(s, act("T-2", "'inc':{'picked':1}")));
    req = take_json(prepare_ok(s));
    CHECK_INT_EQ(json_array_size(json_object_get(req, "entries")), 2);
    json_decref(req);
    t = sync_until_idle(s, h); /* the unanswered first batch is sent again */
    CHECK_INT_EQ(t.rounds, 3);
    CHECK_INT_EQ(t.applied, 5);
    CHECK_INT_EQ(outbox_count(s), 0);
    CHECK_SAME_RECORDS(s, h);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_sync_pull_pages_with_more_until_every_record_arrives) {
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("dev-a", NULL);
    fs_store *b = open_device("dev-b", "\"pull_limit\":2");
    json_t *req, *rows;
    sync_totals t;
    char id[16];
    int i;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    for (i = 1; i <= 5; i++) {
        snprintf(id, sizeof id, "T-%d", i);
        create_task(a, id, "open");
    }
    CHECK_INT_EQ(sync_until_idle(a, h).applied, 5);

    req = take_json(prepare_ok(b));
    CHECK_INT_EQ(jint(req, "limit"), 2);
    json_decref(req);
    t = sync_until_idle(b, h); /* the unanswered first request is sent again */
    CHECK_INT_EQ(t.rounds, 3); /* 2 + 2 + 1 */
    CHECK_INT_EQ(t.pulled, 5);
    CHECK_INT_EQ(t.more, 2);
    rows = query_ok(b, "{\"type\":\"task\"}");
    CHECK_INT_EQ(json_array_size(rows), 5);
    json_decref(rows);
    CHECK_SAME_RECORDS(b, h);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

TEST(test_sync_scope_pulls_only_matching_records) {
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("dev-a", NULL);
    fs_store *c = open_device("dev-c", "\"scope\":{\"task\":{\"site\":\"WH-3\"}}");
    json_t *req, *rows;
    char *ids, *want, *mine;
    REQUIRE(h != NULL && a != NULL && c != NULL);
    json_decref(apply_ok(a, act("T-1", "'set':{'status':'open','site':'WH-3'}")));
    json_decref(apply_ok(a, act("T-2", "'set':{'status':'open','site':'WH-1'}")));
    json_decref(apply_ok(a, act("T-3", "'set':{'status':'done','site':'WH-3'}")));
    create_task(a, "T-4", "open"); /* no site */
    CHECK_INT_EQ(sync_until_idle(a, h).applied, 4);

    req = take_json(prepare_ok(c));
    CHECK_STR_EQ(jstr(json_object_get(json_object_get(req, "scope"), "task"), "site"), "WH-3");
    json_decref(req);
    CHECK_INT_EQ(sync_until_idle(c, h).pulled, 2);
    rows = query_ok(c, "{\"type\":\"task\"}");
    ids = ids_of(rows);
    CHECK_STR_EQ(ids, "T-1,T-3");
    free(ids);
    json_decref(rows);
    /* exactly the hub's records of that site */
    rows = hub_query_ok(h, "{\"type\":\"task\",\"where\":{\"site\":\"WH-3\"}}");
    want = jdump(rows);
    json_decref(rows);
    mine = store_records(c);
    CHECK_STR_EQ(mine, want);
    free(want);
    free(mine);

    /* a record that moves into the scope arrives with the next pull */
    json_decref(apply_ok(a, act("T-2", "'set':{'site':'WH-3'}")));
    sync_until_idle(a, h);
    sync_now(c, h);
    rows = query_ok(c, "{\"type\":\"task\"}");
    ids = ids_of(rows);
    CHECK_STR_EQ(ids, "T-1,T-2,T-3");
    free(ids);
    json_decref(rows);
    fs_store_close(a);
    fs_store_close(c);
    fs_hub_close(h);
}

TEST(test_sync_server_field_conflict_is_rejected_kept_visible_and_discardable) {
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("dev-a", NULL);
    fs_store *b = open_device("dev-b", NULL);
    json_t *entries, *rows, *rec, *stats, *res;
    const char *key;
    sync_totals t;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    json_decref(apply_ok(a, act("T-1", "'set':{'status':'open','on_hand':10}")));
    sync_until_idle(a, h);
    sync_until_idle(b, h);
    rec = get_ok(b, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "on_hand"), 10);
    json_decref(rec);

    /* both count the stock from the same base: 10 */
    json_decref(apply_ok(a, act("T-1", "'set':{'on_hand':7}")));
    res = apply_ok(b, act("T-1", "'set':{'on_hand':5}"));
    REQUIRE(res != NULL);
    key = jstr(res, "outbox_key");
    REQUIRE(key != NULL);
    CHECK_STR_EQ(key, "dev-b-1");
    json_decref(res);
    CHECK_INT_EQ(sync_until_idle(a, h).applied, 1);
    t = sync_until_idle(b, h);
    CHECK_INT_EQ(t.rejected, 1);
    CHECK_INT_EQ(t.applied, 0);

    /* the refused write stays listed, with the reason */
    CHECK_INT_EQ(outbox_count(b), 1);
    entries = outbox_ok(b, NULL);
    REQUIRE(entries != NULL && json_array_size(entries) == 1);
    CHECK_STR_EQ(jstr(json_array_get(entries, 0), "key"), "dev-b-1");
    CHECK_STR_EQ(jstr(json_array_get(entries, 0), "state"), "rejected");
    CHECK_STR_EQ(jstr(json_array_get(entries, 0), "reason"), "conflict");
    json_decref(entries);
    entries = outbox_ok(b, "{\"state\":\"rejected\"}");
    CHECK_INT_EQ(json_array_size(entries), 1);
    json_decref(entries);
    rows = audit_ok(b, NULL);
    REQUIRE(rows != NULL && json_array_size(rows) == 1);
    CHECK_STR_EQ(jstr(json_array_get(rows, 0), "outcome"), "rejected");
    CHECK_STR_EQ(jstr(json_array_get(rows, 0), "reason"), "conflict");
    json_decref(rows);
    /* the device's view returns to the server's value */
    rec = get_ok(b, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "on_hand"), 7);
    json_decref(rec);
    rec = hub_task(h, "T-1");
    CHECK_INT_EQ(jint(rec, "on_hand"), 7);
    json_decref(rec);
    CHECK_SAME_RECORDS(b, h);
    /* the hub kept the refusal and counted it */
    rows = hub_audit_ok(h, "{\"device_id\":\"dev-b\"}");
    REQUIRE(rows != NULL && json_array_size(rows) == 1);
    CHECK_STR_EQ(jstr(json_array_get(rows, 0), "outcome"), "rejected");
    json_decref(rows);
    stats = hub_stats_ok(h);
    CHECK_INT_EQ(jint(stats, "entries_rejected"), 1);
    CHECK_INT_EQ(jint(stats, "conflicts.task.on_hand.rejected"), 1);
    json_decref(stats);
    /* nothing more to send: a rejected entry is not retried */
    CHECK_INT_EQ(sync_now(b, h).rejected, 0);

    /* the host discards it: gone from the outbox, the audit row stays */
    CHECK_OK(fs_outbox_discard(b, "dev-b-1"));
    CHECK_NO_ERROR_MESSAGE();
    CHECK_INT_EQ(outbox_count(b), 0);
    rows = audit_ok(b, NULL);
    REQUIRE(rows != NULL && json_array_size(rows) == 1);
    CHECK_STR_EQ(jstr(json_array_get(rows, 0), "outcome"), "discarded");
    json_decref(rows);
    rec = get_ok(b, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "on_hand"), 7);
    json_decref(rec);
    CHECK_STATUS(fs_outbox_discard(b, "dev-b-1"), FS_ERR_NOT_FOUND);
    sync_now(b, h);
    CHECK_SAME_RECORDS(b, h);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

TEST(test_sync_pull_falls_due_every_pull_interval) {
    int64_t now = 1700000000000LL;
    fs_hub *h = open_task_hub();
    fs_store *s = open_device("dev-1", "\"pull_interval_ms\":5000");
    char *request = SENTINEL;
    int64_t wait = -2;
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    CHECK_OK(fs_store_set_clock(s, fixed_clock, &now));
    CHECK_INT_EQ(sync_until_idle(s, h).last_wait, 5000);
    now += 4999;
    CHECK_OK(fs_sync_prepare(s, &request, &wait));
    CHECK(request == NULL);
    CHECK_INT_EQ(wait, 1);
    now += 1;
    request = prepare_ok(s);
    fs_free(request);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_sync_pulled_changes_are_rebased_under_pending_actions) {
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("dev-a", NULL);
    fs_store *b = open_device("dev-b", "\"batch_size\":1");
    char *request, *response;
    json_t *rec;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    create_task(a, "T-1", "open");
    sync_until_idle(a, h);
    sync_until_idle(b, h);
    json_decref(apply_ok(b, act("T-1", "'inc':{'picked':1}")));
    json_decref(apply_ok(b, act("T-1", "'inc':{'picked':10}")));
    json_decref(apply_ok(b, act("T-1", "'add':{'tags':['b']}")));
    json_decref(apply_ok(a, act("T-1", "'inc':{'picked':100}")));
    sync_until_idle(a, h);

    /* one round: b's first entry goes, a's +100 comes back */
    request = prepare_ok(b);
    REQUIRE(request != NULL);
    response = handle_ok(h, request);
    fs_free(request);
    REQUIRE(response != NULL);
    json_decref(receive_ok(b, response));
    fs_free(response);
    rec = hub_task(h, "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 101);
    json_decref(rec);
    /* b shows the server's 101 with its two pending actions on top */
    rec = get_ok(b, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 111);
    CHECK(field_is(rec, "tags", "[\"b\"]"));
    CHECK_INT_EQ(jint(json_object_get(rec, "_fs"), "pending"), 2);
    json_decref(rec);

    sync_until_idle(b, h);
    rec = get_ok(b, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 111);
    json_decref(rec);
    CHECK_SAME_RECORDS(b, h);
    sync_now(a, h);
    CHECK_SAME_RECORDS(a, h);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

TEST(test_sync_entries_the_hub_asks_to_retry_back_off_then_become_stuck) {
    /* the device runs schema 2 before the hub does: the hub answers "retry" */
    int64_t now = 1700000000000LL;
    char *v2 = strf("{\"version\":2,%s", TASK_SCHEMA + strlen("{\"version\":1,"));
    fs_hub *h = open_task_hub();
    fs_store *s = open_store("dev-1.db", v2,
                             "{\"device_id\":\"dev-1\",\"max_attempts\":2,"
                             "\"backoff_base_ms\":20000,\"backoff_cap_ms\":30000}");
    char *request = SENTINEL;
    int64_t wait = -2;
    json_t *entries, *entry, *req, *rows;
    sync_totals t;
    free(v2);
    REQUIRE(h != NULL && s != NULL);
    REQUIRE(enroll(s, h, NULL) == 0);
    CHECK_OK(fs_store_set_clock(s, fixed_clock, &now));
    create_task(s, "T-1", "open");

    t = sync_until_idle(s, h);
    CHECK_INT_EQ(t.rounds, 1);
    CHECK_INT_EQ(t.retry, 1);
    CHECK_INT_EQ(t.stuck, 0);
    /* the wait is the entry's backoff, not the 60 s pull interval */
    CHECK(t.last_wait > 0 && t.last_wait <= 30000);
    entries = outbox_ok(s, NULL);
    REQUIRE(entries != NULL && json_array_size(entries) == 1);
    entry = json_array_get(entries, 0);
    CHECK_STR_EQ(jstr(entry, "state"), "pending");
    CHECK_INT_EQ(jint(entry, "attempts"), 1);
    CHECK_INT_EQ(jint(entry, "next_attempt_at"), now + t.last_wait);
    CHECK(jstr(entry, "reason") != NULL);
    json_decref(entries);

    now += t.last_wait;
    t = sync_until_idle(s, h);
    CHECK_INT_EQ(t.retry, 1);
    CHECK_INT_EQ(t.stuck, 1);
    entries = outbox_ok(s, "{\"state\":\"stuck\"}");
    REQUIRE(entries != NULL && json_array_size(entries) == 1);
    CHECK_INT_EQ(jint(json_array_get(entries, 0), "attempts"), 2);
    CHECK(jstr(json_array_get(entries, 0), "reason") != NULL);
    json_decref(entries);
    CHECK_INT_EQ(outbox_count(s), 1);

    /* stuck is never sent again by the library, even when the network returns */
    now += 120000;
    CHECK_OK(fs_sync_connectivity(s, 1));
    req = take_json(prepare_ok(s));
    CHECK_INT_EQ(json_array_size(json_object_get(req, "entries")), 0);
    json_decref(req);
    CHECK_OK(fs_sync_fail(s, NULL));
    CHECK_OK(fs_sync_connectivity(s, 1));
    sync_until_idle(s, h);
    CHECK_OK(fs_sync_prepare(s, &request, &wait));
    CHECK(request == NULL);
    CHECK_INT_EQ(outbox_count(s), 1);

    /* the host gives up on it */
    CHECK_OK(fs_outbox_discard(s, "dev-1-1"));
    CHECK_INT_EQ(outbox_count(s), 0);
    rows = audit_ok(s, NULL);
    REQUIRE(rows != NULL && json_array_size(rows) == 1);
    CHECK_STR_EQ(jstr(json_array_get(rows, 0), "outcome"), "discarded");
    json_decref(rows);
    CHECK_STATUS(fs_store_get(s, "task", "T-1", &request), FS_ERR_NOT_FOUND);
    free_out(request);
    fs_store_close(s);
    fs_hub_close(h);
}

TEST(test_sync_options_with_bad_values_are_refused) {
    static const char *const bad[] = {
        "{\"batch_size\":0}",         "{\"batch_size\":\"500\"}",   "{\"batch_size\":null}",
        "{\"pull_limit\":0}",         "{\"pull_limit\":1.5}",       "{\"backoff_base_ms\":0}",
        "{\"backoff_cap_ms\":-1}",    "{\"max_attempts\":0}",       "{\"pull_interval_ms\":-1}",
        "{\"backoff_base_ms\":1000,\"backoff_cap_ms\":999}",
        "{\"scope\":[]}",             "{\"scope\":\"WH-3\"}",       "{\"scope\":null}",
        "{\"pull_limt\":10}",
    };
    open_refused(bad);
}
