/* test_two_handles.c — two handles on one store file (an app and a tool, or
 * two threads that each opened the store): each catches up with what the
 * other committed before it writes, so no sequence number, outbox key or
 * batch number is handed out twice, the audit chain stays one chain, a
 * hygiene pass on one handle makes no key reusable on the other, entries are
 * stamped with the cursor the file has pulled to, and a response to one
 * handle's request is received by the other. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

#define DAY_MS ((int64_t)86400000)
#define T0_MS ((int64_t)1700000000000LL)

static int64_t th_clock(void *ctx) { return *(const int64_t *)ctx; }

/* The hub's task `id`, or NULL and a failure. */
static json_t *hub_task_of(const char *file, int line, fs_hub *h, const char *id) {
    char *q = strf("{\"type\":\"task\",\"where\":{\"id\":\"%s\"}}", id);
    json_t *rows = hub_query_ok_at(file, line, h, q);
    json_t *row = NULL;
    free(q);
    if (rows != NULL && json_array_size(rows) == 1) {
        row = json_array_get(rows, 0);
        json_incref(row);
    } else {
        fs_test_fail(file, line, "hub has no task %s", id);
    }
    json_decref(rows);
    return row;
}
#define hub_task(h, id) hub_task_of(__FILE__, __LINE__, (h), (id))

/* The hub received every action once and the device's chain unbroken. */
static void check_hub_audit(const char *file, int line, fs_hub *h, long long actions) {
    json_t *stats = hub_stats_ok_at(file, line, h);
    if (stats == NULL) return;
    if (jint(stats, "audit_rows") != actions)
        fs_test_fail(file, line, "hub audit_rows %lld, expected %lld", jint(stats, "audit_rows"), actions);
    if (jint(stats, "audit_chain_breaks") != 0 || jint(stats, "audit_hash_failures") != 0 ||
        jint(stats, "audit_gaps") != 0)
        fs_test_fail(file, line, "hub audit: %lld chain breaks, %lld hash failures, %lld gaps",
                     jint(stats, "audit_chain_breaks"), jint(stats, "audit_hash_failures"),
                     jint(stats, "audit_gaps"));
    json_decref(stats);
}
#define CHECK_HUB_AUDIT(h, actions) check_hub_audit(__FILE__, __LINE__, (h), (actions))

/* ---- two threads, each with its own handle, applying and syncing at once ---- */

#define ROUNDS 60

typedef struct {
    fs_store *store;
    fs_hub *hub;
    int index;
    int applied;
    int failed;
    char first_error[FS_TEST_MSG_MAX];
} th_worker;

static void th_failed(th_worker *w, const char *step, fs_status st) {
    if (w->failed++ == 0)
        snprintf(w->first_error, sizeof w->first_error, "%s: %s: %s", step, fs_status_name(st),
                 fs_last_error());
}

/* One exchange: prepare -> fs_hub_handle -> receive, every step FS_OK. */
static void th_sync_round(th_worker *w) {
    char *request = NULL, *response = NULL, *summary = NULL;
    int64_t wait = 0;
    fs_status st = fs_sync_prepare(w->store, &request, &wait);
    if (st != FS_OK) {
        th_failed(w, "prepare", st);
        return;
    }
    if (request == NULL) return;
    st = fs_hub_handle(w->hub, request, &response);
    fs_free(request);
    if (st != FS_OK) {
        th_failed(w, "hub", st);
        return;
    }
    st = fs_sync_receive(w->store, response, &summary);
    fs_free(response);
    if (st != FS_OK) th_failed(w, "receive", st);
    fs_free(summary);
}

static void *th_apply_and_sync(void *arg) {
    th_worker *w = (th_worker *)arg;
    int i;
    for (i = 0; i < ROUNDS; i++) {
        char id[32], *out = NULL;
        fs_status st;
        /* both count on the shared record; each also edits its own */
        if (i % 3 == 2) {
            snprintf(id, sizeof id, "W-%d", w->index);
            st = fs_store_apply(w->store, act(id, "'set':{'status':'open'},'inc':{'picked':1}"), &out);
        } else {
            st = fs_store_apply(w->store, act("T-1", "'inc':{'picked':1}"), &out);
        }
        fs_free(out);
        if (st == FS_OK)
            w->applied++;
        else
            th_failed(w, "apply", st);
        if (i % 4 == 3) th_sync_round(w);
    }
    pool_release();
    return NULL;
}

TEST(test_two_handles_applying_and_syncing_at_once_lose_nothing) {
    fs_hub *h = open_hub("hub.db", TASK_SCHEMA, "{\"durability\":\"normal\"}");
    fs_store *s[2];
    pthread_t th[2];
    th_worker w[2];
    json_t *rec;
    int i, round;
    long long total = 0, own = 0;
    s[0] = open_device("d", "\"durability\":\"normal\",\"batch_size\":7");
    s[1] = open_device("d", "\"durability\":\"normal\",\"batch_size\":7");
    REQUIRE(h != NULL && s[0] != NULL && s[1] != NULL);
    REQUIRE(enroll(s[0], h, NULL) == 0); /* one file: both handles sign with its key */
    create_task(s[0], "T-1", "open");
    for (i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].store = s[i];
        w[i].hub = h;
        w[i].index = i;
        REQUIRE(pthread_create(&th[i], NULL, th_apply_and_sync, &w[i]) == 0);
    }
    for (i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        if (w[i].failed)
            fs_test_fail(__FILE__, __LINE__, "handle %d: %d calls failed, first: %s", i, w[i].failed,
                         w[i].first_error);
        total += w[i].applied;
    }
    CHECK_INT_EQ(total, 2 * ROUNDS);
    /* both drain what is left, each in turn */
    for (round = 0; round < 2; round++)
        for (i = 0; i < 2; i++) sync_now(s[i], h);
    for (i = 0; i < 2; i++) {
        char id[8];
        CHECK_INT_EQ(outbox_count(s[i]), 0);
        snprintf(id, sizeof id, "W-%d", i);
        rec = hub_task(h, id);
        CHECK_INT_EQ(jint(rec, "picked"), ROUNDS / 3);
        own += jint(rec, "picked");
        json_decref(rec);
    }
    /* every action counted once at the hub: the shared counter has the rest */
    rec = hub_task(h, "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), total - own);
    json_decref(rec);
    rec = get_ok(s[1], "task", "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), total - own);
    json_decref(rec);
    CHECK_HUB_AUDIT(h, total + 1);
    for (i = 0; i < 2; i++) fs_store_close(s[i]);
    fs_hub_close(h);
}

/* ---- sequence numbers, the chain and the clock follow the file ---- */

TEST(test_two_handles_take_turns_without_reusing_a_sequence_number) {
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("d", NULL);
    fs_store *b = open_device("d", NULL);
    json_t *r, *rows, *st;
    long long hlc_a;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    REQUIRE(enroll(a, h, NULL) == 0);
    create_task(a, "T-1", "open");
    r = apply_ok(a, act("T-1", "'inc':{'picked':1}"));
    CHECK_INT_EQ(jint(r, "seq"), 2);
    hlc_a = jint(r, "hlc");
    json_decref(r);
    /* b opened before a wrote: it must continue a's sequence and clock */
    r = apply_ok(b, act("T-1", "'inc':{'picked':1}"));
    CHECK_INT_EQ(jint(r, "seq"), 3);
    CHECK_STR_EQ(jstr(r, "outbox_key"), "d-3");
    CHECK(jint(r, "hlc") > hlc_a);
    json_decref(r);
    r = apply_ok(a, act("T-1", "'inc':{'picked':1}"));
    CHECK_INT_EQ(jint(r, "seq"), 4);
    json_decref(r);
    /* stats of either handle show the file */
    st = stats_ok(b);
    CHECK_INT_EQ(jint(st, "last_seq"), 4);
    json_decref(st);
    rows = audit_ok(b, NULL);
    REQUIRE(rows != NULL);
    CHECK_INT_EQ(json_array_size(rows), 4);
    CHECK_INT_EQ(verify_audit_chain(rows), 0);
    json_decref(rows);
    sync_now(b, h);
    CHECK_INT_EQ(outbox_count(a), 0);
    r = hub_task(h, "T-1");
    CHECK_INT_EQ(jint(r, "picked"), 3);
    json_decref(r);
    CHECK_HUB_AUDIT(h, 4);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

/* Handle a evicts acknowledged audit rows (audit_keep_days); handle b,
 * opened before, must not hand out the evicted rows' sequence numbers again:
 * the hub would answer the reused key "duplicate" and the action would be
 * lost for good. */
TEST(test_two_handles_audit_eviction_on_one_reuses_no_key_on_the_other) {
    int64_t now = T0_MS;
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("d", "\"audit_keep_days\":1");
    fs_store *b = open_device("d", NULL);
    char *out = NULL;
    json_t *r, *rep, *st;
    int i;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    REQUIRE(enroll(a, h, NULL) == 0);
    REQUIRE_OK(fs_store_set_clock(a, th_clock, &now));
    REQUIRE_OK(fs_store_set_clock(b, th_clock, &now));
    REQUIRE_OK(fs_hub_set_clock(h, th_clock, &now));
    create_task(a, "T-1", "open");
    for (i = 0; i < 10; i++) json_decref(apply_ok(a, act("T-1", "'inc':{'picked':1}")));
    CHECK_INT_EQ(sync_now(a, h).applied, 11);
    now += 2 * DAY_MS;
    REQUIRE_OK(fs_store_hygiene(a, &out));
    rep = take_json(out);
    CHECK_INT_EQ(jint(rep, "audit_rows_evicted"), 11);
    json_decref(rep);

    r = apply_ok(b, act("T-1", "'inc':{'picked':1}"));
    CHECK_INT_EQ(jint(r, "seq"), 12);
    CHECK_STR_EQ(jstr(r, "outbox_key"), "d-12");
    json_decref(r);
    CHECK_INT_EQ(sync_now(b, h).applied, 1);
    CHECK_INT_EQ(outbox_count(b), 0);
    r = hub_task(h, "T-1");
    CHECK_INT_EQ(jint(r, "picked"), 11); /* device n = 11, hub n = 11 */
    json_decref(r);
    r = get_ok(b, "task", "T-1");
    CHECK_INT_EQ(jint(r, "picked"), 11);
    json_decref(r);
    CHECK_HUB_AUDIT(h, 12);
    st = stats_ok(b);
    CHECK_INT_EQ(jint(st, "audit_anchor_seq"), 11);
    CHECK_INT_EQ(jint(st, "audit_unacked"), 0);
    json_decref(st);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

/* Another device adds "x" to T-1; handle b pulls it; the app's handle a
 * (opened before, its cursor still 0) removes the "x" it now shows. The
 * entry must say the device had seen "x" (the file's cursor), or the hub
 * keeps "x" as a concurrent add and the remove is lost. */
TEST(test_two_handles_entries_carry_the_cursor_the_file_pulled_to) {
    fs_hub *h = open_task_hub();
    fs_store *other = open_device("o", NULL);
    fs_store *a = open_device("d", NULL);
    fs_store *b = open_device("d", NULL);
    json_t *r, *entries;
    REQUIRE(h != NULL && other != NULL && a != NULL && b != NULL);
    json_decref(apply_ok(other, act("T-1", "'set':{'status':'open'},'add':{'tags':['x','y']}")));
    CHECK_INT_EQ(sync_now(other, h).applied, 1);
    CHECK_INT_EQ(sync_now(b, h).pulled, 1);

    r = get_ok(a, "task", "T-1");
    REQUIRE(r != NULL);
    CHECK_INT_EQ(json_array_size(json_object_get(r, "tags")), 2);
    json_decref(r);
    json_decref(apply_ok(a, act("T-1", "'remove':{'tags':['x']}")));
    entries = outbox_ok(a, NULL);
    REQUIRE(entries != NULL && json_array_size(entries) == 1);
    json_decref(entries);
    CHECK_INT_EQ(sync_now(a, h).applied, 1);
    r = hub_task(h, "T-1");
    REQUIRE(r != NULL);
    {
        char *tags = jdump(json_object_get(r, "tags"));
        CHECK_STR_EQ(tags, "[\"y\"]");
        free(tags);
    }
    json_decref(r);
    fs_store_close(other);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

/* ---- batches: numbered from the file, answered on either handle ---- */

/* a prepares, b (opened before) prepares next: the batch numbers differ, a's
 * batch is superseded (its entries go again in b's), and both answers are
 * received, in either order, each action counted once. */
static void superseded_batch(int b_answer_first) {
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("d", NULL);
    fs_store *b = open_device("d", NULL);
    char *ra, *rb, *answer_a, *answer_b;
    json_t *qa, *qb, *rec;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    REQUIRE(enroll(a, h, NULL) == 0);
    create_task(a, "T-1", "open");
    json_decref(apply_ok(a, act("T-1", "'inc':{'picked':2}")));
    ra = prepare_ok(a);
    json_decref(apply_ok(b, act("T-1", "'inc':{'picked':3}")));
    rb = prepare_ok(b);
    REQUIRE(ra != NULL && rb != NULL);
    qa = json_loads(ra, 0, NULL);
    qb = json_loads(rb, 0, NULL);
    REQUIRE(qa != NULL && qb != NULL);
    CHECK(strcmp(jstr(qa, "batch"), jstr(qb, "batch")) != 0);
    CHECK_INT_EQ(json_array_size(json_object_get(qa, "entries")), 2);
    CHECK_INT_EQ(json_array_size(json_object_get(qb, "entries")), 3);
    json_decref(qa);
    json_decref(qb);
    answer_a = handle_ok(h, ra);
    answer_b = handle_ok(h, rb);
    fs_free(ra);
    fs_free(rb);
    REQUIRE(answer_a != NULL && answer_b != NULL);
    if (b_answer_first) json_decref(receive_ok(b, answer_b));
    json_decref(receive_ok(a, answer_a));
    if (!b_answer_first) json_decref(receive_ok(b, answer_b));
    fs_free(answer_a);
    fs_free(answer_b);
    CHECK_INT_EQ(outbox_count(a), 0);
    CHECK_INT_EQ(outbox_count(b), 0);
    rec = hub_task(h, "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 5);
    json_decref(rec);
    rec = get_ok(a, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), 5);
    json_decref(rec);
    CHECK_HUB_AUDIT(h, 3);
    sync_now(a, h);
    CHECK_SAME_RECORDS(b, h);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

TEST(test_two_handles_superseded_batch_answered_first) { superseded_batch(0); }
TEST(test_two_handles_superseded_batch_answered_last) { superseded_batch(1); }

/* The answer to a's request is received by b, which never prepared one. */
TEST(test_two_handles_answer_to_one_is_received_by_the_other) {
    fs_hub *h = open_task_hub();
    fs_store *a = open_device("d", NULL);
    fs_store *b = open_device("d", NULL);
    char *request, *answer;
    json_t *sum, *st;
    REQUIRE(h != NULL && a != NULL && b != NULL);
    REQUIRE(enroll(a, h, NULL) == 0);
    create_task(a, "T-1", "open");
    json_decref(apply_ok(a, act("T-1", "'inc':{'picked':2}")));
    request = prepare_ok(a);
    REQUIRE(request != NULL);
    answer = handle_ok(h, request);
    fs_free(request);
    REQUIRE(answer != NULL);
    sum = receive_ok(b, answer);
    fs_free(answer);
    CHECK_INT_EQ(jint(sum, "applied"), 2);
    json_decref(sum);
    CHECK_INT_EQ(outbox_count(a), 0);
    st = stats_ok(a);
    CHECK_INT_EQ(jint(st, "audit_unacked"), 0);
    CHECK_INT_EQ(jint(st, "batches_sent"), 1);
    CHECK(jint(st, "cursor") > 0);
    json_decref(st);
    /* and a's next batch is numbered after the one b received */
    json_decref(apply_ok(b, act("T-1", "'inc':{'picked':1}")));
    request = prepare_ok(a);
    REQUIRE(request != NULL);
    sum = json_loads(request, 0, NULL);
    CHECK_STR_EQ(jstr(sum, "batch"), "d-b2");
    json_decref(sum);
    fs_free(request);
    fs_store_close(a);
    fs_store_close(b);
    fs_hub_close(h);
}

/* ---- a handle opened with a newer schema migrates the file ---- */

#define SMALL_V1 \
    "{\"version\":1,\"types\":{\"task\":{\"fields\":{\"status\":{\"type\":\"string\"}},\"required\":[\"status\"]}}}"
#define SMALL_V2                                                                         \
    "{\"version\":2,\"types\":{\"task\":{\"fields\":{\"status\":{\"type\":\"string\"}," \
    "\"note\":{\"type\":\"string\"}},\"required\":[\"status\"]}}}"

/* The handle still open with the older schema refuses to write (its tables
 * and entries no longer match the file) instead of writing a wrong shape. */
TEST(test_two_handles_older_schema_handle_refuses_after_another_migrated) {
    fs_store *old = open_store("d.db", SMALL_V1, "{\"device_id\":\"d\"}");
    fs_store *now;
    char *out = SENTINEL;
    REQUIRE(old != NULL);
    create_task(old, "T-1", "open");
    now = open_store("d.db", SMALL_V2, "{\"device_id\":\"d\"}");
    REQUIRE(now != NULL);
    CHECK_STATUS(fs_store_apply(old, act("T-1", "'set':{'status':'done'}"), &out), FS_ERR_SCHEMA);
    CHECK(out == NULL);
    CHECK_ERROR_MESSAGE();
    out = SENTINEL;
    CHECK_STATUS(fs_store_stats(old, &out), FS_ERR_SCHEMA);
    json_decref(apply_ok(now, act("T-1", "'set':{'status':'done','note':'n'}")));
    CHECK_INT_EQ(outbox_count(now), 2);
    fs_store_close(old);
    fs_store_close(now);
}
